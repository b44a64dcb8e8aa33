"""Governance through the real gateway: dispatch allowed and denied in the seed's shapes,
policies written in Cedar (a bad one is a 400 naming the line), dry-run, decisions recorded,
and the global rate limit (Envoy's filter asking governance) answering 429 with X-RateLimit-*
headers, one limit shared by two gateways through Redis."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from tests.conftest import assert_envelope, register, start_mesh, stop_mesh

DENY_DISPATCH = 'forbid(principal, action == Action::"dispatch", resource == Agent::"{name}");'


def _name(prefix="gov"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_dispatch_allowed_has_the_seed_shape_and_the_operation_result(mesh, tenant):
    name = _name("agent")
    with mesh.client(tenant.token) as client:
        assert client.post("/api/v1/agents", json={"name": name}).status_code == 200
        reply = client.post("/api/v1/dispatch", json={"intent": "get_agent",
                                                      "context": {"agent_id": name}},
                            headers={"X-Correlation-ID": "dispatch-ok-1"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "success" and body["correlation_id"] == "dispatch-ok-1"
    assert body["timestamp"] and body["message"] == f"agent {name!r} found"
    governance = body["governance"]
    assert governance["allowed"] is True and governance["reason"]
    assert governance["decision_time_ms"] > 0  # milliseconds with microsecond precision
    assert body["result"]["name"] == name
    assert body["operation"] == "agentmesh.agents.v1.AgentService/GetAgent"
    with mesh.client(tenant.token) as client:
        decision = client.get(f"/api/v1/governance/decisions/{governance['decision_id']}").json()
    assert decision["allowed"] is True and decision["correlation_id"] == "dispatch-ok-1"
    assert decision["intent"] == "get_agent" and decision["resource"] == f'Agent::"{name}"'
    assert decision["decision_time_ms"] == governance["decision_time_ms"] == \
        decision["decision_time_us"] / 1000


def test_a_decision_reaches_the_audit_trail_within_seconds(mesh, tenant):
    """Written with the decision, the audit event wakes the forwarder when it commits: it is
    in the tenant's trail in seconds, not at the forwarder's idle poll (a minute)."""
    name = _name("agent")
    with mesh.client(tenant.token) as client:
        client.post("/api/v1/agents", json={"name": name})
        reply = client.post("/api/v1/dispatch", json={"intent": "get_agent",
                                                      "context": {"agent_id": name}})
        assert reply.status_code == 200, reply.text
        decision_id = reply.json()["governance"]["decision_id"]
        deadline = time.monotonic() + 10
        while True:
            events = client.get("/api/v1/observability/audit", params={
                "resource_id": decision_id}).json()["items"]
            if events or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert [e["action"] for e in events] == ["decision.allowed"], events
    event = events[0]
    assert event["service"] == "governance" and event["actor"] == tenant.user_id
    assert event["details"]["resource"] == f'Agent::"{name}"'


def test_dispatch_denied_by_a_cedar_policy_is_403_with_the_decision(mesh, tenant):
    name = _name("agent")
    with mesh.client(tenant.token) as client:
        client.post("/api/v1/agents", json={"name": name})
        created = client.post("/api/v1/governance/policies", json={
            "name": "no-dispatch", "cedar": DENY_DISPATCH.format(name=name)})
        assert created.status_code == 200, created.text
        assert created.json()["version"] == 1
        reply = client.post("/api/v1/dispatch", json={"intent": "get_agent",
                                                      "context": {"agent_id": name}})
        body = assert_envelope(reply, 403, "PERMISSION_DENIED")
        assert body["details"]["reason"] == "GOVERNANCE_DENIED"
        assert body["details"]["status"] == "denied"
        governance = body["details"]["governance"]
        assert governance["allowed"] is False and "no-dispatch@1" in governance["reason"]
        assert governance["decision_time_ms"] > 0
        assert governance["correlation_id"] == body["correlation_id"]
        # Seed 002's denial, beside the envelope: status, reason and governance at the top.
        assert body["status"] == "denied" and body["governance"] == governance
        assert body["reason"] == governance["reason"]
        listed = client.get("/api/v1/governance/decisions", params={"allowed": "false"}).json()
        assert listed["total"] == 1 and listed["items"][0]["id"] == governance["decision_id"]
        assert listed["items"][0]["matching_policies"] == ["no-dispatch@1"]


def test_dispatch_runs_the_operation_it_allows(mesh, tenant):
    """execute_tool through dispatch: the tool runs and its outcome comes back with the
    decision; an unknown tool is the tools service's 404, decided first."""
    with mesh.client(tenant.token) as client:
        tool = client.post("/api/v1/tools", json={
            "name": f"echo-{uuid.uuid4().hex[:6]}", "type": "TOOL_TYPE_BUILTIN",
            "status": "TOOL_STATUS_ACTIVE", "builtin": {"builtin_name": "echo"}}).json()
        reply = client.post("/api/v1/dispatch", json={
            "intent": "execute_tool",
            "context": {"tool_id": tool["id"], "arguments": {"say": "hi"}}})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["status"] == "success" and body["governance"]["allowed"] is True
        assert body["result"]["output"] == {"say": "hi"}
        missing = client.post("/api/v1/dispatch", json={"intent": "execute_tool",
                                                         "context": {"tool_id": "no-such-tool"}})
        assert_envelope(missing, 404, "NOT_FOUND")


def test_call_reasoning_without_an_agent_is_the_reasoning_heartbeat(mesh, tenant):
    """Seed 002's example names no agent: the reasoning path's health, decided and recorded
    like any dispatch; with an agent it is that agent's interaction."""
    with mesh.client(tenant.token) as client:
        reply = client.post("/api/v1/dispatch", json={
            "intent": "call_reasoning", "context": {"user_id": "user123", "request_id": "req456"}})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["message"] == "Reasoning heartbeat OK"
        assert body["operation"] == "grpc.health.v1.Health/Check"
        assert body["result"] == {"service": "agents", "status": "SERVING"}
        decision = client.get(
            f"/api/v1/governance/decisions/{body['governance']['decision_id']}").json()
        assert decision["intent"] == "call_reasoning"
        assert decision["context"]["user_id"] == "user123"
        assert decision["context"]["ip_address"]  # the client address, as the gateway saw it
        missing = client.post("/api/v1/dispatch", json={
            "intent": "call_reasoning",
            "context": {"agent_id": "no-such-agent", "message": "hi"}})
    assert_envelope(missing, 404, "NOT_FOUND")  # an agent named: its interaction


def test_unknown_intent_is_400(mesh, tenant):
    with mesh.client(tenant.token) as client:
        body = assert_envelope(client.post("/api/v1/dispatch", json={"intent": "launch"}),
                               400, "INVALID_ARGUMENT")
    assert body["details"]["reason"] == "UNKNOWN_INTENT"


def test_bad_policy_is_400_naming_the_line(mesh, tenant):
    cedar = 'permit(principal, action, resource);\n\nforbid(principal,\n  action resource);'
    with mesh.client(tenant.token) as client:
        reply = client.post("/api/v1/governance/policies", json={"name": "broken", "cedar": cedar})
        body = assert_envelope(reply, 400, "INVALID_ARGUMENT")
        assert body["details"]["reason"] == "POLICY_SYNTAX_ERROR"
        assert body["details"]["line"] == 4
        assert body["details"]["field_violations"][0]["field"] == "cedar"
        assert "line 4" in body["message"]
        assert client.get("/api/v1/governance/policies").json()["total"] == 0


def test_dry_run_evaluates_without_saving(mesh, tenant):
    with mesh.client(tenant.token) as client:
        client.post("/api/v1/governance/policies", json={
            "name": "allow-all", "cedar": "permit(principal, action, resource);"})
        reply = client.post("/api/v1/governance/policies/dry-run", json={
            "policy": {"name": "no-search", "cedar":
                       'forbid(principal == Agent::"triage", action == Action::"call_tool", '
                       'resource == Tool::"search");'},
            "request": {"principal_type": "Agent", "principal_id": "triage",
                        "action": "call_tool", "resource_type": "Tool", "resource_id": "search",
                        "arguments": {"query": "weather"}}})
        assert reply.status_code == 200, reply.text
        assert reply.json()["allowed"] is False
        assert reply.json()["matching_policies"] == ["no-search@draft"]
        names = [p["name"] for p in client.get("/api/v1/governance/policies").json()["items"]]
        assert names == ["allow-all"]
        assert client.get("/api/v1/governance/decisions").json()["total"] == 0
        bad = client.post("/api/v1/governance/policies/dry-run", json={
            "policy": {"cedar": "forbid(principal"},
            "request": {"action": "call_tool", "resource_type": "Tool", "resource_id": "x"}})
        assert_envelope(bad, 400, "INVALID_ARGUMENT")


def test_policy_update_adds_a_version(mesh, tenant):
    with mesh.client(tenant.token) as client:
        client.post("/api/v1/governance/policies", json={
            "name": "p1", "cedar": "permit(principal, action, resource);"})
        updated = client.put("/api/v1/governance/policies/p1", json={
            "cedar": 'forbid(principal, action == Action::"call_model", resource);'})
        assert updated.status_code == 200 and updated.json()["version"] == 2
        versions = client.get("/api/v1/governance/policies/p1/versions").json()
        assert [v["version"] for v in versions["items"]] == [2, 1]


@pytest.fixture(scope="module")
def limited_meshes(tmp_path_factory):
    """Two gateways (two meshes over one data directory, so one identity database and one set
    of signing keys) with the global rate limit on and counters in one Redis."""
    domain = f"test-{uuid.uuid4().hex[:8]}"  # keys of this test only
    env = {"AGENTMESH_GATEWAY_GLOBAL_RATE_LIMIT": "1", "AGENTMESH_RATE_LIMIT_DOMAIN": domain,
           "AGENTMESH_REDIS_URL": os.environ.get("AGENTMESH_TEST_REDIS_URL",
                                                 "redis://127.0.0.1:6379/0"),
           "AGENTMESH_RATE_LIMIT_PER_TENANT_PER_MINUTE": "5",
           "AGENTMESH_RATE_LIMIT_PER_IP_PER_MINUTE": "100000",
           "AGENTMESH_RATE_LIMIT_GLOBAL_PER_MINUTE": "100000"}
    shared_dir = tmp_path_factory.mktemp("limited")
    first = start_mesh(shared_dir, extra_env=env)
    try:
        second = start_mesh(shared_dir, extra_env=env)
    except Exception:
        stop_mesh(first)
        raise
    yield first, second
    stop_mesh(first)
    stop_mesh(second)


def test_tenant_over_the_global_limit_gets_429_with_headers(limited_meshes):
    mesh, _ = limited_meshes
    tenant = register(mesh)
    _not_at_the_end_of_a_window()
    with mesh.client(tenant.token) as client:
        first = client.get("/api/v1/governance/rate-limits")
        assert first.status_code == 200, first.text
        assert first.headers["x-ratelimit-limit"].split(",")[0].strip().startswith("5")
        assert int(first.headers["x-ratelimit-remaining"]) <= 4
        assert int(first.headers["x-ratelimit-reset"]) > 0
        usage = {l["name"]: l for l in first.json()["limits"]}
        assert usage["per_tenant"]["limit"] == 5 and usage["per_tenant"]["used"] >= 1
        replies = [client.get("/api/v1/governance/rate-limits") for _ in range(10)]
    limited = [r for r in replies if r.status_code == 429]
    assert limited, [r.status_code for r in replies]
    body = assert_envelope(limited[0], 429, "RATE_LIMIT_EXCEEDED")
    assert limited[0].headers["x-ratelimit-remaining"] == "0"
    assert "x-ratelimit-limit" in limited[0].headers and "x-ratelimit-reset" in limited[0].headers
    assert body["message"]


def test_two_gateways_sharing_redis_enforce_one_limit(limited_meshes):
    first, second = limited_meshes
    tenant = register(first)  # both meshes share one data directory: the token works on both
    _not_at_the_end_of_a_window()
    codes = []
    for i in range(10):
        mesh = (first, second)[i % 2]
        with mesh.client(tenant.token) as client:
            codes.append(client.get("/api/v1/governance/policies").status_code)
    # One limit of 5 per minute across both gateways, not 5 on each.
    assert codes.count(200) == 5 and codes.count(429) == 5, codes
    assert codes[:5] == [200] * 5


def _child_pid(parent: int, needle: str) -> int:
    """The pid of a descendant of `parent` whose command line contains `needle`."""
    from pathlib import Path

    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    todo = [parent]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            try:
                cmdline = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if needle.encode() in cmdline:
                return child
            todo.append(child)
    raise LookupError(needle)


def test_with_governance_unresponsive_the_gateway_fails_open(tmp_path_factory):
    """The documented failure mode: when the rate-limit service does not answer within the
    filter's 50 ms timeout, the request goes through (fail open) instead of failing."""
    import signal
    import time

    env = {"AGENTMESH_GATEWAY_GLOBAL_RATE_LIMIT": "1",
           "AGENTMESH_RATE_LIMIT_DOMAIN": f"test-{uuid.uuid4().hex[:8]}"}
    mesh = start_mesh(tmp_path_factory.mktemp("failopen"), extra_env=env, isolation="process")
    try:
        tenant = register(mesh)
        governance = _child_pid(mesh.process.pid, "serve governance")
        os.kill(governance, signal.SIGSTOP)
        try:
            with mesh.client(tenant.token) as client:
                started = time.monotonic()
                reply = client.get("/api/v1/agents")
                elapsed = time.monotonic() - started
            assert reply.status_code == 200, reply.text
            assert "x-ratelimit-limit" not in reply.headers  # no answer, so no limit to report
            assert elapsed < 5
        finally:
            os.kill(governance, signal.SIGCONT)
    finally:
        stop_mesh(mesh)


def _not_at_the_end_of_a_window():
    import time

    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)
