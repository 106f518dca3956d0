"""pytorch-digits: a PyTorch MLP on scikit-learn's digits, on Flower's Message API."""
