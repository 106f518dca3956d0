"""flower-numpy: linear regression with NumPy, on Flower's Message API."""
