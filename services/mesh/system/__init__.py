"""The system service: the operator's view and controls of the platform (docs/system.md)."""
