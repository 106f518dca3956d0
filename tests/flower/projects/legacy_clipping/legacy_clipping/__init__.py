"""legacy-clipping: client-side update clipping through Flower's fixedclipping_mod."""
