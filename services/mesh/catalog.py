"""Which services exist and how each is built, found by convention: the contract names the
services (`agentmesh.<service>.v1`), and a built service is the package `mesh.<service>` with a
`service` module that defines `DEFINITION`. Every other service of the contract runs its
generated servicers untouched, so each RPC answers UNIMPLEMENTED (501 through the gateway)
until it is built. Adding a service edits no registry here.
"""

from __future__ import annotations

import importlib
import importlib.util

from mesh import contract as contract_mod
from mesh.runtime.service import ServiceDefinition


def names() -> list[str]:
    return contract_mod.default().backends


def is_built(name: str) -> bool:
    return importlib.util.find_spec(f"mesh.{name}") is not None and \
        importlib.util.find_spec(f"mesh.{name}.service") is not None


def definition(name: str) -> ServiceDefinition:
    if name not in names():
        raise KeyError(f"unknown service {name!r}; services: {', '.join(names())}")
    if is_built(name):
        return importlib.import_module(f"mesh.{name}.service").DEFINITION
    return ServiceDefinition.placeholder_for(name)
