"""The identity service: tenants, users, roles, tokens, API keys and the gateway's signing keys."""
