"""Quickstart: logistic regression with scikit-learn on digits."""
