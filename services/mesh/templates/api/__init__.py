"""The templates servicer."""
