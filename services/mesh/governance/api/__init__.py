"""The governance service's servicers, one module per proto service."""
