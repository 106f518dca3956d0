"""Quickstart: a small CNN in PyTorch on digits."""
