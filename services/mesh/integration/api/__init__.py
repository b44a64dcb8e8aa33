"""The integration servicer."""
