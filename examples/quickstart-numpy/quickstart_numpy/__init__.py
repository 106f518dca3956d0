"""Quickstart: softmax regression in NumPy on digits."""
