"""A NumPy app under central DP with client-side clipping, for end-to-end tests."""
