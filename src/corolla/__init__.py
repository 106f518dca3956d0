"""Corolla: federated learning."""
