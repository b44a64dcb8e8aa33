"""Agent Mesh: gRPC services behind an Envoy gateway.

The generated contract lives in the `agentmesh` package (built from `protos/` into `gen/`);
this package holds everything written by hand: the shared runtime, the services, the gateway
configuration generator and the CLI.
"""
