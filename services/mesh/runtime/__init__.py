"""The shared service runtime: everything a service needs that is not its domain.

A service module declares its servicers, its tables and its migrations; `mesh.runtime.server`
turns that into a gRPC process with health, reflection, telemetry, error mapping, tenant scoping
and graceful shutdown.
"""
