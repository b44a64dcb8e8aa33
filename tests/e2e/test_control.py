"""The control plane controls, through the real gateway (issue 25): one decision point for
every action (a tool run directly, by a workflow step and by an agent; a model request), each a
recorded decision naming the policy and its version; budgets that refuse a model request with
429 BUDGET_EXCEEDED once used up."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.conftest import assert_envelope, register

ENDED = {"EXECUTION_STATUS_COMPLETED", "EXECUTION_STATUS_FAILED", "EXECUTION_STATUS_CANCELLED"}


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ok(reply):
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.fixture
def client(egress_mesh):
    owner = register(egress_mesh)
    with egress_mesh.client(owner.token) as client:
        if client.get("/api/v1/master-data/models").status_code == 501:
            pytest.skip("the masterdata service is not built")
        yield client


def _model(client, model_server, steps):
    script = model_server.script(_name("script"), steps)
    secret = _name("key")
    _ok(client.post("/api/v1/master-data/secrets", json={
        "name": secret, "value": "sk-e2e-secret", "secret_type": "SECRET_TYPE_API_KEY"}))
    return _ok(client.post("/api/v1/master-data/models", json={
        "name": _name("model"), "provider": "openai_compatible", "model_id": script,
        "endpoint_url": model_server.base_url, "secret_ref": secret,
        "pricing": {"input_per_1m_tokens": 500, "output_per_1m_tokens": 1500}})), script


def _agent(client, model, tools=()):
    agent = _ok(client.post("/api/v1/agents", json={
        "name": _name("agent"), "model": model["name"], "tools": list(tools),
        "system_prompt": "Use the tools."}))
    return _ok(client.post(f"/api/v1/agents/{agent['id']}/activate", json={}))


def _wait(client, execution_id, timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = _ok(client.get(f"/api/v1/workflows/executions/{execution_id}"))
        if body["status"] in ENDED:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_a_forbidden_tool_is_denied_directly_in_a_workflow_step_and_to_an_agent(
        client, model_server):
    tool = _ok(client.post("/api/v1/tools", json={
        "name": _name("wire"), "type": "TOOL_TYPE_BUILTIN", "status": "TOOL_STATUS_ACTIVE",
        "builtin": {"builtin_name": "echo"}}))
    policy = _name("no-wire")
    _ok(client.post("/api/v1/governance/policies", json={"name": policy, "cedar": (
        'permit(principal, action, resource);\n'
        f'forbid(principal, action == Action::"call_tool", resource == Tool::"{tool["name"]}");')}))

    # 1. directly: 403 with the decision
    body = assert_envelope(client.post(f"/api/v1/tools/{tool['id']}/execute",
                                       json={"arguments": {"say": "hi"}}),
                           403, "PERMISSION_DENIED")
    assert body["details"]["reason"] == "GOVERNANCE_DENIED"
    governance = body["details"]["governance"]
    assert governance["allowed"] is False and governance["matching_policies"] == [f"{policy}@1"]
    assert governance["decision_id"]

    # 2. in a workflow step: the execution is allowed to start, the step fails with the decision
    workflow = _ok(client.post("/api/v1/workflows", json={"name": _name("wf"), "steps": [
        {"id": "wire", "type": "STEP_TYPE_TOOL",
         "tool": {"tool_id": tool["id"], "arguments": {"say": "hi"}}}]}))
    _ok(client.post(f"/api/v1/workflows/{workflow['id']}/activate", json={}))
    execution = _ok(client.post(f"/api/v1/workflows/{workflow['id']}/execute", json={}))
    done = _wait(client, execution["id"])
    assert done["status"] == "EXECUTION_STATUS_FAILED", done
    step = next(s for s in done["step_states"] if s["step_id"] == "wire")
    assert step["status"] == "STEP_STATUS_FAILED"
    assert f"{policy}@1" in step["error"], step
    assert any(e.get("code") == "GOVERNANCE_DENIED" for e in done["errors"]), done["errors"]

    # 3. when an agent calls it
    model, _ = _model(client, model_server, [
        {"tool_call": {"name": tool["name"], "arguments": {"say": "hi"}}},
        {"content": "unreachable"}])
    agent = _agent(client, model, tools=[tool["name"]])
    answer = _ok(client.post(f"/api/v1/agents/{agent['id']}/interact",
                             json={"message": "use the tool"}))
    assert answer["status"] == "CALL_STATUS_FAILED"
    assert answer["reason"] == "TOOL_DENIED_BY_POLICY"

    denied = _ok(client.get("/api/v1/governance/decisions", params={"allowed": "false"}))
    assert denied["total"] == 3, denied
    for decision in denied["items"]:
        assert decision["action"] == "call_tool"
        assert decision["resource"] == f'Tool::"{tool["name"]}"'
        assert decision["matching_policies"] == [f"{policy}@1"]
        assert decision["decision_time_us"] >= 0
    principals = sorted(d["principal"].split("::")[0] for d in denied["items"])
    assert principals == ["Agent", "User", "User"]
    # the workflow's start and its step were decided (allowed) too
    allowed = _ok(client.get("/api/v1/governance/decisions",
                             params={"allowed": "true", "page_size": 100}))
    assert {d["action"] for d in allowed["items"]} >= {"execute_workflow"}


def test_a_forbidden_model_stops_the_interaction_before_the_model_is_asked(
        client, model_server):
    model, script = _model(client, model_server, [{"content": "never sent"}])
    agent = _agent(client, model)
    policy = _name("no-model")
    _ok(client.post("/api/v1/governance/policies", json={"name": policy, "cedar": (
        f'forbid(principal, action == Action::"call_model", resource == Model::"{model["name"]}");')}))
    body = assert_envelope(client.post(f"/api/v1/agents/{agent['id']}/interact",
                                       json={"message": "hello"}), 403, "PERMISSION_DENIED")
    assert body["details"]["reason"] == "GOVERNANCE_DENIED"
    assert body["details"]["governance"]["matching_policies"] == [f"{policy}@1"]
    assert model_server.requests_for(script) == []
    decision = _ok(client.get(f"/api/v1/governance/decisions/"
                              f"{body['details']['governance']['decision_id']}"))
    assert decision["action"] == "call_model"
    assert decision["context"]["arguments"]["model"] == model["name"]
    assert decision["context"]["arguments"]["estimated_tokens"] > 0
    calls = _ok(client.get("/api/v1/calls", params={"agent_id": agent["id"]}))
    assert calls["items"][0]["status"] == "CALL_STATUS_FAILED"


def test_a_token_budget_lets_the_first_interaction_through_and_refuses_the_next(
        client, model_server):
    model, script = _model(client, model_server, [{"content": "one"}, {"content": "two"}])
    agent = _agent(client, model)
    budget = _ok(client.put("/api/v1/governance/budgets/tenant", json={"tokens_per_day": 5}))
    assert budget["tokens_per_day"] == 5 and budget["tokens_remaining"] == "5"
    first = _ok(client.post(f"/api/v1/agents/{agent['id']}/interact", json={"message": "hi"}))
    assert first["status"] == "CALL_STATUS_COMPLETED" and first["tokens"] > 0
    second = client.post(f"/api/v1/agents/{agent['id']}/interact", json={"message": "again"})
    body = assert_envelope(second, 429, "RESOURCE_EXHAUSTED")
    assert body["details"]["reason"] == "BUDGET_EXCEEDED"
    assert 0 < int(second.headers["retry-after"]) <= 86400
    assert len(model_server.requests_for(script)) == 1
    listed = _ok(client.get("/api/v1/governance/budgets"))
    tenant = listed["items"][0]
    assert tenant["name"] == "tenant" and int(tenant["tokens_today"]) == first["tokens"]
    assert tenant["tokens_remaining"] == "0"


def _audit(client, expected: int, timeout=30, **params) -> list[dict]:
    """The tenant's audit trail once it holds `expected` events (forwarding takes a second)."""
    deadline = time.monotonic() + timeout
    while True:
        body = _ok(client.get("/api/v1/observability/audit", params={"page_size": 100, **params}))
        if body["total"] >= expected or time.monotonic() > deadline:
            items = body["items"]
            while len(items) < body["total"]:
                more = _ok(client.get("/api/v1/observability/audit", params={
                    "page_size": 100, "page": len(items) // 100 + 1, **params}))
                items += more["items"]
            return items
        time.sleep(0.5)


def test_a_scripted_session_is_audited_once_per_change_with_its_actor(egress_mesh):
    from tests.conftest import USER_PASSWORD

    owner = register(egress_mesh)
    me = owner.user_id
    expected: list[tuple[str, str, str]] = []  # (action, resource id, actor)
    with egress_mesh.client(owner.token) as client:
        def crud(path, kind, body, change, key="id"):
            made = _ok(client.post(path, json=body))
            _ok(client.put(f"{path}/{made[key]}", json=change))
            assert client.delete(f"{path}/{made[key]}").status_code == 200
            expected.extend((f"{kind}.{verb}", made["id"], me)
                            for verb in ("create", "update", "delete"))

        crud("/api/v1/agents", "agent", {"name": _name("agent")}, {"description": "changed"})
        crud("/api/v1/tools", "tool", {
            "name": _name("tool"), "type": "TOOL_TYPE_BUILTIN",
            "builtin": {"builtin_name": "echo"}}, {"description": "changed"})
        crud("/api/v1/workflows", "workflow", {"name": _name("wf"), "steps": [
            {"id": "t", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "inputs"}}]},
            {"description": "changed"})
        crud("/api/v1/governance/policies", "policy", {
            "name": _name("pol"), "cedar": "permit(principal, action, resource);"},
            {"description": "changed"})
        skill = _ok(client.post("/api/v1/master-data/skills", json={
            "name": _name("skill"), "category": "language", "description": "x"}))
        _ok(client.put(f"/api/v1/master-data/skills/{skill['id']}", json={"description": "y"}))
        assert client.delete(f"/api/v1/master-data/skills/{skill['id']}").status_code == 200
        template = _ok(client.post("/api/v1/templates", json={
            "name": _name("tpl"), "kind": "TEMPLATE_KIND_AGENT",
            "content": {"name": "{{ n }}"}, "parameters": [{"name": "n"}]}))
        _ok(client.put(f"/api/v1/templates/{template['id']}", json={"description": "y"}))
        assert client.delete(f"/api/v1/templates/{template['id']}").status_code == 200
        hook = _ok(client.post("/api/v1/integration/webhook", json={
            "name": _name("hook"), "url": "http://127.0.0.1:9/hook", "events": ["call.failed"]}))
        assert client.delete(f"/api/v1/integration/webhooks/{hook['id']}").status_code == 200
        expected += [("webhook.create", hook["id"], me),
                     ("webhook.delete", hook["id"], me)]
        alert = _ok(client.post("/api/v1/observability/alerts", json={
            "name": _name("alert"), "severity": "SEVERITY_WARNING",
            "condition": {"metric": "call_errors", "operator":
                          "COMPARISON_OPERATOR_GREATER_THAN_OR_EQUAL", "threshold": 5,
                          "window": "60s"}}))
        expected.append(("alert.create", alert["id"], me))
        # identity: a user, its login, a role change, an API key
        email = f"dev-{uuid.uuid4().hex[:6]}@example.com"
        user = _ok(client.post("/api/v1/auth/users", json={
            "email": email, "password": USER_PASSWORD, "role": "ROLE_DEVELOPER"}))
        _ok(client.post("/api/v1/auth/login", json={"email": email, "password": USER_PASSWORD}))
        _ok(client.put(f"/api/v1/auth/users/{user['id']}", json={"role": "ROLE_VIEWER"}))
        key = _ok(client.post("/api/v1/auth/api-keys", json={"name": _name("key"),
                                                            "scopes": ["agents:read"]}))
        expected += [("user.create", user["id"], me), ("user.login", user["id"], user["id"]),
                     ("user.update", user["id"], me), ("api_key.create", key["id"], me)]

        # + the registration's tenant and user, the skill's and the template's three each
        events = _audit(client, len(expected) + 2 + 6)
        skill_events = [e for e in events if e["resource_id"] == skill["id"]]
        template_events = [e for e in events if e["resource_id"] == template["id"]]

    seen = [(e["action"], e["resource_id"], e["actor"]) for e in events]
    for item in expected:
        assert seen.count(item) == 1, (item, seen)
    assert len(skill_events) == 3 and {e["actor"] for e in skill_events} == {me}
    assert len(template_events) == 3 and {e["actor"] for e in template_events} == {me}
    assert ("tenant.create", owner.tenant_id, me) in seen
    # nothing else: the registration, the changes above, the skill's and the template's
    assert len(events) == len(expected) + 2 + 6, seen
    by_key = {(e["action"], e["resource_id"]): e for e in events}
    role = by_key[("user.update", user["id"])]
    assert role["before"] == {"role": "ROLE_DEVELOPER"} and role["after"] == {"role": "ROLE_VIEWER"}
    made = by_key[("api_key.create", key["id"])]
    assert key["key"] not in str(made) and made["after"]["key_hash"] == "***"
    assert made["correlation_id"]
    user_made = by_key[("user.create", user["id"])]
    assert user_made["after"]["password_hash"] == "***"
    tool_update = next(e for e in events if e["action"] == "tool.update")
    assert tool_update["after"] == {"description": "changed", "version": 2} or \
        tool_update["after"]["description"] == "changed"
    # filters
    with egress_mesh.client(owner.token) as client:
        only = _ok(client.get("/api/v1/observability/audit", params={"action": "tool.*"}))
        assert only["total"] == 3
        mine = _ok(client.get("/api/v1/observability/audit", params={"actor": user["id"]}))
        assert [e["action"] for e in mine["items"]] == ["user.login"]
        export = client.get("/api/v1/observability/audit/export", params={"action": "agent.*"})
        assert export.status_code == 200, export.text
        assert export.headers["content-type"].startswith("text/plain")
        lines = [line for line in export.text.splitlines() if line]
        assert [__import__("json").loads(line)["action"] for line in lines] == \
            ["agent.create", "agent.update", "agent.delete"]
    # the operator reads every tenant's trail; a tenant admin may not
    from tests.conftest import register_operator

    operator = register_operator(egress_mesh)
    with egress_mesh.client(operator.token) as ops:
        across = _ok(ops.get("/api/v1/platform/audit", params={"tenant_id": owner.tenant_id,
                                                               "page_size": 100}))
        assert across["total"] == len(events)
        assert {e["tenant_id"] for e in across["items"]} == {owner.tenant_id}
    with egress_mesh.client(owner.token) as client:
        assert_envelope(client.get("/api/v1/platform/audit"), 403, "PERMISSION_DENIED")


def _eventually(fetch, ready, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def _streamed(client, agent_id: str) -> dict:
    """The result of an interaction streamed over SSE (its `ended` event)."""
    with client.stream("POST", f"/api/v1/agents/{agent_id}/interact/stream",
                       json={"message": "go"}) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: ")]
    assert events[-1]["type"] == "ended", events
    return events[-1]["result"]


@pytest.mark.parametrize("streamed", [False, True], ids=["waited", "streamed"])
def test_the_trace_of_an_interaction_is_found_from_its_call_id(client, model_server, streamed):
    tool = _ok(client.post("/api/v1/tools", json={
        "name": _name("echo"), "type": "TOOL_TYPE_BUILTIN", "status": "TOOL_STATUS_ACTIVE",
        "builtin": {"builtin_name": "echo"}}))
    model, _ = _model(client, model_server, [
        {"tool_call": {"name": tool["name"], "arguments": {"say": "hi"}}},
        {"content": "done: {tool_result}"}])
    agent = _agent(client, model, tools=[tool["name"]])
    answer = (_streamed(client, agent["id"]) if streamed else
              _ok(client.post(f"/api/v1/agents/{agent['id']}/interact", json={"message": "go"})))
    assert answer["status"] == "CALL_STATUS_COMPLETED", answer
    wanted = {"gateway", "agents", "governance", "tools"}

    def found():
        listed = _ok(client.get("/api/v1/observability/traces",
                                params={"call_id": answer["call_id"]}))
        if listed["total"] != 1:
            return None
        return _ok(client.get(f"/api/v1/observability/traces/{listed['items'][0]['trace_id']}"))

    trace = _eventually(found, lambda t: t is not None and wanted <= set(t["services"])
                        and sum(s["kind"] == "SPAN_KIND_CLIENT" and s["name"].startswith("chat ")
                                for s in t["spans"]) == 2)
    assert trace is not None and wanted <= set(trace["services"]), trace
    models = [s for s in trace["spans"] if s["name"].startswith("chat ")]
    assert len(models) == 2
    for span in models:
        assert span["attributes"]["gen_ai.usage.input_tokens"] > 0
        assert span["attributes"]["gen_ai.usage.output_tokens"] > 0
        assert span["attributes"]["gen_ai.request.model"]
    names = {s["name"] for s in trace["spans"]}
    assert "agentmesh.governance.v1.GovernanceService/Decide" in names
    assert "agentmesh.tools.v1.ToolService/ExecuteTool" in names


@pytest.fixture(scope="module")
def sparse_mesh(tmp_path_factory):
    """A mesh that samples no reads (AGENTMESH_TRACE_SAMPLE_PERCENT=0)."""
    from tests.conftest import start_mesh, stop_mesh

    running = start_mesh(tmp_path_factory.mktemp("sparse-mesh"),
                         extra_env={"AGENTMESH_TRACE_SAMPLE_PERCENT": "0"})
    yield running
    stop_mesh(running)


def test_actions_are_always_traced_reads_at_the_ratio_and_a_sampled_traceparent_is_honoured(
        sparse_mesh):
    owner = register(sparse_mesh)
    with sparse_mesh.client(owner.token) as client:
        made = client.post("/api/v1/workflows", json={"name": _name("wf"), "steps": [
            {"id": "a", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "inputs"}},
            {"id": "b", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["a"],
             "transform": {"expression": "steps.a.output"}}]})
        workflow = _ok(made)
        _ok(client.post(f"/api/v1/workflows/{workflow['id']}/activate", json={}))
        execution = _ok(client.post(f"/api/v1/workflows/{workflow['id']}/execute",
                                    json={"inputs": {"x": 1}}))
        assert _wait(client, execution["id"])["status"] == "EXECUTION_STATUS_COMPLETED"
        read = client.get(f"/api/v1/workflows/{workflow['id']}")
        assert read.status_code == 200
        trace_id = uuid.uuid4().hex
        asked = client.get(f"/api/v1/workflows/{workflow['id']}",
                           headers={"traceparent": f"00-{trace_id}-{'1' * 16}-01"})
        assert asked.headers.get("x-trace-id") == trace_id

        def found():
            listed = _ok(client.get("/api/v1/observability/traces",
                                    params={"execution_id": execution["id"]}))
            if listed["total"] != 1:
                return None
            return _ok(client.get(
                f"/api/v1/observability/traces/{listed['items'][0]['trace_id']}"))

        trace = _eventually(found, lambda t: t is not None and sum(
            s["name"].startswith("step ") for s in t["spans"]) == 2
            and "gateway" in t["services"])
        assert trace is not None, "no trace found from the execution id"
        steps = sorted(s["name"] for s in trace["spans"] if s["name"].startswith("step "))
        assert steps == ["step a", "step b"]
        assert {"gateway", "workflows"} <= set(trace["services"])
        assert _eventually(lambda: client.get(f"/api/v1/observability/traces/{trace_id}"),
                           lambda r: r.status_code == 200).status_code == 200
        created = client.get(f"/api/v1/observability/traces/{made.headers['x-trace-id']}")
        assert created.status_code == 200  # a create acts: traced at 0 %
        # the read was not sampled (0 %): its spans never arrive
        assert client.get(f"/api/v1/observability/traces/{read.headers['x-trace-id']}"
                          ).status_code == 404
