"""sklearn-wine: a scikit-learn classifier on Flower's legacy client API."""
