"""Every way a tenant can make the platform send a request, tried as an outsider would: a
self-registered tenant with its own admin token aims each one at a loopback address, at the
cloud metadata address and at a private address (docs/threat-model.md, "Outbound requests").

On the shared mesh (empty AGENTMESH_EGRESS_ALLOW) each is refused with EGRESS_DENIED — when the
URL is saved (webhooks, alert channels) or when it is called (a step fails with that code, a
call with that reason, a tool or connection test answers 403) — before any connection: a
listener on the loopback target sees nothing, and 10.0.0.1 (unroutable here) answers at once.
On the mesh whose allow-list names 127.0.0.1 the same loopback targets are reached."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from tests.conftest import register
from tests.e2e.test_workflows import _create, _wait

REFUSED = {"loopback": None,  # the local listener, filled in per test
           "metadata": "http://169.254.169.254/latest/meta-data/iam",
           "private": "http://10.0.0.1/hook"}
REFUSED_QUICKLY = 15.0  # seconds: a guard that let 10.0.0.1 through would wait for a timeout


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ok(reply) -> dict:
    assert reply.status_code == 200, reply.text
    return reply.json()


def _refusal(reply) -> str:
    """The reason of a 403 envelope ("" for any other answer)."""
    if reply.status_code != 403:
        return ""
    body = reply.json()
    assert body["error"] == "PERMISSION_DENIED", body
    return body["details"].get("reason", "")


def _eventually(found: Callable[[], list], timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    while not (items := found()):
        assert time.monotonic() < deadline, "the request never arrived"
        time.sleep(0.2)
    return items


# ---- each path: aim it at `url`; answer the reason it was refused ("" when it went out) -------

def _workflow_step(client, url: str, servers) -> str:
    flow = _create(client, [{"id": "probe", "type": "STEP_TYPE_HTTP",
                             "http": {"url": url, "method": "GET"},
                             "retry_policy": {"max_attempts": 3, "initial_backoff": "0.1s"}}])
    run = _ok(client.post(f"/api/v1/workflows/{flow['id']}/execute", json={"inputs": {}}))
    done = _wait(client, run["id"])
    if done["status"] == "EXECUTION_STATUS_COMPLETED":
        return ""
    assert done["status"] == "EXECUTION_STATUS_FAILED", done
    assert len(done["errors"]) == 1, done["errors"]  # a refusal is not retried
    return done["errors"][0]["code"]


def _governance_webhook(client, url: str, servers) -> str:
    reply = client.post("/api/v1/governance/webhooks", json={"url": url, "events": "all"})
    agent = _ok(client.post("/api/v1/agents", json={"name": _name("dispatched")}))
    _ok(client.post("/api/v1/dispatch", json={"intent": "get_agent",
                                               "context": {"agent_id": agent["name"]}}))
    return _refusal(reply) if reply.status_code != 200 else ""


def _integration_webhook(client, url: str, servers) -> str:
    reply = client.post("/api/v1/integration/webhook", json={
        "name": _name("hook"), "url": url, "events": ["data.imported"]})
    _ok(client.post("/api/v1/integration/import", json={"data": {"version": 1}}))
    return _refusal(reply) if reply.status_code != 200 else ""


def _http_tool(client, url: str, servers) -> str:
    tool = _ok(client.post("/api/v1/tools", json={
        "name": _name("probe"), "type": "TOOL_TYPE_HTTP", "status": "TOOL_STATUS_ACTIVE",
        "http": {"url": url, "method": "GET", "timeout": "5s"}}))
    reply = client.post(f"/api/v1/tools/{tool['id']}/execute", json={"arguments": {}})
    if reply.status_code == 200:
        assert reply.json()["status"] == "TOOL_EXECUTION_STATUS_COMPLETED", reply.text
        return ""
    return _refusal(reply)


def _api_connection(client, url: str, servers) -> str:
    name = _name("conn")
    _ok(client.post("/api/v1/integration/api-connection", json={"name": name, "base_url": url}))
    reply = client.post(f"/api/v1/integration/api-connections/{name}/test", json={})
    if reply.status_code == 200:
        assert reply.json()["ok"], reply.text
        return ""
    return _refusal(reply)


def _model_endpoint(client, url: str, servers) -> str:
    model = _ok(client.post("/api/v1/master-data/models", json={
        "name": _name("model"), "provider": "openai_compatible",
        "model_id": servers.script, "endpoint_url": url}))
    agent = _ok(client.post("/api/v1/agents", json={"name": _name("agent"),
                                                    "model": model["name"]}))
    _ok(client.post(f"/api/v1/agents/{agent['id']}/activate", json={}))
    answer = _ok(client.post(f"/api/v1/agents/{agent['id']}/interact", json={"message": "hi"}))
    if answer["status"] == "CALL_STATUS_COMPLETED":
        return ""
    assert answer["status"] == "CALL_STATUS_FAILED", answer
    return answer["reason"]


def _alert_notification(client, url: str, servers) -> str:
    # "calls >= 0" holds at once: the rule fires on its first evaluation and notifies.
    reply = client.post("/api/v1/observability/alerts", json={
        "name": _name("always"), "channels": [f"webhook:{url}"],
        "condition": {"metric": "calls", "threshold": 0,
                      "operator": "COMPARISON_OPERATOR_GREATER_THAN_OR_EQUAL"}})
    return _refusal(reply) if reply.status_code != 200 else ""


PATHS = {"workflow http step": _workflow_step, "governance webhook": _governance_webhook,
         "integration webhook": _integration_webhook, "http tool": _http_tool,
         "api connection": _api_connection, "model endpoint": _model_endpoint,
         "alert notification": _alert_notification}


class Servers:
    """The loopback targets: a plain HTTP listener, and the model server for model paths."""

    def __init__(self, web, model_server) -> None:
        self.web, self.model_server = web, model_server
        self.script = model_server.script(_name("script"), [{"content": "fine"}])

    def url(self, path: str, marker: str) -> str:
        if path == "model endpoint":
            return self.model_server.base_url
        return f"{self.web.url}/{marker}"

    def seen(self, path: str, marker: str) -> list:
        if path == "model endpoint":
            return self.model_server.requests_for(self.script)
        return [r for r in self.web.requests if marker in r["path"]]


@pytest.fixture(scope="module")
def outsider(mesh):
    return register(mesh, "outsider")


@pytest.mark.parametrize("target", list(REFUSED))
@pytest.mark.parametrize("path", list(PATHS))
def test_an_outsider_cannot_make_the_platform_call_an_internal_address(
        mesh, outsider, web, model_server, path, target):
    servers = Servers(web, model_server)
    marker = _name("refused")
    url = REFUSED[target] or servers.url(path, marker)
    started = time.monotonic()
    with mesh.client(outsider.token) as client:
        assert PATHS[path](client, url, servers) == "EGRESS_DENIED"
    assert time.monotonic() - started < REFUSED_QUICKLY
    time.sleep(0.5)  # anything sent in the background would have arrived by now
    assert servers.seen(path, marker) == []


@pytest.fixture(scope="module")
def allowed_tenant(egress_mesh):
    return register(egress_mesh, "allowed")


@pytest.mark.parametrize("path", list(PATHS))
def test_the_same_loopback_target_is_reached_when_the_allow_list_names_it(
        egress_mesh, allowed_tenant, web, model_server, path):
    """The egress mesh allows 127.0.0.1: the listener there sees the request."""
    servers = Servers(web, model_server)
    marker = _name("allowed")
    with egress_mesh.client(allowed_tenant.token) as client:
        assert PATHS[path](client, servers.url(path, marker), servers) == ""
    assert _eventually(lambda: servers.seen(path, marker))
