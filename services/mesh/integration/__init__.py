"""Integration: operations across services (agent from a template, agent + workflow deployed
together, external tools from OpenAPI, master-data sync, export/import bundles, batches) and
the tenant's links outside: webhooks (with delivery history) and API connections."""
