"""Workflows through the real gateway: a multi-step workflow watched over Server-Sent Events
and approved, the seed-000 routes in their shape, cancel, validation errors, tenancy, and the
crash test (kill -9 of the workflows process while 20 executions run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid

from tests.conftest import assert_envelope, register, start_mesh, stop_mesh
from tests.support.fixtures import local_server

ENDED = {"EXECUTION_STATUS_COMPLETED", "EXECUTION_STATUS_FAILED", "EXECUTION_STATUS_CANCELLED"}


web = local_server("tests.workflows.servers:EffectServer", scope="module")


def _slug():
    return f"flow-{uuid.uuid4().hex[:8]}"


def _create(client, steps, activate=True, **extra) -> dict:
    reply = client.post("/api/v1/workflows", json={"name": extra.pop("name", _slug()),
                                                   "steps": steps, **extra})
    assert reply.status_code == 200, reply.text
    workflow = reply.json()
    if activate:
        reply = client.post(f"/api/v1/workflows/{workflow['id']}/activate", json={})
        assert reply.status_code == 200, reply.text
        workflow = reply.json()
    return workflow


def _wait(client, execution_id, until=None, timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        reply = client.get(f"/api/v1/workflows/executions/{execution_id}")
        body = reply.json()
        if reply.status_code == 503:  # the service is restarting
            body = {}
        else:
            assert reply.status_code == 200, reply.text
        if body and (until(body) if until else body["status"] in ENDED):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def _step(execution: dict, step_id: str) -> dict:
    return next(s for s in execution["step_states"] if s["step_id"] == step_id)


def _sse(client, path, events: list, headers=None, ids: list | None = None):
    """The stream's `data:` events; with `ids`, also the `id:` line of each event, in order
    (what a browser's EventSource keeps as the last event id)."""
    with client.stream("GET", path, headers=headers or {}, timeout=60) as reply:
        assert reply.status_code == 200, reply.read()
        events.append(("content-type", reply.headers.get("content-type", "")))
        last_id = None
        for line in reply.iter_lines():
            if line.startswith("id:"):
                last_id = line[3:].strip()
            elif line.startswith("data:"):
                events.append((time.monotonic(), json.loads(line[5:])))
                if ids is not None:
                    ids.append(last_id)
                last_id = None


def test_multi_step_workflow_watched_over_sse_and_approved(egress_mesh, web):
    # HTTP steps call the local effect server: the mesh whose egress allow-list names 127.0.0.1.
    mesh = egress_mesh
    tenant = register(mesh)
    steps = [
        {"id": "prepare", "type": "STEP_TYPE_TRANSFORM",
         "transform": {"expression": "{topic: inputs.topic}"}},
        # Tool and agent steps: tests/e2e/test_interact.py (they need the egress mesh).
        {"id": "fetch", "type": "STEP_TYPE_HTTP", "depends_on": ["prepare"],
         "inputs": {"q": "steps.prepare.output.topic"},
         "http": {"url": f"{web.url}/effect?name=e2e-fetch&sleep=0.5"}},
        {"id": "check", "type": "STEP_TYPE_CONDITION", "depends_on": ["fetch"],
         "condition": {"expression": "steps.fetch.output.ok == `true`",
                       "then_step_ids": ["fanout"], "else_step_ids": ["give_up"]}},
        {"id": "give_up", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "'no'"}},
        {"id": "fanout", "type": "STEP_TYPE_PARALLEL", "parallel": {"branches": [
            {"name": "a", "step_ids": ["a1"]}, {"name": "b", "step_ids": ["b1"]}]}},
        {"id": "a1", "type": "STEP_TYPE_HTTP", "http": {"url": f"{web.url}/effect?sleep=0.4"}},
        {"id": "b1", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "`2`"}},
        {"id": "approve", "type": "STEP_TYPE_APPROVAL", "depends_on": ["fanout"],
         "approval": {"message": "publish {{topic}}?"}, "inputs": {"topic": "inputs.topic"}},
        {"id": "write", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["approve"],
         "transform": {"expression": "join(' ', ['report on', inputs.topic])"}},
    ]
    with mesh.client(tenant.token) as client:
        workflow = _create(client, steps, outputs={"report": "steps.write.output",
                                                   "b": "steps.fanout.output.b"})
        started = client.post(f"/api/v1/workflows/{workflow['slug']}/execute",
                              json={"inputs": {"topic": "durability"}})
        assert started.status_code == 200, started.text
        execution = started.json()
        assert execution["status"] == "EXECUTION_STATUS_QUEUED"
        events: list = []
        sse_ids: list = []
        watcher = threading.Thread(target=_sse, args=(
            mesh.client(tenant.token), f"/api/v1/workflows/executions/{execution['id']}/watch",
            events), kwargs={"ids": sse_ids})
        watcher.start()
        waiting = _wait(client, execution["id"],
                        lambda e: e["status"] == "EXECUTION_STATUS_WAITING_APPROVAL")
        assert waiting["current_phase"] == "approve"
        seen_before_approval = len(events)
        approved = client.post(f"/api/v1/workflows/executions/{execution['id']}/steps/approve/approve",
                               json={"comment": "ship it"})
        assert approved.status_code == 200, approved.text
        assert _step(approved.json(), "approve")["decisions"][0]["user_id"] == tenant.user_id
        watcher.join(30)
        done = _wait(client, execution["id"])
    assert done["status"] == "EXECUTION_STATUS_COMPLETED", done
    assert done["outputs"] == {"report": "report on durability", "b": 2}
    assert _step(done, "give_up")["status"] == "STEP_STATUS_SKIPPED"
    assert events[0][1].startswith("text/event-stream")
    data = [e for _, e in events[1:]]
    assert seen_before_approval >= 3  # events arrived while it ran
    assert data[-1]["status"] == "EXECUTION_STATUS_COMPLETED" and data[-1]["progress"] == 100
    assert all(d["status"] != "EXECUTION_STATUS_COMPLETED" for d in data[:-1])
    assert any(d["status"] == "EXECUTION_STATUS_WAITING_APPROVAL" for d in data)
    ids = [d["event_id"] for d in data]
    assert ids == sorted(ids)
    # Each event has an `id:` line with its event id, so EventSource resumes by itself.
    assert sse_ids == [str(i) for i in ids]
    # Resumable: with Last-Event-ID, only what changed after it comes again.
    resumed: list = []
    _sse(mesh.client(tenant.token), f"/api/v1/workflows/executions/{execution['id']}/watch",
         resumed, headers={"Last-Event-ID": str(ids[1])})
    assert [d["event_id"] for _, d in resumed[1:]] == [ids[-1]]
    resumed = []
    _sse(mesh.client(tenant.token),
         f"/api/v1/workflows/executions/{execution['id']}/watch?last_event_id={ids[-1]}", resumed)
    assert resumed[1:] == []


def test_seed_000_routes_return_the_seed_shape(mesh, tenant):
    with mesh.client(tenant.token) as client:
        workflow = _create(client, [
            {"id": "plan", "name": "Planning", "type": "STEP_TYPE_TRANSFORM",
             "transform": {"expression": "inputs.requirements"}},
            {"id": "build", "name": "Building", "type": "STEP_TYPE_TRANSFORM",
             "depends_on": ["plan"], "transform": {"expression": "inputs.configuration"}}],
            description="plans and builds")
        types = client.get("/api/v1/workflow-types").json()
        assert {"workflow_types", "items", "total", "page", "page_size", "pages"} <= set(types)
        assert workflow["slug"] in types["workflow_types"]
        mine = next(t for t in types["items"] if t["workflow_type"] == workflow["slug"])
        assert mine["description"] == "plans and builds" and mine["workflow_id"] == workflow["id"]
        reply = client.post("/api/v1/execute-workflow", json={
            "requirements": "a landing page", "workflow_type": workflow["slug"],
            "configuration": {"style": "plain"}, "priority": "high"})
        assert reply.status_code == 200, reply.text
        submitted = reply.json()
        assert set(submitted) >= {"session_id", "status", "message", "created_at"}
        assert submitted["status"] == "queued"
        assert submitted["message"] == "Workflow queued for execution"
        session = submitted["session_id"]
        assert client.get(f"/api/v1/workflows/executions/{session}").json()["priority"] == \
            "EXECUTION_PRIORITY_HIGH"
        deadline = time.monotonic() + 30
        while True:
            status = client.get(f"/api/v1/workflow-status/{session}")
            assert status.status_code == 200, status.text
            body = status.json()
            if body["status"] in ("completed", "failed", "cancelled") or \
                    time.monotonic() > deadline:
                break
            assert body["status"] in ("queued", "running")
            time.sleep(0.1)
        assert set(body) >= {"session_id", "status", "progress", "current_phase",
                             "phases_completed", "errors", "partial_results"}
        assert body["session_id"] == session and body["status"] == "completed"
        assert body["progress"] == 100 and body["phases_completed"] == ["Planning", "Building"]
        assert body["errors"] == []
        assert body["partial_results"] == {"plan": "a landing page", "build": {"style": "plain"}}
        unknown = assert_envelope(client.post("/api/v1/execute-workflow", json={
            "requirements": "x", "workflow_type": "no-such-type"}), 400, "INVALID_ARGUMENT")
        assert unknown["message"].startswith("Unknown workflow type")
        assert unknown["details"]["reason"] == "UNKNOWN_WORKFLOW_TYPE"
        assert_envelope(client.post("/api/v1/execute-workflow", json={
            "requirements": "", "workflow_type": workflow["slug"]}), 400, "INVALID_ARGUMENT")
        assert_envelope(client.post("/api/v1/execute-workflow", json={
            "requirements": "x", "workflow_type": workflow["slug"],
            "priority": "EXECUTION_PRIORITY_HIGH"}), 400, "INVALID_ARGUMENT")
        # Templates are made by the templates service, which does not create them yet.
        template = client.post(f"/api/v1/workflows/{workflow['id']}/template", json={})
        assert template.status_code in (200, 501), template.text
        again = client.post("/api/v1/execute-workflow", json={
            "requirements": "r", "workflow_type": workflow["slug"], "idempotency_key": "k-1"})
        same = client.post("/api/v1/execute-workflow", json={
            "requirements": "r", "workflow_type": workflow["slug"], "idempotency_key": "k-1"})
        assert again.json()["session_id"] == same.json()["session_id"]


def test_approvers_named_by_role_or_email_can_approve(mesh, tenant):
    """An approval step addressed to `role:<role>` or an e-mail address waits for someone with
    that role or address (any case), and refuses everyone else."""
    with mesh.client(tenant.token) as client:
        email = f"user-{uuid.uuid4().hex[:6]}@example.com"
        assert client.post("/api/v1/auth/users", json={
            "email": email, "password": "user-pass-123", "role": "ROLE_USER"}).status_code == 200
        user_token = client.post("/api/v1/auth/login", json={
            "email": email, "password": "user-pass-123"}).json()["access_token"]
        workflow = _create(client, [
            {"id": "by_role", "type": "STEP_TYPE_APPROVAL",
             "approval": {"approvers": ["role:admin"]}},
            {"id": "by_email", "type": "STEP_TYPE_APPROVAL", "depends_on": ["by_role"],
             "approval": {"approvers": [email.upper()]}}])
        execution = client.post(f"/api/v1/workflows/{workflow['id']}/execute",
                                json={"inputs": {}}).json()
        base = f"/api/v1/workflows/executions/{execution['id']}/steps"
        _wait(client, execution["id"], lambda e: _step(e, "by_role")["status"] ==
              "STEP_STATUS_WAITING_APPROVAL")
        with mesh.client(user_token) as user:
            refused = assert_envelope(user.post(f"{base}/by_role/approve", json={}), 403,
                                      "PERMISSION_DENIED")
            assert refused["details"]["reason"] == "NOT_AN_APPROVER"
            approved = client.post(f"{base}/by_role/approve", json={"comment": "admin ok"})
            assert approved.status_code == 200, approved.text
            _wait(client, execution["id"], lambda e: _step(e, "by_email")["status"] ==
                  "STEP_STATUS_WAITING_APPROVAL")
            assert_envelope(client.post(f"{base}/by_email/approve", json={}), 403,
                            "PERMISSION_DENIED")
            approved = user.post(f"{base}/by_email/approve", json={"comment": "mine"})
            assert approved.status_code == 200, approved.text
        done = _wait(client, execution["id"])
    assert done["status"] == "EXECUTION_STATUS_COMPLETED", done
    assert _step(done, "by_role")["decisions"][0]["user_id"] == tenant.user_id


def test_cancel_within_a_second_and_validation_names_the_step(egress_mesh, web):
    mesh = egress_mesh  # the HTTP step calls the local effect server (127.0.0.1 allowed)
    tenant = register(mesh)
    with mesh.client(tenant.token) as client:
        body = assert_envelope(client.post("/api/v1/workflows", json={
            "name": "bad", "steps": [
                {"id": "first", "type": "STEP_TYPE_TRANSFORM",
                 "transform": {"expression": "steps.later.output"}},
                {"id": "later", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["first"],
                 "transform": {"expression": "inputs"}}]}), 400, "INVALID_ARGUMENT")
        assert "step 'first' refers to step 'later'" in body["message"]
        assert body["details"]["field_violations"][0]["field"] == "steps.first.transform.expression"
        workflow = _create(client, [{"id": "long", "type": "STEP_TYPE_HTTP",
                                     "http": {"url": f"{web.url}/slow?seconds=30"}}])
        execution = client.post(f"/api/v1/workflows/{workflow['id']}/execute", json={}).json()
        _wait(client, execution["id"],
              lambda e: _step(e, "long")["status"] == "STEP_STATUS_RUNNING")
        started = time.monotonic()
        cancelled = client.post(f"/api/v1/workflows/executions/{execution['id']}/cancel",
                                json={"reason": "stop"})
        assert time.monotonic() - started < 1.0
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "EXECUTION_STATUS_CANCELLED"
        assert _step(cancelled.json(), "long")["status"] == "STEP_STATUS_CANCELLED"


def test_a_tool_step_runs_the_tool_through_the_tools_service(mesh, tenant):
    with mesh.client(tenant.token) as client:
        tool = client.post("/api/v1/tools", json={
            "name": _slug(), "type": "TOOL_TYPE_BUILTIN", "status": "TOOL_STATUS_ACTIVE",
            "builtin": {"builtin_name": "echo"}}).json()
        workflow = _create(client, [
            {"id": "tool", "type": "STEP_TYPE_TOOL",
             "tool": {"tool_id": tool["id"], "arguments": {"greeting": "hello"}}}])
        execution = client.post(f"/api/v1/workflows/{workflow['id']}/execute", json={}).json()
        done = _wait(client, execution["id"])
        assert done["status"] == "EXECUTION_STATUS_COMPLETED", done
        stats = client.get(f"/api/v1/tools/{tool['id']}/stats").json()
        assert stats["total_executions"] == 1, stats
        missing = client.post("/api/v1/workflows", json={"name": _slug(), "steps": [
            {"id": "tool", "type": "STEP_TYPE_TOOL", "tool": {"tool_id": "no-such-tool"}}]})
        body = assert_envelope(missing, 400, "INVALID_ARGUMENT")
        assert "tool" in body["message"]


def test_other_tenant_gets_404_on_every_route(mesh, tenant, other_tenant):
    with mesh.client(tenant.token) as client:
        workflow = _create(client, [{"id": "ask", "type": "STEP_TYPE_APPROVAL",
                                     "approval": {}}])
        execution = client.post(f"/api/v1/workflows/{workflow['id']}/execute", json={}).json()
        _wait(client, execution["id"],
              lambda e: e["status"] == "EXECUTION_STATUS_WAITING_APPROVAL")
        schedule = client.post(f"/api/v1/workflows/{workflow['id']}/schedules",
                               json={"cron": "0 0 1 1 *"}).json()
    w, e = workflow["id"], execution["id"]
    routes = [
        ("GET", f"/api/v1/workflows/{w}"), ("GET", f"/api/v1/workflows/{workflow['slug']}"),
        ("PUT", f"/api/v1/workflows/{w}"), ("DELETE", f"/api/v1/workflows/{w}"),
        ("POST", f"/api/v1/workflows/{w}/activate"), ("POST", f"/api/v1/workflows/{w}/deactivate"),
        ("POST", f"/api/v1/workflows/{w}/execute"), ("GET", f"/api/v1/workflows/{w}/executions"),
        ("GET", f"/api/v1/workflows/{w}/stats"), ("GET", f"/api/v1/workflows/{w}/versions"),
        ("GET", f"/api/v1/workflows/{w}/versions/1"), ("GET", f"/api/v1/workflows/{w}/schedules"),
        ("POST", f"/api/v1/workflows/{w}/schedules"),
        ("DELETE", f"/api/v1/workflows/{w}/schedules/{schedule['id']}"),
        ("POST", f"/api/v1/workflows/{w}/template"),
        ("GET", f"/api/v1/workflows/executions/{e}"), ("GET", f"/api/v1/workflow-status/{e}"),
        ("POST", f"/api/v1/workflows/executions/{e}/cancel"),
        ("POST", f"/api/v1/workflows/executions/{e}/terminate"),
        ("POST", f"/api/v1/workflows/executions/{e}/retry"),
        ("POST", f"/api/v1/workflows/executions/{e}/steps/ask/approve"),
        ("POST", f"/api/v1/workflows/executions/{e}/steps/ask/reject"),
        ("GET", f"/api/v1/workflows/executions/{e}/watch"),
    ]
    with mesh.client(other_tenant.token) as client:
        for method, path in routes:
            body = {"cron": "* * * * *"} if path.endswith("/schedules") else {}
            reply = client.request(method, path, json=body if method in ("POST", "PUT") else None)
            if path.endswith("/watch") and reply.status_code == 200:
                raise AssertionError("watch of another tenant's execution streamed")
            assert_envelope(reply, 404, "NOT_FOUND")
        # Seed 000's route: another tenant's workflow is no type of this one, as any unknown.
        unknown = assert_envelope(client.post("/api/v1/execute-workflow", json={
            "requirements": "x", "workflow_type": workflow["slug"]}), 400, "INVALID_ARGUMENT")
        assert unknown["details"]["reason"] == "UNKNOWN_WORKFLOW_TYPE"
    with mesh.client(tenant.token) as client:
        got = client.get(f"/api/v1/workflows/executions/{e}").json()
        assert got["status"] == "EXECUTION_STATUS_WAITING_APPROVAL"
        client.post(f"/api/v1/workflows/executions/{e}/cancel", json={})


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _workflows_pid(mesh) -> int | None:
    for pid in _children(mesh.process.pid):
        try:
            if "serve workflows" in open(f"/proc/{pid}/cmdline").read().replace("\0", " "):
                return pid
        except FileNotFoundError:
            pass
    return None


def test_crash_of_the_workflows_process_completes_every_execution_once(tmp_path, web):
    """20 executions of transform -> HTTP tool (through the tools service) -> HTTP step; the
    workflows process is killed with SIGKILL while they run; after `agentmesh up` restarts it
    every execution completes and the counting server saw each step's effect exactly once per
    execution (the step's idempotency key reaches it as `Idempotency-Key`, through the tool)."""
    mesh = start_mesh(tmp_path / "crash", isolation="process",
                      extra_env={"AGENTMESH_EGRESS_ALLOW": "127.0.0.1"})
    try:
        tenant = register(mesh)
        run = uuid.uuid4().hex[:6]
        with mesh.client(tenant.token) as client:
            tool = client.post("/api/v1/tools", json={
                "name": f"charge-{run}", "type": "TOOL_TYPE_HTTP", "status": "TOOL_STATUS_ACTIVE",
                "http": {"url": f"{web.url}/effect?name={run}-charge&sleep=1.0",
                         "method": "GET"}})
            assert tool.status_code == 200, tool.text
            workflow = _create(client, [
                {"id": "prep", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "inputs"}},
                {"id": "charge", "type": "STEP_TYPE_TOOL", "depends_on": ["prep"],
                 "tool": {"tool_id": tool.json()["id"]}},
                {"id": "notify", "type": "STEP_TYPE_HTTP", "depends_on": ["charge"],
                 "http": {"url": f"{web.url}/effect?name={run}-notify&sleep=1.0"}}])
            ids = [client.post(f"/api/v1/workflows/{workflow['id']}/execute",
                               json={"inputs": {"n": i}}).json()["id"] for i in range(20)]
            deadline = time.monotonic() + 30
            while web.by_name[f"{run}-charge"] < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            victim = _workflows_pid(mesh)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            while True:
                now = _workflows_pid(mesh)
                if now and now != victim:
                    break
                assert time.monotonic() - killed_at < 60, "workflows was not restarted"
                time.sleep(0.2)
            results = {}
            for execution_id in ids:
                results[execution_id] = _wait(client, execution_id, timeout=120)
        assert {r["status"] for r in results.values()} == {"EXECUTION_STATUS_COMPLETED"}, \
            [r["errors"] for r in results.values() if r["status"] != "EXECUTION_STATUS_COMPLETED"]
        for execution_id in ids:
            for step in ("charge", "notify"):
                keys = [k for k in web.effects if k.startswith(f"{execution_id}:{step}:")]
                assert keys == [f"{execution_id}:{step}:1"], keys  # one attempt, one key
                assert web.effects[keys[0]] == 1
        redelivered = sum(1 for k, n in web.deliveries.items() if n > 1 and
                          k.split(":")[0] in ids)
        print(f"crash test: {redelivered} step deliveries were repeated after the crash and "
              "deduplicated by their idempotency key")
    finally:
        stop_mesh(mesh)


def test_a_tool_step_acts_as_the_starter_and_needs_its_tools_execute(mesh, tenant):
    """A caller who may run workflows but not tools ran tools through a one-step workflow (the
    engine called them with fixed scopes). Now the steps act as the starter, an API key as that
    key: without `tools:execute` the step fails SCOPE_NOT_HELD and the tool never runs."""
    with mesh.client(tenant.token) as admin:
        tool = admin.post("/api/v1/tools", json={
            "name": _slug(), "type": "TOOL_TYPE_BUILTIN", "status": "TOOL_STATUS_ACTIVE",
            "builtin": {"builtin_name": "echo"}}).json()
        workflow = _create(admin, [{"id": "tool", "type": "STEP_TYPE_TOOL",
                                    "tool": {"tool_id": tool["id"], "arguments": {"x": 1}}}])
        keys = {}
        for name, scopes in (("runner", ["workflows:*"]),
                             ("builder", ["workflows:*", "tools:execute"])):
            made = admin.post("/api/v1/auth/api-keys", json={"name": f"{name}-{_slug()}",
                                                             "scopes": scopes})
            assert made.status_code == 200, made.text
            keys[name] = made.json()
    with mesh.client(api_key=keys["runner"]["key"]) as runner:
        assert_envelope(runner.post(f"/api/v1/tools/{tool['id']}/execute", json={}), 403,
                        "PERMISSION_DENIED")  # the gateway's refusal, directly
        started = runner.post(f"/api/v1/workflows/{workflow['id']}/execute", json={})
        assert started.status_code == 200, started.text
        refused = _wait(runner, started.json()["id"])
    assert refused["status"] == "EXECUTION_STATUS_FAILED"
    assert _step(refused, "tool")["status"] == "STEP_STATUS_FAILED"
    assert [e["code"] for e in refused["errors"]] == ["SCOPE_NOT_HELD"]
    assert refused["created_by"] == tenant.user_id  # the key's creator
    assert refused["api_key_id"] == keys["runner"]["id"] and refused["scopes"] == ["workflows:*"]
    with mesh.client(api_key=keys["builder"]["key"]) as builder:
        ran = _wait(builder, builder.post(f"/api/v1/workflows/{workflow['id']}/execute",
                                          json={}).json()["id"])
    assert ran["status"] == "EXECUTION_STATUS_COMPLETED", ran
    assert ran["api_key_id"] == keys["builder"]["id"]
    assert ran["scopes"] == ["tools:execute", "workflows:*"]
    with mesh.client(tenant.token) as admin:
        stats = admin.get(f"/api/v1/tools/{tool['id']}/stats").json()
        assert stats["total_executions"] == 1  # only the builder's step ran it
        # A client's own copy of the key header is dropped at the gateway, as the others are.
        mine = _wait(admin, admin.post(f"/api/v1/workflows/{workflow['id']}/execute", json={},
                                       headers={"x-agentmesh-api-key-id": "forged"}).json()["id"])
    assert mine["status"] == "EXECUTION_STATUS_COMPLETED" and not mine.get("api_key_id")
    assert "tools:*" in mine["scopes"]  # a tenant admin's token


def test_a_pure_workflow_answers_ended_and_each_step_that_ran_is_decided_once(mesh):
    """A pure workflow (transforms and conditions) runs in the call that starts it
    (mesh.workflows.inline): the execute answer is the ended execution. Governance decided
    each step that ran, once; a policy forbidding a step fails the execution as the queued
    interpreter would; a retry once the policy is gone completes it."""
    owner = register(mesh)
    with mesh.client(owner.token) as client:
        def ok(reply):
            assert reply.status_code == 200, reply.text
            return reply.json()

        def decided(execution_id: str, **params) -> list[dict]:
            return ok(client.get("/api/v1/governance/decisions", params={
                "correlation_id": execution_id, "page_size": 100, **params}))["items"]

        workflow = _create(client, [
            {"id": "check", "type": "STEP_TYPE_CONDITION",
             "condition": {"expression": "inputs.n > `1`", "then_step_ids": ["big"],
                           "else_step_ids": ["small"]}},
            {"id": "big", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["check"],
             "transform": {"expression": "{size: 'big', n: inputs.n}"}},
            {"id": "small", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["check"],
             "transform": {"expression": "{size: 'small'}"}},
            {"id": "last", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["big", "small"],
             "transform": {"expression": "steps.big.output || steps.small.output"}},
        ], outputs={"result": "steps.last.output"})
        execute = f"/api/v1/workflows/{workflow['slug']}/execute"

        execution = ok(client.post(execute, json={"inputs": {"n": 5}}))
        assert execution["status"] == "EXECUTION_STATUS_COMPLETED", execution
        assert execution["outputs"] == {"result": {"size": "big", "n": 5}}
        assert _step(execution, "small")["status"] == "STEP_STATUS_SKIPPED"
        assert execution["progress"] == 100
        assert ok(client.get(f"/api/v1/workflows/executions/{execution['id']}")) == execution
        events: list = []
        _sse(client, f"/api/v1/workflows/executions/{execution['id']}/watch", events)
        assert events[-1][1]["status"] == "EXECUTION_STATUS_COMPLETED"
        steps = sorted(d["context"]["arguments"]["step"] for d in decided(execution["id"]))
        assert steps == ["big", "check", "last"]  # `small` never ran

        policy = ok(client.post("/api/v1/governance/policies", json={
            "name": f"no-big-{uuid.uuid4().hex[:6]}", "cedar": (
                'permit(principal, action, resource);\n'
                'forbid(principal, action == Action::"execute_workflow", resource) when '
                '{ context.arguments has step && context.arguments.step == "big" };')}))
        failed = ok(client.post(execute, json={"inputs": {"n": 5}}))
        assert failed["status"] == "EXECUTION_STATUS_FAILED", failed
        assert _step(failed, "big")["status"] == "STEP_STATUS_FAILED"
        assert f"{policy['name']}@1" in _step(failed, "big")["error"]
        assert _step(failed, "last")["status"] == "STEP_STATUS_SKIPPED"
        assert [e["code"] for e in failed["errors"]] == ["GOVERNANCE_DENIED"]
        assert [d["context"]["arguments"]["step"]
                for d in decided(failed["id"], allowed="false")] == ["big"]
        assert len(decided(failed["id"])) == 2  # check and big, each once

        assert client.delete(f"/api/v1/governance/policies/{policy['id']}").status_code == 200
        ok(client.post(f"/api/v1/workflows/executions/{failed['id']}/retry", json={}))
        done = _wait(client, failed["id"])
        assert done["status"] == "EXECUTION_STATUS_COMPLETED", done
        assert done["outputs"] == {"result": {"size": "big", "n": 5}}
