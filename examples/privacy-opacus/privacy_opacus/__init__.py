"""DP-SGD with Opacus on every node: sample-level differential privacy for each node's data."""
