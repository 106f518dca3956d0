"""custom-strategy: a Flower Strategy subclass driving Message-API ClientApps."""
