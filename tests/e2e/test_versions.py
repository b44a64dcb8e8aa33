"""Versions everywhere, through the real gateway: an agent edited three times keeps three
immutable versions; `production` moved to version 2 makes an interaction run version 2's model
and prompt (the call records it); moving it back runs version 1. No route changes or deletes a
version's content.

The models are on the scripted OpenAI-compatible server, so these tests use the mesh whose
egress allow-list names 127.0.0.1 (`egress_mesh`, tests/e2e/conftest.py)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.conftest import assert_envelope, register


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ok(reply):
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.fixture
def client(egress_mesh):
    with egress_mesh.client(register(egress_mesh).token) as client:
        yield client


def _model(client, model_server, reply):
    script = model_server.script(_name("script"), [{"content": reply}] * 10)
    secret = _name("key")
    _ok(client.post("/api/v1/master-data/secrets", json={
        "name": secret, "value": "sk-e2e-secret", "secret_type": "SECRET_TYPE_API_KEY"}))
    return _ok(client.post("/api/v1/master-data/models", json={
        "name": _name("model"), "provider": "openai_compatible", "model_id": script,
        "endpoint_url": model_server.base_url, "secret_ref": secret}))


def test_an_agent_runs_the_version_its_production_label_names(client, model_server):
    models = [_model(client, model_server, f"answer of model {n}") for n in (1, 2, 3)]
    agent = _ok(client.post("/api/v1/agents", json={
        "name": _name("agent"), "model": models[0]["name"], "system_prompt": "prompt 1"}))
    url = f"/api/v1/agents/{agent['id']}"
    _ok(client.post(f"{url}/activate", json={}))
    for n in (2, 3):
        edited = _ok(client.put(url, json={"model": models[n - 1]["name"],
                                           "system_prompt": f"prompt {n}"}))
        assert edited["version"] == n
    # A third edit of another field: version 4, the same model and prompt as version 3.
    assert _ok(client.put(url, json={"description": "edited"}))["version"] == 4

    listed = _ok(client.get(f"{url}/versions"))
    assert listed["total"] == 4
    assert [(v["version"], v["agent"]["system_prompt"], v.get("labels", []))
            for v in listed["items"]] == [(4, "prompt 3", ["latest"]), (3, "prompt 3", []),
                                          (2, "prompt 2", []), (1, "prompt 1", [])]
    assert all(v["created_by"] and v["created_at"] for v in listed["items"])
    two = _ok(client.get(f"{url}/versions/2"))
    assert two["agent"]["model"] == models[1]["name"] and two["version"] == 2
    diff = _ok(client.get(f"{url}/versions/2/diff", params={"against": 1}))
    assert (diff["from_version"], diff["to_version"]) == (1, 2)
    assert {c["field"]: (c["before"], c["after"]) for c in diff["changes"]} == {
        "model": (models[0]["name"], models[1]["name"]), "system_prompt": ("prompt 1", "prompt 2")}

    def interact():
        answer = _ok(client.post(f"{url}/interact", json={"message": "hi"}))
        call = _ok(client.get(f"/api/v1/calls/{answer['call_id']}"))
        sent = model_server.requests_for(
            next(m["model_id"] for m in models if m["name"] == call["model"]))[-1]["body"]
        return (call["agent_version"], call["agent_label"], call["model"], answer["reply"],
                sent["messages"][0]["content"])

    # No production label yet: the latest version runs.
    assert interact() == (4, "latest", models[2]["name"], "answer of model 3", "prompt 3")
    labelled = _ok(client.put(f"{url}/labels/production", json={"version": 2}))
    assert labelled["version_labels"] == {"production": 2} and labelled["version"] == 4
    assert interact() == (2, "production", models[1]["name"], "answer of model 2", "prompt 2")
    # Rollback: the label moves back.
    _ok(client.put(f"{url}/labels/production", json={"version": 1}))
    assert interact() == (1, "production", models[0]["name"], "answer of model 1", "prompt 1")
    # An interaction may name a version or a label; a read may too.
    pinned = _ok(client.post(f"{url}/interact", json={"message": "hi", "version": 3}))
    assert _ok(client.get(f"/api/v1/calls/{pinned['call_id']}"))["agent_version"] == 3
    assert _ok(client.get(url, params={"label": "production"}))["system_prompt"] == "prompt 1"
    assert _ok(client.get(url, params={"label": "latest"}))["system_prompt"] == "prompt 3"

    # `latest` cannot be set; an unknown label or version is 404.
    assert_envelope(client.put(f"{url}/labels/latest", json={"version": 1}), 400,
                    "INVALID_ARGUMENT")
    body = assert_envelope(client.post(f"{url}/interact", json={"message": "hi",
                                                                "label": "staging"}),
                           404, "NOT_FOUND")
    assert body["details"]["reason"] == "AGENT_LABEL_NOT_FOUND"
    assert_envelope(client.get(f"{url}/versions/9"), 404, "NOT_FOUND")

    # Versions are immutable: no route changes or deletes one.
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        reply = client.request(method, f"{url}/versions/2", json={} if method != "DELETE"
                               else None)
        assert reply.status_code in (404, 405), (method, reply.status_code)
    assert _ok(client.get(f"{url}/versions/2"))["agent"]["system_prompt"] == "prompt 2"


def _wait(client, execution_id):
    deadline = time.monotonic() + 60
    while True:
        state = _ok(client.get(f"/api/v1/workflows/executions/{execution_id}"))
        if state["status"] in ("EXECUTION_STATUS_COMPLETED", "EXECUTION_STATUS_FAILED"):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.2)


def test_a_workflow_runs_the_version_its_production_label_names(client, model_server):
    """Three versions of a workflow; the second asks an agent, at its `production` label."""
    models = [_model(client, model_server, f"agent answer {n}") for n in (1, 2)]
    agent = _ok(client.post("/api/v1/agents", json={
        "name": _name("agent"), "model": models[0]["name"], "system_prompt": "agent v1"}))
    _ok(client.post(f"/api/v1/agents/{agent['id']}/activate", json={}))
    _ok(client.put(f"/api/v1/agents/{agent['id']}", json={"model": models[1]["name"]}))
    _ok(client.put(f"/api/v1/agents/{agent['id']}/labels/production", json={"version": 1}))

    def transform(value):
        return {"steps": [{"id": "a", "type": "STEP_TYPE_TRANSFORM",
                           "transform": {"expression": f"'{value}'"}}],
                "outputs": {"value": "steps.a.output"}}

    asking = {"steps": [{"id": "a", "type": "STEP_TYPE_AGENT",
                         "agent": {"agent_id": agent["id"], "prompt": "hi",
                                   "agent_label": "production"}}],
              "outputs": {"value": "steps.a.output.reply",
                          "agent_version": "steps.a.output.agent_version"}}
    workflow = _ok(client.post("/api/v1/workflows", json={"name": _name("flow"),
                                                          **transform("v1")}))
    url = f"/api/v1/workflows/{workflow['id']}"
    _ok(client.post(f"{url}/activate", json={}))
    assert _ok(client.put(url, json=asking))["version"] == 2
    assert _ok(client.put(url, json=transform("v3")))["version"] == 3

    def execute(**body):
        started = _ok(client.post(f"{url}/execute", json=body))
        ended = _wait(client, started["id"])
        assert ended["status"] == "EXECUTION_STATUS_COMPLETED", ended
        return ended["workflow_version"], ended.get("workflow_label", ""), ended["outputs"]

    assert execute() == (3, "latest", {"value": "v3"})
    labelled = _ok(client.put(f"{url}/labels/production", json={"version": 2}))
    assert labelled["version_labels"] == {"production": 2}
    # Version 2 runs, and its agent step runs the agent's production version (1).
    assert execute() == (2, "production", {"value": "agent answer 1", "agent_version": 1})
    _ok(client.put(f"{url}/labels/production", json={"version": 1}))
    assert execute() == (1, "production", {"value": "v1"})
    assert execute(version=3) == (3, "", {"value": "v3"})
    listed = _ok(client.get(f"{url}/versions"))
    assert [(v["version"], v.get("labels", [])) for v in listed["items"]] == [
        (3, ["latest"]), (2, []), (1, ["production"])]
    diff = _ok(client.get(f"{url}/versions/3/diff"))
    assert (diff["from_version"], diff["to_version"]) == (2, 3)
    assert {c["field"] for c in diff["changes"]} == {"steps", "outputs"}
    for method in ("PUT", "DELETE"):
        reply = client.request(method, f"{url}/versions/1",
                               json={} if method == "PUT" else None)
        assert reply.status_code in (404, 405), (method, reply.status_code)


def test_a_bundle_with_every_kind_round_trips_with_versions_and_labels(egress_mesh, web):
    """Export -> import into an empty tenant -> export gives the same bundle, field by field:
    agents, workflows (with a schedule) and policies with their versions and labels, alert
    rules, budgets and webhooks (the signing secret a placeholder) beside the master data."""
    source, target = register(egress_mesh, "v-src"), register(egress_mesh, "v-dst")
    with egress_mesh.client(source.token) as client:
        _ok(client.post("/api/v1/master-data/secrets", json={
            "name": "key", "value": "sk-source-123", "secret_type": "SECRET_TYPE_API_KEY"}))
        _ok(client.post("/api/v1/master-data/models", json={
            "name": "fast", "provider": "openai", "model_id": "gpt-4o-mini", "secret_ref": "key"}))
        agent = _ok(client.post("/api/v1/agents", json={
            "name": "helper", "model": "fast", "system_prompt": "one"}))
        for text in ("two", "three"):
            _ok(client.put(f"/api/v1/agents/{agent['id']}", json={"system_prompt": text}))
        _ok(client.put("/api/v1/agents/helper/labels/production", json={"version": 2}))
        flow = _ok(client.post("/api/v1/workflows", json={
            "name": "Flow", "slug": "flow", "steps": [
                {"id": "ask", "type": "STEP_TYPE_AGENT",
                 "agent": {"agent_id": agent["id"], "prompt": "hi", "agent_label": "production"}}]}))
        _ok(client.put(f"/api/v1/workflows/{flow['id']}", json={"description": "second"}))
        _ok(client.put("/api/v1/workflows/flow/labels/production", json={"version": 1}))
        _ok(client.post("/api/v1/workflows/flow/schedules", json={
            "cron": "0 0 3 * * *", "timezone": "Europe/Paris", "inputs": {"who": "cron"}}))
        _ok(client.post("/api/v1/governance/policies", json={
            "name": "guard", "cedar": "permit(principal, action, resource);"}))
        _ok(client.put("/api/v1/governance/policies/guard", json={
            "cedar": "forbid(principal, action, resource);", "description": "locked"}))
        _ok(client.put("/api/v1/governance/policies/guard/labels/production",
                       json={"version": 1}))
        _ok(client.post("/api/v1/observability/alerts", json={
            "name": "Too many errors", "severity": "SEVERITY_CRITICAL",
            "condition": {"metric": "call_errors", "threshold": 5, "window": "60s",
                          "operator": "COMPARISON_OPERATOR_GREATER_THAN_OR_EQUAL"},
            "channels": [f"webhook:{web.url}/alerts"]}))
        _ok(client.put("/api/v1/governance/budgets/tenant", json={"tokens_per_day": 100000}))
        _ok(client.put("/api/v1/governance/budgets/agent:helper", json={"cents_per_day": 50}))
        _ok(client.post("/api/v1/governance/webhooks", json={
            "url": f"{web.url}/decisions", "events": "denied"}))
        _ok(client.post("/api/v1/integration/webhook", json={
            "name": "deploys", "url": f"{web.url}/hook", "events": ["agent.*"],
            "secret": "whsec_" + "a" * 32}))
        bundle = _ok(client.post("/api/v1/integration/export", json={}))

    assert "sk-source-123" not in json.dumps(bundle) and "a" * 32 not in json.dumps(bundle)
    helper = bundle["agents"][0]
    assert [v["system_prompt"] for v in helper["versions"]] == ["one", "two", "three"]
    assert [v["version"] for v in helper["versions"]] == [1, 2, 3]
    assert helper["version_labels"] == {"production": 2} and helper["model"] == "fast"
    workflow = bundle["workflows"][0]
    assert [v["version"] for v in workflow["versions"]] == [1, 2]
    assert workflow["version_labels"] == {"production": 1}
    assert workflow["versions"][0]["steps"][0]["agent"]["agent_id"] == "helper"
    assert workflow["schedules"] == [{"cron": "0 0 3 * * *", "timezone": "Europe/Paris",
                                      "inputs": {"who": "cron"},
                                      "priority": "EXECUTION_PRIORITY_NORMAL"}]
    policy = bundle["policies"][0]
    assert [v["cedar"] for v in policy["versions"]] == [
        "permit(principal, action, resource);", "forbid(principal, action, resource);"]
    assert policy["version_labels"] == {"production": 1} and policy["description"] == "locked"
    assert [a["name"] for a in bundle["alert_rules"]] == ["Too many errors"]
    assert bundle["budgets"] == [{"name": "agent:helper", "cents_per_day": 50},
                                 {"name": "tenant", "tokens_per_day": 100000}]
    assert bundle["decision_webhooks"] == [{"url": f"{web.url}/decisions", "events": "denied"}]
    assert bundle["webhooks"] == [{"name": "deploys", "url": f"{web.url}/hook",
                                   "events": ["agent.*"], "active": True,
                                   "secret": "<fill in>"}]

    with egress_mesh.client(target.token) as client:
        filled = json.loads(json.dumps(bundle))
        filled["secrets"][0]["value"] = "sk-target-456"
        result = _ok(client.post("/api/v1/integration/import", json={"data": filled}))
        assert result["failed"] == 0, result
        again = _ok(client.post("/api/v1/integration/export", json={}))
        assert set(again) == set(bundle)
        for key in bundle:   # section by section, entity by entity, field by field
            assert again[key] == bundle[key], key
        # The imported agent runs what the source's production label named.
        assert _ok(client.get("/api/v1/agents/helper", params={"label": "production"}))[
            "system_prompt"] == "two"
        hook = _ok(client.get("/api/v1/integration/webhooks"))["items"][0]
        assert hook["secret_hint"] and hook["secret_hint"] != "****" + "a" * 4


def test_a_deleted_agents_history_stays_in_the_audit_log(client):
    agent = _ok(client.post("/api/v1/agents", json={"name": _name("gone"),
                                                    "system_prompt": "one"}))
    url = f"/api/v1/agents/{agent['id']}"
    _ok(client.put(url, json={"system_prompt": "two"}))
    _ok(client.put(f"{url}/labels/production", json={"version": 1}))
    _ok(client.delete(url))
    assert_envelope(client.get(f"{url}/versions"), 404, "NOT_FOUND")
    deadline = time.monotonic() + 30
    while True:   # the audit trail reaches observability at least once, shortly after
        events = _ok(client.get("/api/v1/observability/audit", params={
            "resource_id": agent["id"], "page_size": 100}))["items"]
        if {e["action"] for e in events} >= {"agent.create", "agent.update", "agent.label",
                                             "agent.delete"}:
            break
        assert time.monotonic() < deadline, events
        time.sleep(0.3)
    by_action = {e["action"]: e for e in events}
    update = by_action["agent.update"]
    assert (update["before"]["system_prompt"], update["after"]["system_prompt"]) == (
        "one", "two")
    assert by_action["agent.label"]["details"] == {"label": "production", "version": 1,
                                                   "previous": None}
    assert by_action["agent.delete"]["before"]["system_prompt"] == "two"
