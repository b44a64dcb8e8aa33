"""Analytics and alerts through the real gateway: the figures equal the traffic this test makes
(calls to a scripted model server that answers or fails, workflow executions), and an alert rule
fires, notifies a local receiver with a signed webhook, and resolves."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mesh.runtime.webhooks import EVENT_HEADER, SIGNATURE_HEADER, verify
from tests.conftest import assert_envelope, register
from tests.e2e.test_workflows import _create, _wait
from tests.fakes.http_server import LocalHTTPServer


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ok(reply):
    assert reply.status_code == 200, reply.text
    return reply.json()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def client(egress_mesh):
    owner = register(egress_mesh)
    with egress_mesh.client(owner.token) as client:
        yield client


def _agent(client, model_server, steps):
    script = model_server.script(_name("script"), steps)
    secret = _name("key")
    _ok(client.post("/api/v1/master-data/secrets", json={
        "name": secret, "value": "sk-e2e", "secret_type": "SECRET_TYPE_API_KEY"}))
    model = _ok(client.post("/api/v1/master-data/models", json={
        "name": _name("model"), "provider": "openai_compatible", "model_id": script,
        "endpoint_url": model_server.base_url, "secret_ref": secret,
        "pricing": {"input_per_1m_tokens": 500, "output_per_1m_tokens": 1500}}))
    agent = _ok(client.post("/api/v1/agents", json={"name": _name("agent"), "model": model["name"]}))
    return _ok(client.post(f"/api/v1/agents/{agent['id']}/activate", json={})), model


def _interact(client, agent, times):
    return [_ok(client.post(f"/api/v1/agents/{agent['id']}/interact", json={"message": "hi"}))
            for _ in range(times)]


def test_analytics_figures_equal_the_traffic_made(client, model_server):
    since = datetime.now(UTC) - timedelta(seconds=2)
    good, _ = _agent(client, model_server, [{"content": "fine"}])
    bad, _ = _agent(client, model_server, [{"status": 400, "message": "bad request"}])
    answers = _interact(client, good, 3) + _interact(client, bad, 2)
    assert [a["status"] for a in answers] == ["CALL_STATUS_COMPLETED"] * 3 + ["CALL_STATUS_FAILED"] * 2
    calls = [_ok(client.get(f"/api/v1/calls/{a['call_id']}")) for a in answers]
    flow = _create(client, [{"id": "t", "type": "STEP_TYPE_TRANSFORM",
                             "transform": {"expression": "`1`"}}])
    for _ in range(2):
        run = _ok(client.post(f"/api/v1/workflows/{flow['slug']}/execute", json={"inputs": {}}))
        assert _wait(client, run["id"])["status"] == "EXECUTION_STATUS_COMPLETED"
    until = datetime.now(UTC) + timedelta(seconds=2)
    span = {"start_time": _iso(since), "end_time": _iso(until)}

    summary = _ok(client.get("/api/v1/analytics/summary", params=span))
    assert (summary["total_calls"], summary["completed_calls"], summary["failed_calls"]) == (5, 3, 2)
    assert summary["success_rate"] == pytest.approx(0.6)
    assert summary["active_agents"] == 2 and summary.get("active_calls", 0) == 0
    assert int(summary["total_tokens"]) == sum(
        int(c.get("prompt_tokens", 0)) + int(c.get("completion_tokens", 0)) for c in calls)
    assert summary["total_cost_usd"] == pytest.approx(sum(c.get("cost_usd", 0) for c in calls))
    assert summary["workflow_executions"] == 2
    assert summary.get("failed_workflow_executions", 0) == 0
    only_bad = _ok(client.get("/api/v1/analytics/summary", params={**span, "agent_id": bad["name"]}))
    assert (only_bad["total_calls"], only_bad["failed_calls"]) == (2, 2)

    volume = _ok(client.get("/api/v1/analytics/call-volume", params={**span, "interval": "3600s"}))
    assert volume["total"] == 5 and len(volume["points"]) == 1
    assert (volume["points"][0]["completed"], volume["points"][0]["failed"]) == (3, 2)

    errors = _ok(client.get("/api/v1/analytics/errors", params=span))
    assert errors["total_errors"] == 2
    assert [(g["error_type"], g["count"]) for g in errors["by_type"]] == [("MODEL_ERROR", 2)]
    assert "400" in errors["by_type"][0]["sample_message"]
    assert errors["error_rate"] == pytest.approx(2 / 7)  # 5 calls and 2 executions ended
    assert sum(p.get("count", 0) for p in errors["points"]) == 2

    latency = _ok(client.get("/api/v1/analytics/provider-latency", params=span))
    [provider] = latency["providers"]
    assert (provider["requests"], provider["errors"]) == (5, 2)
    durations = sorted(c.get("duration_ms", 0) for c in calls)
    assert provider.get("p50_ms", 0) == durations[2]  # nearest rank of 5
    assert provider.get("p95_ms", 0) == durations[4]
    by_model = {m["model"]: m for m in provider["models"]}
    assert by_model[calls[0]["model"]]["requests"] == 3
    assert by_model[calls[4]["model"]]["errors"] == 2 and calls[0]["model"] != calls[4]["model"]

    stats = _ok(client.get("/api/v1/analytics/workflow-stats", params=span))
    [entry] = stats["workflows"]
    assert (entry["workflow_id"], entry["executions"], entry["completed"]) == (flow["id"], 2, 2)
    assert stats["total_executions"] == 2 and entry["success_rate"] == 1

    active = _ok(client.get("/api/v1/analytics/active-calls", params=span))
    assert active.get("total", 0) == 0
    assert max(p.get("peak", 0) for p in active["points"]) == 1  # one call at a time

    assert_envelope(client.get("/api/v1/analytics/summary", params={
        "start_time": _iso(until), "end_time": _iso(since)}), 400, "INVALID_ARGUMENT")


def test_analytics_are_tenant_scoped(egress_mesh, client, model_server):
    good, _ = _agent(client, model_server, [{"content": "fine"}])
    _interact(client, good, 1)
    stranger = register(egress_mesh)
    with egress_mesh.client(stranger.token) as theirs:
        summary = _ok(theirs.get("/api/v1/analytics/summary"))
    assert summary.get("total_calls", 0) == 0


def test_alert_fires_notifies_signed_and_resolves(client, model_server):
    receiver = LocalHTTPServer()
    try:
        bad, _ = _agent(client, model_server, [{"status": 400, "message": "bad request"}])
        alert = _ok(client.post("/api/v1/observability/alerts", json={
            "name": _name("errors"), "severity": "SEVERITY_CRITICAL",
            "condition": {"metric": "call_errors", "labels": {"agent_id": bad["id"]},
                          "operator": "COMPARISON_OPERATOR_GREATER_THAN_OR_EQUAL",
                          "threshold": 2, "window": "4s"},
            "channels": [f"webhook:{receiver.url}/alerts"]}))
        secret = alert["signing_secret"]
        assert secret and alert["status"] == "ALERT_STATUS_OK"
        listed = _ok(client.get("/api/v1/observability/alerts"))["items"]
        assert [a["id"] for a in listed] == [alert["id"]] and not listed[0]["signing_secret"]
        assert_envelope(client.post("/api/v1/observability/alerts", json={
            "name": alert["name"], "condition": alert["condition"]}), 409, "ALREADY_EXISTS")

        _interact(client, bad, 2)
        deliveries = _await(lambda: [r for r in receiver.requests if r["path"] == "/alerts"], 1)
        first = deliveries[0]
        assert first["headers"][EVENT_HEADER] == "alert.firing"
        assert verify(secret, first["headers"][SIGNATURE_HEADER], first["raw"])
        assert first["body"]["alert"]["id"] == alert["id"] and first["body"]["value"] == 2
        firing = _ok(client.get("/api/v1/observability/alerts",
                                params={"status": "ALERT_STATUS_FIRING"}))["items"]
        assert [a["id"] for a in firing] == [alert["id"]] and firing[0]["last_fired_at"]

        # The errors leave the 4 s window: the rule resolves and says so.
        deliveries = _await(lambda: [r for r in receiver.requests if r["path"] == "/alerts"], 2)
        resolved = deliveries[1]
        assert resolved["headers"][EVENT_HEADER] == "alert.resolved"
        assert verify(secret, resolved["headers"][SIGNATURE_HEADER], resolved["raw"])
        history = _ok(client.get("/api/v1/observability/events",
                                 params={"source": "observability", "order_by": "created_at"}))
        assert [e["event_type"] for e in history["items"]] == ["alert.firing", "alert.resolved"]
        now = _ok(client.get("/api/v1/observability/alerts"))["items"][0]
        assert now["status"] == "ALERT_STATUS_RESOLVED" and now["last_resolved_at"]
    finally:
        receiver.close()


def test_alert_with_an_unknown_metric_is_400(client):
    body = assert_envelope(client.post("/api/v1/observability/alerts", json={
        "name": _name("x"), "condition": {"metric": "nope",
                                          "operator": "COMPARISON_OPERATOR_GREATER_THAN"}}),
        400, "INVALID_ARGUMENT")
    assert "metric" in str(body)


def test_observability_health_is_public(egress_mesh):
    import httpx2

    reply = httpx2.get(f"{egress_mesh.url}/api/v1/observability/health")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "healthy" and body["service"] == "observability"
    parts = {c["name"]: c for c in body["services"]}
    assert {"database", "otlp-receiver", "log-ingest", "retention", "alert-evaluator"} <= set(parts)
    assert parts["database"]["status"] == "healthy" and parts["database"]["latency_ms"] > 0
    assert parts["alert-evaluator"]["details"]["rounds"] >= 1


def _await(read, count, timeout=40):
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
