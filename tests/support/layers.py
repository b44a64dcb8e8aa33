"""The three test layers, chosen for each test by where it is and what it uses:

* `e2e`: a running mesh (`agentmesh up`, real Envoy): everything under tests/e2e/, and any test
  that uses a mesh fixture.
* `service`: in-process services (tests/harness.py), databases, local servers, processes,
  temporary files: the tests of a service (tests/<service>/, a service of the catalog), a test
  that uses a fixture of that kind (IO_FIXTURES), or one whose module does such I/O in its own
  body (IO_MODULES).
* `unit`: the rest, which does no I/O at all; `refuse_io` makes sure of it while it runs (a
  unit test that opens a socket, starts a process or opens a database fails, saying which).

`tests/conftest.py` applies them to every test (`pytest_collection_modifyitems`); select with
`-m unit`, `-m service`, `-m e2e` or `-m "not e2e"`.
"""

from __future__ import annotations

import functools
import multiprocessing.util
import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

LAYERS = ("unit", "service", "e2e")
TESTS = Path(__file__).resolve().parents[1]
# Fixtures that start a whole mesh.
MESH_FIXTURES = frozenset({"mesh", "egress_mesh"})
# Fixtures that do I/O: temporary directories (every service harness and database fixture
# takes one), PostgreSQL, local HTTP, MCP and model servers.
IO_FIXTURES = frozenset({"tmp_path", "tmp_path_factory", "postgres_url", "web", "mcp_server",
                         "model_server"})
# Modules outside the service folders whose tests do I/O in their own body or in a fixture of
# their own (a subprocess, the sandbox's worker processes, a socket, a database), relative to
# tests/. The unit layer's guard fails a test that should be here and is not.
IO_MODULES = frozenset({
    "test_generated.py",  # protoc, buf, git, the CLI
    "helm/test_dockerfile.py",  # hadolint
    "helm/test_gateway_replicas.py",  # the CLI
    "helm/test_keys_secret.py",  # a fake Kubernetes API, the CLI
    "runtime/test_egress.py",  # local servers
    "runtime/test_internal_grpc.py",  # gRPC servers, Envoy
    "runtime/test_local_calls.py",  # gRPC servers, SQLite
    "runtime/test_migrations.py",  # SQLite
    "runtime/test_patterns.py",  # the sandbox
    "runtime/test_platform_events.py",  # a gRPC server
    "runtime/test_sandbox.py",
    "runtime/test_schemas.py",  # a local server
    "runtime/test_telemetry.py",  # an OTLP receiver
})


@functools.cache
def _service_folders() -> frozenset[str]:
    from mesh import catalog

    return frozenset(catalog.names())


def layer_of(item: pytest.Item) -> str:
    path = Path(str(item.fspath)).resolve()
    path = path.relative_to(TESTS) if path.is_relative_to(TESTS) else Path(path.name)
    fixtures = set(getattr(item, "fixturenames", ()))
    if path.parts[0] == "e2e" or fixtures & MESH_FIXTURES:
        return "e2e"
    if (path.parts[0] in _service_folders() or fixtures & IO_FIXTURES
            or path.as_posix() in IO_MODULES):
        return "service"
    return "unit"


def _refused(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(
            f"a unit test does no I/O, and this one {what}: give it a fixture that says so "
            "(IO_FIXTURES in tests/support/layers.py) or list its module in IO_MODULES")
    return refuse


def refuse_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sockets, processes and database connections fail for the rest of the test."""
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, _refused(f"opened a socket ({name})"))
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refused("started a process"))
    monkeypatch.setattr(multiprocessing.util, "spawnv_passfds", _refused("started a process"))
    monkeypatch.setattr(os, "fork", _refused("forked"))
    monkeypatch.setattr(sqlite3, "connect", _refused("opened a SQLite database"))
    monkeypatch.setattr(sqlite3.dbapi2, "connect", _refused("opened a SQLite database"))
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a runtime dependency
        return
    monkeypatch.setattr(psycopg.Connection, "connect",
                        classmethod(_refused("connected to PostgreSQL")))
