"""Which services exist and how each is built.

A service with its own module (identity, agents, system) supplies a `ServiceDefinition`. Every
other service of the contract still runs, as the generated servicers with no methods overridden:
each RPC answers UNIMPLEMENTED, which the gateway returns as 501 in the error envelope. Building
a service means adding its module here; the gateway needs no change.
"""

from __future__ import annotations

import importlib
import pkgutil

from mesh import contract as contract_mod
from mesh.runtime.server import ServiceDefinition

_BUILT = {
    "identity": "mesh.identity.service",
    "agents": "mesh.agents.service",
    "system": "mesh.system.service",
}


def _not_built_yet(name: str) -> ServiceDefinition:
    def build(settings, db):
        package = importlib.import_module(f"agentmesh.{name}.v1")
        registrations = []
        for module_info in pkgutil.iter_modules(package.__path__):
            if not module_info.name.endswith("_pb2_grpc"):
                continue
            grpc_module = importlib.import_module(f"{package.__name__}.{module_info.name}")
            messages = importlib.import_module(
                f"{package.__name__}.{module_info.name.removesuffix('_grpc')}")
            for service in messages.DESCRIPTOR.services_by_name.values():
                servicer = getattr(grpc_module, f"{service.name}Servicer")()
                add = getattr(grpc_module, f"add_{service.name}Servicer_to_server")
                registrations.append((add, servicer, service.full_name))
        return registrations

    return ServiceDefinition(name=name, build=build)


def names() -> list[str]:
    return contract_mod.default().backends


def definition(name: str) -> ServiceDefinition:
    if name not in names():
        raise KeyError(f"unknown service {name!r}; services: {', '.join(names())}")
    if name in _BUILT:
        return importlib.import_module(_BUILT[name]).DEFINITION
    return _not_built_yet(name)
