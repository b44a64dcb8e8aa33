"""The Envoy gateway: its configuration, generated from the contract."""
