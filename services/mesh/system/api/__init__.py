"""The system service's servicer (SystemService)."""
