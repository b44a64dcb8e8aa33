"""The identity service's servicers: one module per proto service."""
