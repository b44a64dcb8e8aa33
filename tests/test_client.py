"""The Python client calls the routes the contract binds: every path comes from the proto
(`mesh.client.route`), and these are the routes it has always called."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from mesh.client import ApiError, AsyncClient, Client

# (what the client is asked, the request it sends): the paths once written by hand in
# mesh/client.py, which the contract's bindings must still give.
CALLS = [
    (lambda c: c.login("a@example.com", "pw"), "POST", "/api/v1/auth/login"),
    (lambda c: c.me(), "GET", "/api/v1/auth/me"),
    (lambda c: c.agents.list(page=2), "GET", "/api/v1/agents"),
    (lambda c: c.agents.get("triage"), "GET", "/api/v1/agents/triage"),
    (lambda c: c.agents.create({"name": "a"}), "POST", "/api/v1/agents"),
    (lambda c: c.agents.update("triage", {"description": "d"}), "PUT", "/api/v1/agents/triage"),
    (lambda c: c.agents.delete("triage"), "DELETE", "/api/v1/agents/triage"),
    (lambda c: c.agents.activate("triage"), "POST", "/api/v1/agents/triage/activate"),
    (lambda c: c.agents.interact("triage", "hi"), "POST", "/api/v1/agents/triage/interact"),
    (lambda c: c.tools.get("search"), "GET", "/api/v1/tools/search"),
    (lambda c: c.prompts.list(), "GET", "/api/v1/master-data/prompts"),
    (lambda c: c.models.get("m1"), "GET", "/api/v1/master-data/models/m1"),
    (lambda c: c.secrets.delete("s1"), "DELETE", "/api/v1/master-data/secrets/s1"),
    (lambda c: c.templates.create({}), "POST", "/api/v1/templates"),
    (lambda c: c.calls.get("c1"), "GET", "/api/v1/calls/c1"),
    (lambda c: c.workflows.activate("report"), "POST", "/api/v1/workflows/report/activate"),
    (lambda c: c.workflows.execute("report", {"topic": "t"}), "POST",
     "/api/v1/workflows/report/execute"),
    (lambda c: c.workflows.execution("e1"), "GET", "/api/v1/workflows/executions/e1"),
]


def _recording() -> tuple[list[httpx.Request], httpx.MockTransport]:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path.endswith("/watch"):
            return httpx.Response(200, text='data: {"status": "EXECUTION_STATUS_COMPLETED"}\n\n',
                                  headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={"items": [], "pages": 1})
    return sent, httpx.MockTransport(answer)


@pytest.mark.parametrize(("call", "method", "path"), CALLS)
def test_each_call_goes_to_its_rpcs_route(call, method, path):
    sent, transport = _recording()
    with Client("http://mesh.test", token="t", transport=transport) as client:
        call(client)
    assert [(r.method, r.url.path) for r in sent] == [(method, path)]


@pytest.mark.parametrize(("call", "method", "path"),
                         [c for c in CALLS if c[2] != "/api/v1/auth/me"])  # sync only
def test_the_async_client_goes_to_the_same_routes(call, method, path):
    sent, transport = _recording()

    async def run() -> None:
        async with AsyncClient("http://mesh.test", token="t", transport=transport) as client:
            await call(client)
    asyncio.run(run())
    assert [(r.method, r.url.path) for r in sent] == [(method, path)]


def test_watch_and_iterate_use_the_contracts_paths():
    sent, transport = _recording()
    with Client("http://mesh.test", token="t", transport=transport) as client:
        assert list(client.workflows.watch("e1")) == [{"status": "EXECUTION_STATUS_COMPLETED"}]
        assert list(client.workflows.iterate()) == []
        assert client.calls.path == "/api/v1/calls"
    assert [(r.method, r.url.path) for r in sent] == [
        ("GET", "/api/v1/workflows/executions/e1/watch"), ("GET", "/api/v1/workflows")]
    assert json.loads(sent[0].url.params.get("last_event_id", "0")) == 0


def test_a_call_the_contract_has_no_route_for_is_the_gateways_405():
    sent, transport = _recording()
    with Client("http://mesh.test", token="t", transport=transport) as client, \
            pytest.raises(ApiError) as refused:
        client.calls.create({})
    assert (refused.value.status, refused.value.error) == (405, "METHOD_NOT_ALLOWED")
    assert sent == []


def test_no_rest_path_is_written_in_the_client():
    source = Path(__file__).resolve().parents[1] / "services" / "mesh"
    for name in ("client.py", "cli_client.py"):
        code = "\n".join(line for line in (source / name).read_text().splitlines()
                         if not line.lstrip().startswith(("#", "`", '"')))
        assert '"/api/' not in code and "'/api/" not in code, name
