"""Data files the installed package reads: always package resources (`importlib.resources`),
never paths into a checkout, so a wheel installed anywhere finds them.

The generated package `agentmesh` (from `gen/`) carries the descriptor set and the OpenAPI
document; `mesh.gateway` carries the Lua filter; each service carries its Alembic migrations and
`mesh.runtime` the Alembic environment. Only the build tools (`mesh.build.repo`) know where the
repository is.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

_files = contextlib.ExitStack()
atexit.register(_files.close)


def _path(package: str, name: str) -> Path:
    """A real file-system path to a resource (Envoy and Alembic need paths). Installed packages
    are plain directories, so this is the file itself; a zipped one is extracted once."""
    return _files.enter_context(resources.as_file(resources.files(package) / name))


def descriptor_set() -> Path:
    """The descriptor set (`--include_imports`) that Envoy's transcoder and `mesh.contract` read."""
    return _path("agentmesh", "descriptor.binpb")


def openapi_document() -> bytes:
    """The generated OpenAPI 3.1 document, as served at `/api/v1/openapi.json`."""
    return (resources.files("agentmesh") / "openapi.json").read_bytes()


def gateway_lua() -> str:
    """The source of the gateway's Lua filter, before its names are filled in."""
    return (resources.files("mesh.gateway") / "gateway.lua").read_text(encoding="utf-8")

