"""Every outbound HTTP request of the product goes through the egress guard's client
(`mesh.runtime.egress.EgressPolicy.client`). This reads the source under `services/` and fails
when code makes an HTTP client any other way; the few internal calls that never act for a
tenant are listed below, each with its reason. A new entry needs the same: a reason why no
tenant can choose where that request goes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
GUARD = "mesh/runtime/egress.py"

# Calls that open an HTTP (or raw TCP) connection, by the dotted name they resolve to.
CLIENTS = {
    *(f"{module}.{name}" for module in ("httpx", "httpx2") for name in (
        "Client", "AsyncClient", "HTTPTransport", "AsyncHTTPTransport", "get", "post", "put",
        "patch", "delete", "head", "options", "request", "stream")),
    *(f"{module}.{name}" for module in ("httpcore", "httpcore2") for name in (
        "ConnectionPool", "AsyncConnectionPool", "HTTPProxy", "AsyncHTTPProxy", "request",
        "stream")),
    "urllib.request.urlopen", "urllib.request.build_opener", "urllib.request.OpenerDirector",
    "http.client.HTTPConnection", "http.client.HTTPSConnection",
    "asyncio.open_connection", "asyncio.open_unix_connection", "socket.create_connection",
    "websockets.connect", "websockets.client.connect", "websockets.asyncio.client.connect",
    "mcp.shared._httpx_utils.create_mcp_http_client",
}
# Libraries that are HTTP clients themselves: importing one is the finding.
CLIENT_LIBRARIES = {"aiohttp", "requests", "urllib3", "pycurl", "treq", "tornado.httpclient"}
# SDK entry points that make their own client unless they are given ours.
NEEDS_OUR_CLIENT = {
    **{f"openai.{name}": "http_client" for name in (
        "OpenAI", "AsyncOpenAI", "AzureOpenAI", "AsyncAzureOpenAI")},
    "mcp.client.streamable_http.streamable_http_client": "http_client",
    "mcp.client.sse.sse_client": "httpx_client_factory",
}

# (file under services/, what it calls): why no tenant decides where that request goes.
ALLOWED = {
    ("client/agentmesh_client/client.py", "httpx2.Client"):
        "the Python client of the REST API: runs in its user's program, calls the URL its "
        "user gives, never inside the platform",
    ("client/agentmesh_client/client.py", "httpx2.AsyncClient"):
        "the same client, async",
    ("client/agentmesh_client/client.py", "websockets.asyncio.client.connect"):
        "the same client's live events (/ws/...) from the API its user gives",
    ("mesh/supervisor.py", "asyncio.open_connection"):
        "`agentmesh up` polls the readiness of the gateway it started on 127.0.0.1",
    ("mesh/supervisor.py", "asyncio.open_unix_connection"):
        "`agentmesh up` asks Envoy's admin socket whether the JWKS is loaded",
    ("mesh/runtime/metrics.py", "urllib.request.urlopen"):
        "scrapes AGENTMESH_METRICS_TARGETS: the platform's own processes, set by the operator "
        "or `agentmesh up`, never by a tenant",
    ("mesh/runtime/metrics.py", "http.client"):
        "the same scrape, over Envoy's admin Unix socket",
    ("mesh/keysecret.py", "urllib.request.urlopen"):
        "the Helm hook Job's call to the Kubernetes API (in-cluster address and service "
        "account), before any tenant exists",
    ("mesh/system/kube.py", "urllib.request.urlopen"):
        "POST /system/restart/{service} in Kubernetes: the system pod's PATCH of the release's "
        "Deployment on the in-cluster API (service account); the URL holds no tenant input, "
        "the service name is checked against the catalog first",
    ("mesh/smoke.py", "httpx2.Client"):
        "`helm test`'s smoke flow: a client of the public API in the test Pod, calling the "
        "gateway URL the chart gives it, never inside a service",
}


def _resolved(node: ast.AST, aliases: dict[str, str]) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def findings(path: Path) -> list[tuple[str, int, str]]:
    """(what, line, problem) for every way `path` makes an HTTP client."""
    tree = ast.parse(path.read_text(), str(path))
    aliases: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                aliases[(name.asname or name.name).split(".")[0]] = (
                    name.name if name.asname else name.name.split(".")[0])
                library = next((lib for lib in CLIENT_LIBRARIES | {"http.client"}
                                if name.name == lib or name.name.startswith(lib + ".")), None)
                if library:
                    found.append((library, node.lineno, f"imports {name.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for name in node.names:
                aliases[name.asname or name.name] = f"{node.module}.{name.name}"
            library = next((lib for lib in CLIENT_LIBRARIES | {"http.client"}
                            if node.module == lib or node.module.startswith(lib + ".")
                            or f"{node.module}.{node.names[0].name}" == lib), None)
            if library:
                found.append((library, node.lineno, f"imports from {node.module}"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _resolved(node.func, aliases)
        if name in CLIENTS:
            found.append((name, node.lineno, f"calls {name}"))
        keyword = NEEDS_OUR_CLIENT.get(name)
        if keyword and keyword not in {k.arg for k in node.keywords}:
            found.append((name, node.lineno, f"calls {name} without {keyword}= (the SDK would "
                                             f"make its own, unguarded client)"))
    return found


def _sources() -> list[Path]:
    return sorted(p for p in SERVICES.rglob("*.py") if "/gen/" not in p.as_posix())


def test_no_code_under_services_makes_an_http_client_around_the_egress_guard():
    unexplained, used = [], set()
    for path in _sources():
        relative = path.relative_to(SERVICES).as_posix()
        if relative == GUARD:
            continue
        for what, line, problem in findings(path):
            if (relative, what) in ALLOWED:
                used.add((relative, what))
            else:
                unexplained.append(f"services/{relative}:{line}: {problem}")
    assert not unexplained, (
        "outbound HTTP must go through mesh.runtime.egress (EgressPolicy.client); for the "
        "platform's own internal calls, add an entry with its reason to ALLOWED:\n  "
        + "\n  ".join(unexplained))
    stale = set(ALLOWED) - used
    assert not stale, f"ALLOWED entries that match nothing any more (remove them): {stale}"


@pytest.mark.parametrize("source, expected", [
    ("import httpx\nhttpx.AsyncClient()", "httpx.AsyncClient"),
    ("import httpx2 as h\nh.AsyncClient(timeout=None)", "httpx2.AsyncClient"),
    ("from httpx import Client\nClient()", "httpx.Client"),
    ("import urllib.request\nurllib.request.urlopen('http://x')", "urllib.request.urlopen"),
    ("from urllib.request import urlopen as get\nget('http://x')", "urllib.request.urlopen"),
    ("import aiohttp", "aiohttp"),
    ("import requests", "requests"),
    ("from http.client import HTTPConnection", "http.client"),
    ("import openai\nopenai.AsyncOpenAI(api_key='k')", "openai.AsyncOpenAI"),
    ("from mcp.client.streamable_http import streamable_http_client as c\nc('http://x')",
     "mcp.client.streamable_http.streamable_http_client"),
    ("import asyncio\nasync def f():\n    await asyncio.open_connection('h', 1)",
     "asyncio.open_connection"),
])
def test_the_scan_finds_each_way(tmp_path, source, expected):
    """The scan itself: each way of making a client is found (a scan that finds nothing
    would pass the test above for ever)."""
    path = tmp_path / "module.py"
    path.write_text(source)
    assert expected in {what for what, _, _ in findings(path)}


def test_the_guarded_ways_are_not_findings(tmp_path):
    path = tmp_path / "module.py"
    path.write_text("import openai, httpx2\n"
                    "from mesh.runtime.egress import EgressPolicy\n"
                    "client = EgressPolicy.parse('').client(timeout=5)\n"
                    "openai.AsyncOpenAI(api_key='k', http_client=client)\n"
                    "httpx2.Response(200)\n")
    assert findings(path) == []
