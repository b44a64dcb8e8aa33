"""The workflows service's servicers, one module per proto service."""
