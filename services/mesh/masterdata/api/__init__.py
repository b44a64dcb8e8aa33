"""The masterdata servicers, one module per proto service."""
