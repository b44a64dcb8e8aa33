"""The Python client (agentmesh_client) calls the routes the contract binds: every path comes
from the proto (generated into agentmesh_client/_generated), and these are the routes it has
always called; answers are typed models, and each kind of error its own exception."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx2
import pytest

from agentmesh_client import (ApiError, AsyncClient, Client, Conflict, InvalidArgument,
                              MethodNotAllowed, NotFound, PermissionDenied, RateLimited,
                              Unauthenticated, Unavailable)
from agentmesh_client import models

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


def _recording() -> tuple[list[httpx2.Request], httpx2.MockTransport]:
    sent: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        if request.url.path.endswith("/watch"):
            return httpx2.Response(200, text='data: {"status": "EXECUTION_STATUS_COMPLETED"}\n\n',
                                  headers={"content-type": "text/event-stream"})
        return httpx2.Response(200, json={"items": [], "pages": 1})
    return sent, httpx2.MockTransport(answer)


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
        assert [p.status for p in client.workflows.watch("e1")] == ["EXECUTION_STATUS_COMPLETED"]
        assert list(client.workflows.iterate()) == []
        assert client.calls.path == "/api/v1/calls"
    assert [(r.method, r.url.path) for r in sent] == [
        ("GET", "/api/v1/workflows/executions/e1/watch"), ("GET", "/api/v1/workflows")]
    assert json.loads(sent[0].url.params.get("last_event_id", "0")) == 0


def test_a_call_the_contract_has_no_route_for_is_the_gateways_405():
    sent, transport = _recording()
    with Client("http://mesh.test", token="t", transport=transport) as client, \
            pytest.raises(MethodNotAllowed) as refused:
        client.calls.create({})
    assert (refused.value.status, refused.value.error) == (405, "METHOD_NOT_ALLOWED")
    assert sent == []


def test_no_rest_path_is_written_in_the_client():
    source = Path(__file__).resolve().parents[1] / "services" / "client" / "agentmesh_client"
    for path in source.rglob("*.py"):
        if "_generated" in path.parts:
            continue
        code = "\n".join(line for line in path.read_text().splitlines()
                         if not line.lstrip().startswith(("#", "`", '"')))
        assert '"/api/' not in code and "'/api/" not in code, path


def _answering(status: int, body: dict, headers: dict | None = None) -> httpx2.MockTransport:
    return httpx2.MockTransport(lambda request: httpx2.Response(status, json=body,
                                                              headers=headers or {}))


@pytest.mark.parametrize(("status", "error", "kind"), [
    (400, "INVALID_ARGUMENT", InvalidArgument), (401, "UNAUTHENTICATED", Unauthenticated),
    (403, "PERMISSION_DENIED", PermissionDenied), (404, "NOT_FOUND", NotFound),
    (409, "ALREADY_EXISTS", Conflict), (429, "RESOURCE_EXHAUSTED", RateLimited),
    (503, "UNAVAILABLE", Unavailable)])
def test_each_kind_of_error_is_its_own_exception(status, error, kind):
    envelope = {"error": error, "message": "no", "details": {"field": "name"},
                "correlation_id": "c-1"}
    with Client("http://mesh.test", token="t", retries=0,
                transport=_answering(status, envelope)) as client, pytest.raises(kind) as raised:
        client.agents.get("triage")
    assert isinstance(raised.value, ApiError)
    assert (raised.value.status, raised.value.error, raised.value.message,
            raised.value.details, raised.value.correlation_id) == (
        status, error, "no", {"field": "name"}, "c-1")


def test_rate_limited_carries_its_retry_delay():
    envelope = {"error": "RESOURCE_EXHAUSTED", "message": "slow down", "details": {}}
    with Client("http://mesh.test", token="t", retries=0,
                transport=_answering(429, envelope, {"Retry-After": "7"})) as client, \
            pytest.raises(RateLimited) as raised:
        client.agents.list()
    assert raised.value.retry_after == 7.0
    # A google.rpc.RetryInfo-style delay in the details, when there is no header.
    from agentmesh_client.errors import make_error

    assert make_error(429, "RESOURCE_EXHAUSTED", "m", {"retry_delay": "1.5s"}).retry_after == 1.5
    assert make_error(429, "RESOURCE_EXHAUSTED", "m", {"retry_info": {"retry_delay": {
        "seconds": 2, "nanos": 500000000}}}).retry_after == 2.5
    assert make_error(429, "RESOURCE_EXHAUSTED", "m", {}).retry_after is None


def test_answers_are_typed_models_that_keep_what_they_do_not_know():
    agent = {"id": "a1", "name": "triage", "status": "AGENT_STATUS_DRAFT",
             "a_field_of_a_newer_server": 1}
    with Client("http://mesh.test", token="t", transport=_answering(200, agent)) as client:
        got = client.agents.get("triage")
    assert isinstance(got, models.Agent)
    assert (got.id, got.name, got.status) == ("a1", "triage", "AGENT_STATUS_DRAFT")
    assert got["name"] == "triage" and got.get("nope", 3) == 3
    assert got.to_dict() == agent  # what the server sent, unknown fields included
    page = {"items": [agent], "total": 1, "page": 1, "pages": 1}
    with Client("http://mesh.test", token="t", transport=_answering(200, page)) as client:
        listed = client.agents.list()
    assert isinstance(listed, models.ListAgentsResponse)
    assert isinstance(listed.items[0], models.Agent) and listed.total == 1


def test_every_routed_rpc_of_the_contract_is_a_client_method():
    """Governance, integration, observability, ... : each RPC the gateway routes is a method of
    its service's attribute, generated from the contract (no hand edit for a new RPC)."""
    from mesh import contract

    from agentmesh_client._generated.services import Services
    from mesh.build.client import snake

    by_service = {cls.SERVICE: attribute for attribute, cls in (
        (a, getattr(__import__("agentmesh_client._generated.services", fromlist=["x"]), str(t)))
        for a, t in Services.__annotations__.items())}
    sent, transport = _recording()
    with Client("http://mesh.test", token="t", transport=transport) as client:
        for rpc in contract.default().rpcs:
            if not rpc.exposed:
                continue
            service = getattr(client, by_service[rpc.full_service])
            assert callable(getattr(service, snake(rpc.name))), rpc.grpc_path
        for attribute in ("governance", "integration", "observability", "analytics", "system"):
            assert hasattr(client, attribute)
        client.governance.list_policies(page_size=5)
        client.integration.list_webhooks()
        client.observability.list_traces() if hasattr(client.observability, "list_traces") \
            else None
    assert ("GET", "/api/v1/governance/policies") == (sent[0].method, sent[0].url.path)
    assert sent[0].url.params["page_size"] == "5"


def test_generated_methods_put_the_thing_in_the_body_and_the_rest_in_the_query():
    sent, transport = _recording()
    with Client("http://mesh.test", token="t", transport=transport) as client:
        client.agents.update_agent("triage", {"description": "d"}, update_mask="description")
        client.governance.create_policy(policy={"name": "p"})
        client.agents.interact_with_agent("triage", message="hi")
    update, create, interact = sent
    assert (update.method, update.url.path, json.loads(update.content),
            dict(update.url.params)) == ("PUT", "/api/v1/agents/triage", {"description": "d"},
                                         {"update_mask": "description"})
    assert json.loads(create.content) == {"name": "p"} and not create.url.params
    assert json.loads(interact.content) == {"message": "hi"}
