"""The seeds' own examples, verbatim, through the real gateway (docs/seeds.md).

The four documents in the shared `seeds/` folder are what users were promised, down to their
example requests and answers. Each example request below is copied from its seed as written
(only the seed's unversioned path gets the `/api/v1` prefix its versioning section gives it);
each answer is checked against the seed's example answer with `assert_shape`: every key of the
example is there with a value of the same JSON kind (the platform's answers may carry more).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx2
from websockets.asyncio.client import connect

from tests.conftest import assert_envelope, register

# ---- seed 000: the orchestrator's API guide ------------------------------------------------
# `test_execute_workflow`, `test_invalid_workflow_type`, `test_full_workflow_execution`.
SEED_000_EXECUTE = {"requirements": "Create a calculator", "workflow_type": "full"}
SEED_000_INVALID = {"requirements": "Test", "workflow_type": "invalid"}
SEED_000_FULL_FLOW = {"requirements": "Create a simple API", "workflow_type": "full"}
# CustomWorkflowResponse as `execute_custom_workflow` returns it.
SEED_000_EXECUTE_ANSWER = {"session_id": "3f0c...", "status": "queued",
                           "message": "Workflow queued for execution",
                           "created_at": "2024-01-15T10:30:00", "estimated_completion": None}
# WorkflowProgressResponse.
SEED_000_PROGRESS_ANSWER = {"session_id": "3f0c...", "status": "completed", "progress": 100.0,
                            "current_phase": None, "phases_completed": ["plan"],
                            "errors": [{"code": "X"}], "partial_results": None}
# ErrorResponse, with the details of the seed's own usage example.
SEED_000_ERROR_ANSWER = {"error": "INVALID_INPUT", "message": "The provided input is invalid",
                         "details": {"field": "requirements", "issue": "too short"},
                         "timestamp": "2024-01-15T10:30:00", "request_id": "abc"}
# `get_workflow_types_cached`.
SEED_000_TYPES_ANSWER = {"workflow_types": ["full"]}

# ---- seed 002: the agent runtime API -------------------------------------------------------
SEED_002_HEALTH_ANSWER = {"status": "healthy", "service": "orbit",
                          "timestamp": "2024-01-15T10:30:00Z", "version": "1.0.0"}
SEED_002_DISPATCH = {"intent": "call_reasoning",
                     "context": {"user_id": "user123", "request_id": "req456"}}
SEED_002_DISPATCH_ANSWER = {
    "status": "success", "message": "Axon heartbeat OK", "correlation_id": "abc123-def456",
    "timestamp": "2024-01-15T10:30:00Z",
    "governance": {"allowed": True, "reason": "Request authorized", "decision_time_ms": 45}}
SEED_002_DENIED_ANSWER = {
    "status": "denied", "reason": "Rate limit exceeded", "correlation_id": "abc123-def456",
    "timestamp": "2024-01-15T10:30:00Z",
    "governance": {"allowed": False, "reason": "Rate limit exceeded", "decision_time_ms": 23}}
SEED_002_ERROR_ANSWER = {"error": "Error message", "correlation_id": "abc123-def456",
                         "timestamp": "2024-01-15T10:30:00Z",
                         "details": {"field": "intent", "issue": "required field missing"}}
# The SDK examples: `client.dispatch('call_reasoning', {'user_id': 'user123'})` (Python) and
# `dispatch('call_reasoning', { userId: 'user123' })` (JavaScript).
SEED_002_SDK_DISPATCHES = [{"intent": "call_reasoning", "context": {"user_id": "user123"}},
                           {"intent": "call_reasoning", "context": {"userId": "user123"}}]
# Governance decision webhooks ("Future" in the seed; built).
SEED_002_WEBHOOK = {"event": "governance_decision", "service": "orbit",
                    "intent": "call_reasoning", "allowed": True, "reason": "Request authorized",
                    "correlation_id": "abc123-def456", "timestamp": "2024-01-15T10:30:00Z",
                    "context": {"user_id": "user123", "ip_address": "192.168.1.1"}}

# ---- seed 003: the router ADR --------------------------------------------------------------
SEED_003_PAGE = {"items": [], "total": 0, "page": 1, "page_size": 20, "pages": 0}
SEED_003_DELETE = {"success": True, "message": "deleted"}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), "null")


def assert_shape(answer: Any, example: Any, path: str = "answer") -> None:
    """`answer` has the shape of the seed's `example`: every key, each value of the same JSON
    kind, objects compared key by key and lists item by item against the example's first item.
    A `None` in the example is an optional value (absent or of any kind)."""
    if example is None:
        return
    assert _kind(answer) == _kind(example), f"{path}: {answer!r} is not a {_kind(example)}"
    if isinstance(example, dict):
        for key, value in example.items():
            assert key in answer or value is None, f"{path}.{key} is missing from {answer!r}"
            if key in answer:
                assert_shape(answer[key], value, f"{path}.{key}")
    elif isinstance(example, list) and example:
        for i, item in enumerate(answer):
            assert_shape(item, example[0], f"{path}[{i}]")


def _full_workflow(client: httpx2.Client, slug: str = "full") -> dict:
    """The seed's workflow type `full`: plans, then writes the code (its `generated_code`)."""
    reply = client.post("/api/v1/workflows", json={
        "name": "Full build", "slug": slug, "description": "plan, then write the code",
        "steps": [{"id": "plan", "name": "planning", "type": "STEP_TYPE_TRANSFORM",
                   "transform": {"expression": "inputs.requirements"}},
                  {"id": "code", "name": "coding", "type": "STEP_TYPE_TRANSFORM",
                   "depends_on": ["plan"],
                   "transform": {"expression": "join(' ', ['# code for:', steps.plan.output])"}}],
        "outputs": {"generated_code": "steps.code.output"}})
    assert reply.status_code == 200, reply.text
    assert client.post(f"/api/v1/workflows/{slug}/activate", json={}).status_code == 200
    return reply.json()


def _wait_ended(client: httpx2.Client, session_id: str) -> dict:
    """The seed's polling loop: workflow-status until completed or failed."""
    deadline = time.monotonic() + 60
    while True:
        reply = client.get(f"/api/v1/workflow-status/{session_id}")
        assert reply.status_code == 200, reply.text
        body = reply.json()
        if body["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


# ---- seed 000 ------------------------------------------------------------------------------
def test_seed_000_execute_workflow_answers_queued(mesh, tenant):
    with mesh.client(tenant.token) as client:
        _full_workflow(client)
        reply = client.post("/api/v1/execute-workflow", json=SEED_000_EXECUTE)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert_shape(data, SEED_000_EXECUTE_ANSWER)
    assert "session_id" in data and data["status"] == "queued"
    assert data["message"] == "Workflow queued for execution"


def test_seed_000_invalid_workflow_type_is_400_unknown_workflow_type(mesh, tenant):
    with mesh.client(tenant.token) as client:
        reply = client.post("/api/v1/execute-workflow", json=SEED_000_INVALID)
    body = assert_envelope(reply, 400, "INVALID_ARGUMENT")
    assert "Unknown workflow type" in body["message"]
    assert body["details"]["reason"] == "UNKNOWN_WORKFLOW_TYPE"
    assert_shape(body, SEED_000_ERROR_ANSWER)
    assert body["request_id"] == body["correlation_id"] == reply.headers["x-request-id"]
    assert body["details"]["field"] == "workflow_type"


def test_seed_000_full_workflow_execution_polls_to_completed(mesh, tenant):
    with mesh.client(tenant.token) as client:
        _full_workflow(client)
        session_id = client.post("/api/v1/execute-workflow", json=SEED_000_FULL_FLOW).json()[
            "session_id"]
        body = _wait_ended(client, session_id)
    assert body["status"] == "completed", body
    assert_shape(body, SEED_000_PROGRESS_ANSWER)
    assert body["session_id"] == session_id and body["progress"] == 100
    assert body["phases_completed"] == ["planning", "coding"]
    # The seed reads the workflow's results at the top level; here they are under `results`.
    assert body["results"]["generated_code"] == "# code for: Create a simple API"


def test_seed_000_priorities_are_its_words(mesh, tenant):
    with mesh.client(tenant.token) as client:
        _full_workflow(client)
        for priority in ("low", "normal", "high", "critical"):
            reply = client.post("/api/v1/execute-workflow",
                                json={**SEED_000_EXECUTE, "priority": priority})
            assert reply.status_code == 200, reply.text
            execution = client.get(
                f"/api/v1/workflows/executions/{reply.json()['session_id']}").json()
            assert execution["priority"] == f"EXECUTION_PRIORITY_{priority.upper()}"
        body = assert_envelope(client.post("/api/v1/execute-workflow", json={
            **SEED_000_EXECUTE, "priority": "urgent"}), 400, "INVALID_ARGUMENT")
    assert body["details"]["field"] == "priority"


def test_seed_000_workflow_types(mesh, tenant):
    with mesh.client(tenant.token) as client:
        _full_workflow(client)
        reply = client.get("/api/v1/workflow-types")
    assert reply.status_code == 200, reply.text
    assert_shape(reply.json(), SEED_000_TYPES_ANSWER)
    assert reply.json()["workflow_types"] == ["full"]


def test_seed_000_missing_requirements_error_response(mesh, tenant):
    with mesh.client(tenant.token) as client:
        _full_workflow(client)
        reply = client.post("/api/v1/execute-workflow",
                            json={"requirements": "", "workflow_type": "full"},
                            headers={"X-Correlation-ID": "seed-000-error"})
    body = assert_envelope(reply, 400, "INVALID_ARGUMENT")
    assert_shape(body, SEED_000_ERROR_ANSWER)
    assert body["details"]["field"] == "requirements"
    assert body["request_id"] == "seed-000-error" == reply.headers["x-request-id"]


def test_seed_000_websocket_answers_ping_with_pong(mesh, tenant):
    with mesh.client(tenant.token) as client:
        _full_workflow(client)
        session_id = client.post("/api/v1/execute-workflow", json=SEED_000_EXECUTE).json()[
            "session_id"]

    async def scenario() -> list[str]:
        url = mesh.url.replace("http://", "ws://") + f"/ws/{session_id}"
        async with connect(url, additional_headers={
                "Authorization": f"Bearer {tenant.token}"}) as socket:
            first = json.loads(await asyncio.wait_for(socket.recv(), 30))
            assert first["type"] == "state"
            await socket.send("ping")
            seen = []
            while "pong" not in seen:  # events of the run may come first
                seen.append(await asyncio.wait_for(socket.recv(), 30))
            return seen
    assert asyncio.run(scenario())[-1] == "pong"


def test_seed_000_security_headers_and_versioned_paths(mesh, tenant):
    with mesh.client(tenant.token) as client:
        reply = client.get("/api/v1/workflow-types")
        unversioned = client.post("/execute-workflow", json=SEED_000_EXECUTE)
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["x-frame-options"] == "DENY"
    assert unversioned.status_code == 404  # the seed's v1 router: /api/v1/execute-workflow


# ---- seed 002 ------------------------------------------------------------------------------
def test_seed_002_health(mesh):
    with mesh.client() as client:
        reply = client.get("/health")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert_shape(body, SEED_002_HEALTH_ANSWER)
    assert body["status"] == "healthy"
    assert body["service"] == "agentmesh" and body["version"]


def test_seed_002_dispatch_example_succeeds_with_the_seed_shape(mesh, tenant):
    with mesh.client(tenant.token) as client:
        reply = client.post("/api/v1/dispatch", json=SEED_002_DISPATCH,
                            headers={"X-Correlation-ID": "abc123-def456"})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert_shape(body, SEED_002_DISPATCH_ANSWER)
        assert body["status"] == "success" and body["correlation_id"] == "abc123-def456"
        assert body["message"] == "Reasoning heartbeat OK"
        assert body["governance"]["allowed"] is True
        assert reply.headers["x-correlation-id"] == "abc123-def456"
        assert reply.headers["x-request-id"] == "abc123-def456"
        for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
            assert reply.headers[name].isdigit(), name
        # decision_time_ms: the real figure in milliseconds, not microseconds // 1000 (0).
        decision = client.get(
            f"/api/v1/governance/decisions/{body['governance']['decision_id']}").json()
    assert body["governance"]["decision_time_ms"] > 0
    assert body["governance"]["decision_time_ms"] == decision["decision_time_us"] / 1000
    assert decision["decision_time_ms"] == decision["decision_time_us"] / 1000
    assert decision["resource"] == 'Intent::"call_reasoning"'


def test_seed_002_sdk_examples(mesh, tenant):
    with mesh.client(tenant.token) as client:
        for example in SEED_002_SDK_DISPATCHES:
            reply = client.post("/api/v1/dispatch", json=example)
            assert reply.status_code == 200, reply.text
            assert_shape(reply.json(), SEED_002_DISPATCH_ANSWER)


def test_seed_002_denied_dispatch_has_the_seed_shape(mesh, tenant):
    with mesh.client(tenant.token) as client:
        created = client.post("/api/v1/governance/policies", json={
            "name": "no-reasoning", "effect": "POLICY_EFFECT_DENY",
            "match": {"intents": ["call_reasoning"]}})
        assert created.status_code == 200, created.text
        reply = client.post("/api/v1/dispatch", json=SEED_002_DISPATCH)
    body = assert_envelope(reply, 403, "PERMISSION_DENIED")
    assert_shape(body, SEED_002_DENIED_ANSWER)
    assert body["status"] == "denied" and body["governance"]["allowed"] is False
    assert body["reason"] == body["governance"]["reason"]
    assert "no-reasoning@1" in body["reason"]
    assert body["details"]["reason"] == "GOVERNANCE_DENIED"  # the envelope's own, kept


def test_seed_002_error_response(mesh, tenant):
    with mesh.client(tenant.token) as client:
        reply = client.post("/api/v1/dispatch", json={"context": {"user_id": "user123"}})
    body = assert_envelope(reply, 400, "INVALID_ARGUMENT")
    assert_shape(body, SEED_002_ERROR_ANSWER)
    assert body["details"]["field"] == "intent"


def test_seed_002_metrics_are_prometheus_text(mesh, operator, tenant):
    """The platform's metrics are an operator's (platform:read); a tenant's admin is refused."""
    with mesh.client(tenant.token) as client:
        assert_envelope(client.get("/metrics"), 403, "PERMISSION_DENIED")
    with mesh.client(operator.token) as client:
        reply = client.get("/metrics")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    assert "# TYPE " in reply.text and "# HELP " in reply.text


def test_seed_002_decision_webhook_has_the_seed_shape(egress_mesh, web):
    tenant = register(egress_mesh, "hooks")
    with egress_mesh.client(tenant.token) as client:
        hook = client.post("/api/v1/governance/webhooks", json={
            "url": f"{web.url}/decisions-{uuid.uuid4().hex[:6]}", "events": "all"})
        assert hook.status_code == 200, hook.text
        path = hook.json()["url"].removeprefix(web.url)
        reply = client.post("/api/v1/dispatch", json=SEED_002_DISPATCH)
        assert reply.status_code == 200, reply.text
    deadline = time.monotonic() + 20
    while not [r for r in web.requests if r["path"] == path] and time.monotonic() < deadline:
        time.sleep(0.2)
    delivered = [r["body"] for r in web.requests if r["path"] == path]
    assert delivered, "no decision webhook arrived"
    assert_shape(delivered[0], SEED_002_WEBHOOK)
    assert delivered[0]["intent"] == "call_reasoning" and delivered[0]["allowed"] is True
    assert delivered[0]["context"]["user_id"] == "user123"


# ---- seed 001 ------------------------------------------------------------------------------
def test_seed_001_admin_developer_and_user_roles(mesh, tenant):
    with mesh.client(tenant.token) as client:
        roles = {r["role"]: r for r in client.get("/api/v1/auth/roles").json()["items"]}
        assert {"ROLE_ADMIN", "ROLE_DEVELOPER", "ROLE_USER", "ROLE_VIEWER"} <= set(roles)
        assert "agents:execute" in roles["ROLE_USER"]["scopes"]
        _full_workflow(client)
        email = f"user-{uuid.uuid4().hex[:6]}@example.com"
        created = client.post("/api/v1/auth/users", json={
            "email": email, "password": "user-pass-123", "role": "ROLE_USER"})
        assert created.status_code == 200, created.text
        token = client.post("/api/v1/auth/login", json={
            "email": email, "password": "user-pass-123"}).json()["access_token"]
    with mesh.client(token) as user:
        assert user.get("/api/v1/agents").status_code == 200  # reads
        assert user.post("/api/v1/dispatch", json=SEED_002_DISPATCH).status_code == 200
        assert user.post("/api/v1/execute-workflow", json=SEED_000_EXECUTE).status_code == 200
        body = assert_envelope(user.post("/api/v1/agents", json={"name": "nope"}), 403,
                               "PERMISSION_DENIED")
        assert body["details"]["required_scope"] == "agents:write"
        assert_envelope(user.delete("/api/v1/workflows/full"), 403, "PERMISSION_DENIED")
        assert_envelope(user.get("/api/v1/auth/users"), 403, "PERMISSION_DENIED")


# ---- seed 003 ------------------------------------------------------------------------------
def test_seed_003_pages_names_slugs_activation_and_delete(mesh, tenant):
    name = f"seed3-{uuid.uuid4().hex[:6]}"
    with mesh.client(tenant.token) as client:
        assert_shape(client.get("/api/v1/agents").json(), SEED_003_PAGE)
        agent = client.post("/api/v1/agents", json={"name": name}).json()
        assert client.get(f"/api/v1/agents/{name}").json()["id"] == agent["id"]
        for action, status in (("activate", "AGENT_STATUS_ACTIVE"),
                               ("deactivate", "AGENT_STATUS_INACTIVE")):
            reply = client.post(f"/api/v1/agents/{name}/{action}", json={})
            assert reply.status_code == 200 and reply.json()["status"] == status, reply.text
        workflow = _full_workflow(client, slug=f"seed3-{uuid.uuid4().hex[:6]}")
        assert client.get(f"/api/v1/workflows/{workflow['slug']}").json()["id"] == \
            workflow["id"]
        reply = client.post(f"/api/v1/workflows/{workflow['slug']}/deactivate", json={})
        assert reply.json()["status"] == "WORKFLOW_STATUS_INACTIVE", reply.text
        deleted = client.delete(f"/api/v1/agents/{name}")
    assert deleted.status_code == 200
    assert_shape(deleted.json(), SEED_003_DELETE)
    assert deleted.json()["success"] is True


def test_seed_003_scopes_of_api_keys(mesh, tenant):
    with mesh.client(tenant.token) as client:
        keys = {scope: client.post("/api/v1/auth/api-keys", json={
            "name": f"k-{uuid.uuid4().hex[:6]}", "scopes": [scope]}).json()["key"]
            for scope in ("agents:read", "agents:*")}
    with mesh.client(api_key=keys["agents:read"]) as reader:
        assert reader.get("/api/v1/agents").status_code == 200
        body = assert_envelope(reader.post("/api/v1/agents", json={"name": "x"}), 403,
                               "PERMISSION_DENIED")
        assert body["details"]["required_scope"] == "agents:write"
    with mesh.client(api_key=keys["agents:*"]) as writer:
        assert writer.post("/api/v1/agents", json={
            "name": f"k-{uuid.uuid4().hex[:6]}"}).status_code == 200


def test_seed_003_auth_calls_analytics_and_call_events(mesh):
    tenant = register(mesh, "seed3")
    with mesh.client() as client:
        login = client.post("/api/v1/auth/login", json={"email": tenant.email,
                                                        "password": tenant.password})
        assert login.status_code == 200, login.text
        refreshed = client.post("/api/v1/auth/refresh",
                                json={"refresh_token": login.json()["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
    with mesh.client(refreshed.json()["access_token"]) as client:
        assert client.get("/api/v1/auth/me").json()["email"] == tenant.email
        for path in ("/api/v1/calls", "/api/v1/calls/active"):
            assert_shape(client.get(path).json(), SEED_003_PAGE)
        for path in ("summary", "call-volume", "workflow-stats", "provider-latency", "errors",
                     "active-calls"):
            reply = client.get(f"/api/v1/analytics/{path}")
            assert reply.status_code == 200, (path, reply.text)

    async def first_message() -> dict:
        async with connect(mesh.url.replace("http://", "ws://") + "/ws/calls",
                           additional_headers={"Authorization": f"Bearer {tenant.token}"}) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 30))
    state = asyncio.run(first_message())
    assert state["type"] == "state" and state["payload"] == {"active_calls": []}
