"""legacy-numpyclient: logistic regression in NumPy, on Flower's legacy client API."""
