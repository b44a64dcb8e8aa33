"""Talking to an agent through the real gateway: a model on the scripted OpenAI-compatible test
server, http, builtin and mcp tools on local servers, the calls routes and the constraints.

The model, its key, the prompt and the constraints are master data; these tests create them
through the masterdata REST API and are skipped while that service is not built (it answers
501). tests/agents/test_interact.py runs the same loop in-process against a stand-in."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from tests.conftest import assert_envelope, register


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def owner(egress_mesh):
    return register(egress_mesh)


@pytest.fixture
def client(egress_mesh, owner):
    with egress_mesh.client(owner.token) as client:
        yield client


def _ok(reply):
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.fixture
def masterdata(client):
    probe = client.get("/api/v1/master-data/models")
    if probe.status_code == 501:
        pytest.skip("the masterdata service is not built yet (models, secrets, prompts)")
    return client


def _model(client, model_server, steps, **extra):
    script = model_server.script(_name("script"), steps)
    secret = _name("key")
    _ok(client.post("/api/v1/master-data/secrets", json={
        "name": secret, "value": "sk-e2e-secret", "secret_type": "SECRET_TYPE_API_KEY"}))
    return _ok(client.post("/api/v1/master-data/models", json={
        "name": _name("model"), "provider": "openai_compatible", "model_id": script,
        "endpoint_url": model_server.base_url, "secret_ref": secret,
        "pricing": {"input_per_1m_tokens": 500, "output_per_1m_tokens": 1500}, **extra})), script


def _agent(client, model, tools=(), constraints=(), **extra):
    agent = _ok(client.post("/api/v1/agents", json={
        "name": _name("agent"), "model": model["name"], "tools": list(tools),
        "constraints": list(constraints), "system_prompt": "Use the tools.", **extra}))
    return _ok(client.post(f"/api/v1/agents/{agent['id']}/activate", json={}))


def test_draft_agent_does_not_interact_409(client):
    agent = _ok(client.post("/api/v1/agents", json={"name": _name("draft")}))
    body = assert_envelope(client.post(f"/api/v1/agents/{agent['id']}/interact",
                                       json={"message": "hi"}), 409, "ABORTED")
    assert body["details"]["reason"] == "AGENT_NOT_RUNNABLE"


def test_interact_with_three_tools_and_the_calls_routes(masterdata, web, mcp_server,
                                                        model_server):
    client = masterdata
    builtin = _ok(client.post("/api/v1/tools", json={
        "name": _name("calc"), "type": "TOOL_TYPE_BUILTIN", "status": "TOOL_STATUS_ACTIVE",
        "builtin": {"builtin_name": "math"}}))
    http = _ok(client.post("/api/v1/tools", json={
        "name": _name("orders"), "type": "TOOL_TYPE_HTTP", "status": "TOOL_STATUS_ACTIVE",
        "http": {"url": web.url + "/orders/{id}", "method": "GET"},
        "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}}}))
    mcp = _ok(client.post("/api/v1/tools", json={
        "name": _name("shout"), "type": "TOOL_TYPE_MCP", "status": "TOOL_STATUS_ACTIVE",
        "mcp": {"server_url": mcp_server.url, "tool_name": "shout"}}))
    model, _ = _model(client, model_server, [
        {"tool_call": {"name": builtin["name"], "arguments": {"expression": "40 + 2"}}},
        {"tool_call": {"name": http["name"], "arguments": {"id": "A-7"}}},
        {"tool_call": {"name": mcp["name"], "arguments": {"text": "done"}}},
        {"content": "All three tools answered; last: {tool_result}"}])
    agent = _agent(client, model, tools=[builtin["name"], http["name"], mcp["name"]])

    answer = _ok(client.post(f"/api/v1/agents/{agent['name']}/interact",
                             json={"message": "check order A-7"}))
    assert answer["status"] == "CALL_STATUS_COMPLETED", answer
    assert answer["reply"] == 'All three tools answered; last: {"result": "DONE"}'
    assert [c["status"] for c in answer["tool_calls"]] == ["COMPLETED"] * 3
    call_id = answer["call_id"]

    call = _ok(client.get(f"/api/v1/calls/{call_id}"))
    assert call["status"] == "CALL_STATUS_COMPLETED" and call["tool_calls"] == 3
    assert call["prompt_tokens"] > 0 and call["completion_tokens"] > 0 and call["cost_usd"] > 0
    assert call["model"] == model["name"] and call["provider"] == "openai_compatible"
    transcript = _ok(client.get(f"/api/v1/calls/{call_id}/transcript"))
    assert [e["role"] for e in transcript["entries"]] == \
        ["user"] + ["agent", "tool"] * 3 + ["agent"]
    metrics = _ok(client.get(f"/api/v1/calls/{call_id}/metrics"))
    assert metrics["tool_calls"] == 3 and metrics["cost_usd"] == call["cost_usd"]
    listed = _ok(client.get("/api/v1/calls", params={"agent_id": agent["id"]}))
    assert [c["id"] for c in listed["items"]] == [call_id]
    assert _ok(client.get("/api/v1/calls/active"))["total"] == 0
    for tool in (builtin, http, mcp):
        stats = _ok(client.get(f"/api/v1/tools/{tool['id']}/stats"))
        assert stats["total_executions"] == 1 and stats["successful_executions"] == 1


@pytest.mark.parametrize("case", ["max_steps", "denied_tool", "model_timeout"])
def test_constraint_breaches_end_the_call_with_their_reason(masterdata, model_server, case):
    client = masterdata
    tool = _ok(client.post("/api/v1/tools", json={
        "name": _name("echo"), "type": "TOOL_TYPE_BUILTIN", "status": "TOOL_STATUS_ACTIVE",
        "builtin": {"builtin_name": "echo"}}))
    call_tool = [{"tool_call": {"name": tool["name"], "arguments": {}}}]
    steps, kind, rules, reason = {
        "max_steps": (call_tool, "MAX_STEPS", {"max_steps": 2}, "MAX_STEPS_REACHED"),
        "denied_tool": (call_tool, "DENIED_TOOLS", {"tools": [tool["name"]]}, "TOOL_DENIED"),
        "model_timeout": ([{"sleep": 3, "content": "late"}], "TIMEOUT_SECONDS",
                          {"timeout_seconds": 1}, "TIMEOUT"),
    }[case]
    constraint = _ok(client.post("/api/v1/master-data/constraints", json={
        "name": _name("limit"), "constraint_type": f"CONSTRAINT_TYPE_{kind}", "rules": rules}))
    model, _ = _model(client, model_server, steps)
    agent = _agent(client, model, tools=[tool["name"]], constraints=[constraint["name"]])
    answer = _ok(client.post(f"/api/v1/agents/{agent['id']}/interact", json={"message": "go"}))
    assert answer["status"] == "CALL_STATUS_FAILED" and answer["reason"] == reason
    call = _ok(client.get(f"/api/v1/calls/{answer['call_id']}"))
    assert call["status"] == "CALL_STATUS_FAILED" and call["reason"] == reason and call["error"]


def test_system_prompt_from_master_data_at_label_production(masterdata, model_server):
    client = masterdata
    prompt = _ok(client.post("/api/v1/master-data/prompts", json={
        "name": _name("prompt"), "content": "Draft: help {{ customer }}.",
        "variables": [{"name": "customer", "required": True}]}))
    _ok(client.post(f"/api/v1/master-data/prompts/{prompt['id']}/versions", json={
        "content": "You help {{ customer }} politely.", "changelog": "v2"}))
    _ok(client.put(f"/api/v1/master-data/prompts/{prompt['id']}/labels/production",
                   json={"version": 1}))
    model, script = _model(client, model_server, [{"content": "hello"}])
    agent = _agent(client, model, prompt_id=prompt["name"], system_prompt="")
    answer = _ok(client.post(f"/api/v1/agents/{agent['id']}/interact", json={
        "message": "hi", "context": {"customer": "ACME"}}))
    assert answer["status"] == "CALL_STATUS_COMPLETED", answer
    system = model_server.requests_for(script)[-1]["body"]["messages"][0]
    assert system == {"role": "system", "content": "Draft: help ACME."}  # version 1: production
    body = assert_envelope(client.post(f"/api/v1/agents/{agent['id']}/interact",
                                       json={"message": "no context"}), 400, "INVALID_ARGUMENT")
    assert body["details"]["reason"] == "PROMPT_VARIABLES_MISSING"


def test_a_policy_that_denies_a_tool_ends_the_call_with_the_decision(masterdata, model_server):
    """Governance decides every tool call of an agent: a Cedar policy forbidding this agent
    this tool ends the call before the tool runs, with the decision recorded."""
    client = masterdata
    tool = _ok(client.post("/api/v1/tools", json={
        "name": _name("echo"), "type": "TOOL_TYPE_BUILTIN", "status": "TOOL_STATUS_ACTIVE",
        "builtin": {"builtin_name": "echo"}}))
    model, _ = _model(client, model_server,
                      [{"tool_call": {"name": tool["name"], "arguments": {}}}])
    agent = _agent(client, model, tools=[tool["name"]])
    _ok(client.post("/api/v1/governance/policies", json={
        "name": _name("allow"), "cedar": "permit(principal, action, resource);"}))
    _ok(client.post("/api/v1/governance/policies", json={
        "name": _name("no-echo"),
        "cedar": f'forbid(principal == Agent::"{agent["name"]}", action == Action::"call_tool", '
                 f'resource == Tool::"{tool["name"]}");'}))
    answer = _ok(client.post(f"/api/v1/agents/{agent['id']}/interact", json={"message": "go"}))
    assert answer["status"] == "CALL_STATUS_FAILED" and answer["reason"] == "TOOL_DENIED_BY_POLICY"
    stats = _ok(client.get(f"/api/v1/tools/{tool['id']}/stats"))
    assert stats["total_executions"] == 0  # the tool never ran
    decisions = _ok(client.get("/api/v1/governance/decisions", params={"allowed": "false"}))
    denied = [d for d in decisions["items"] if d["resource"] == f'Tool::"{tool["name"]}"']
    assert denied and denied[0]["principal"] == f'Agent::"{agent["name"]}"'


def test_a_workflow_of_every_kind_of_step_with_a_real_tool_and_agent(masterdata, model_server):
    """transform -> tool -> condition -> parallel -> approval -> agent, through the gateway: the
    tool step runs in the tools service, the agent step in the agents service (which asks the
    model); progress arrives over SSE while it runs; approved, it completes with the outputs of
    those steps, and the call and the tool execution are recorded where a user looks for them."""
    client = masterdata
    calc = _ok(client.post("/api/v1/tools", json={
        "name": _name("calc"), "type": "TOOL_TYPE_BUILTIN", "status": "TOOL_STATUS_ACTIVE",
        "builtin": {"builtin_name": "math"}}))
    model, _ = _model(client, model_server, [{"content": "You said: {user}"}])
    agent = _agent(client, model)
    workflow = _ok(client.post("/api/v1/workflows", json={
        "name": _name("flow"),
        "steps": [
            {"id": "prep", "type": "STEP_TYPE_TRANSFORM",
             "transform": {"expression": "{expression: inputs.expression}"}},
            {"id": "calc", "type": "STEP_TYPE_TOOL", "depends_on": ["prep"],
             "inputs": {"expression": "steps.prep.output.expression"},
             "tool": {"tool_id": calc["id"]}},
            {"id": "check", "type": "STEP_TYPE_CONDITION", "depends_on": ["calc"],
             "condition": {"expression": "steps.calc.output.result > 40",
                           "then_step_ids": ["fan"], "else_step_ids": ["give_up"]}},
            {"id": "give_up", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "'no'"}},
            {"id": "fan", "type": "STEP_TYPE_PARALLEL", "parallel": {"branches": [
                {"name": "a", "step_ids": ["a1"]}, {"name": "b", "step_ids": ["b1"]}]}},
            {"id": "a1", "type": "STEP_TYPE_TRANSFORM",
             "transform": {"expression": "{value: steps.calc.output.result}"}},
            {"id": "b1", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "'branch b'"}},
            {"id": "approve", "type": "STEP_TYPE_APPROVAL", "depends_on": ["fan"],
             "approval": {"message": "ask the agent about {{n}}?"},
             "inputs": {"n": "steps.calc.output.result"}},
            {"id": "ask", "type": "STEP_TYPE_AGENT", "depends_on": ["approve"],
             "inputs": {"n": "steps.calc.output.result"},
             "agent": {"agent_id": agent["id"], "prompt": "The number is {{n}}"}}],
        "outputs": {"n": "steps.calc.output.result", "answer": "steps.ask.output.reply",
                    "call_id": "steps.ask.output.call_id", "fan": "steps.fan.output"}}))
    _ok(client.post(f"/api/v1/workflows/{workflow['id']}/activate", json={}))
    execution = _ok(client.post(f"/api/v1/workflows/{workflow['id']}/execute",
                                json={"inputs": {"expression": "6 * 7"}}))
    events: list[dict] = []

    def watch():
        with client.stream("GET", f"/api/v1/workflows/executions/{execution['id']}/watch",
                           timeout=60) as reply:
            for line in reply.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
    watcher = threading.Thread(target=watch)
    watcher.start()

    def wait(until):
        deadline = time.monotonic() + 60
        while True:
            state = _ok(client.get(f"/api/v1/workflows/executions/{execution['id']}"))
            if until(state):
                return state
            assert time.monotonic() < deadline, state
            time.sleep(0.2)

    waiting = wait(lambda e: e["status"] == "EXECUTION_STATUS_WAITING_APPROVAL")
    assert waiting["current_phase"] == "approve"
    seen_before_approval = len(events)
    _ok(client.post(f"/api/v1/workflows/executions/{execution['id']}/steps/approve/approve",
                    json={"comment": "go"}))
    done = wait(lambda e: e["status"] in ("EXECUTION_STATUS_COMPLETED", "EXECUTION_STATUS_FAILED"))
    watcher.join(30)
    assert done["status"] == "EXECUTION_STATUS_COMPLETED", done
    assert done["outputs"]["n"] == 42 and done["outputs"]["fan"] == {"a": {"value": 42}, "b": "branch b"}
    assert done["outputs"]["answer"] == "You said: The number is 42"
    steps = {s["step_id"]: s["status"] for s in done["step_states"]}
    assert steps["give_up"] == "STEP_STATUS_SKIPPED"
    assert all(v == "STEP_STATUS_COMPLETED" for k, v in steps.items() if k != "give_up"), steps
    assert seen_before_approval >= 2  # progress arrived while it ran, not all at the end
    assert events[-1]["status"] == "EXECUTION_STATUS_COMPLETED"
    call = _ok(client.get(f"/api/v1/calls/{done['outputs']['call_id']}"))
    assert call["agent_id"] == agent["id"] and call["status"] == "CALL_STATUS_COMPLETED"
    stats = _ok(client.get(f"/api/v1/tools/{calc['id']}/stats"))
    assert stats["total_executions"] == 1 and stats["successful_executions"] == 1
