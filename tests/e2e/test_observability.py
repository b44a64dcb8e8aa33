"""Traces, logs and events as a user reads them through the gateway."""

from __future__ import annotations

import time
import uuid

from tests.conftest import assert_envelope


def _eventually(fetch, ready, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_one_rest_call_is_one_trace_across_the_gateway_and_services(mesh, tenant):
    with mesh.client(tenant.token) as client:
        created = client.post("/api/v1/agents", json={"name": f"t-{uuid.uuid4().hex[:6]}"})
        assert created.status_code == 200, created.text
        trace_id = created.headers["x-trace-id"]  # the test mesh samples every request
        trace = _eventually(lambda: client.get(f"/api/v1/observability/traces/{trace_id}"),
                            lambda r: r.status_code == 200
                            and {"gateway", "agents"} <= set(r.json()["services"]))
        assert trace.status_code == 200, trace.text
        body = trace.json()
        assert {"gateway", "agents"} <= set(body["services"]), body["services"]
        spans = {s["span_id"]: s for s in body["spans"]}
        agents_span = next(s for s in body["spans"] if s["service"] == "agents")
        assert agents_span["name"] == "CreateAgent"
        assert spans[agents_span["parent_span_id"]]["service"] == "gateway"
        listed = client.get("/api/v1/observability/traces", params={"service": "agents"}).json()
        assert trace_id in [t["trace_id"] for t in listed["items"]]


def test_another_tenant_cannot_read_a_trace(mesh, tenant, other_tenant):
    with mesh.client(tenant.token) as client:
        trace_id = client.get("/api/v1/agents").headers["x-trace-id"]
        _eventually(lambda: client.get(f"/api/v1/observability/traces/{trace_id}"),
                    lambda r: r.status_code == 200)
    with mesh.client(other_tenant.token) as client:
        assert_envelope(client.get(f"/api/v1/observability/traces/{trace_id}"), 404, "NOT_FOUND")


def test_events_are_created_listed_and_tenant_scoped(mesh, tenant, other_tenant):
    with mesh.client(tenant.token) as client:
        made = client.post("/api/v1/observability/events", json={
            "event_type": "deploy", "message": "agent rolled out", "severity": "SEVERITY_WARNING",
            "attributes": {"agent": "triage"}})
        assert made.status_code == 200, made.text
        assert made.json()["severity"] == "SEVERITY_WARNING"
        assert made.json()["correlation_id"] == made.headers["x-correlation-id"]
        listed = client.get("/api/v1/observability/events", params={"event_type": "deploy"}).json()
        assert [e["id"] for e in listed["items"]] == [made.json()["id"]]
        assert_envelope(client.post("/api/v1/observability/events", json={"event_type": "x"}),
                        400, "INVALID_ARGUMENT")
    with mesh.client(other_tenant.token) as client:
        assert client.get("/api/v1/observability/events").json()["total"] == 0


def test_service_logs_are_searchable_by_correlation_id(mesh, tenant, other_tenant):
    correlation = f"logs-{uuid.uuid4().hex}"
    with mesh.client(tenant.token) as client:
        name = f"logged-{uuid.uuid4().hex[:6]}"
        client.post("/api/v1/agents", json={"name": name}, headers={"X-Correlation-ID": correlation})
        reply = _eventually(lambda: client.get("/api/v1/observability/logs", params={
            "correlation_id": correlation, "level": "LOG_LEVEL_INFO"}),
            lambda r: r.status_code == 200 and r.json()["total"] >= 1)
        entry = reply.json()["items"][0]
        assert entry["service"] == "agents" and name in entry["message"]
        assert entry["level"] == "LOG_LEVEL_INFO" and entry["correlation_id"] == correlation
        errors_only = client.get("/api/v1/observability/logs", params={
            "correlation_id": correlation, "level": "LOG_LEVEL_ERROR"}).json()
        assert errors_only["total"] == 0
    with mesh.client(other_tenant.token) as client:
        assert client.get("/api/v1/observability/logs",
                          params={"correlation_id": correlation}).json()["total"] == 0


def test_metrics_in_prometheus_text_move_with_traffic(mesh, tenant):
    from prometheus_client.parser import text_string_to_metric_families

    def created_agents(text: str) -> float:
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "agentmesh_requests_total" and s.labels["method"] == "CreateAgent"
                   and s.labels["code"] == "OK")

    with mesh.client(tenant.token) as client:
        first = client.get("/metrics")
        assert first.status_code == 200, first.text
        assert first.headers["content-type"].startswith("text/plain")
        before = created_agents(first.text)
        for _ in range(3):
            client.post("/api/v1/agents", json={"name": f"m-{uuid.uuid4().hex[:6]}"})
        after_text = client.get("/metrics").text
        assert created_agents(after_text) == before + 3
        families = {f.name for f in text_string_to_metric_families(after_text)}
        assert {"agentmesh_request_duration_seconds", "process_resident_memory_bytes"} <= families
        assert any(name.startswith("envoy_http_downstream_rq") for name in families), \
            "the gateway's own statistics are part of /metrics"
        as_json = client.get("/api/v1/observability/metrics",
                             params={"names": "agentmesh_requests_total", "service": "agents"})
        assert as_json.status_code == 200, as_json.text
        series = [s for s in as_json.json()["series"] if s["labels"].get("method") == "CreateAgent"
                  and s["labels"].get("code") == "OK"]
        assert series and series[0]["points"][0]["value"] >= before + 3


def test_metrics_need_credentials(mesh):
    with mesh.client() as client:
        assert_envelope(client.get("/metrics"), 401, "UNAUTHENTICATED")


def test_a_call_that_crosses_services_is_one_trace(mesh, tenant):
    """dispatch goes gateway -> governance -> agents: one trace id, spans from all three, the
    agents span a child of governance's."""
    with mesh.client(tenant.token) as client:
        name = f"traced-{uuid.uuid4().hex[:6]}"
        client.post("/api/v1/agents", json={"name": name})
        reply = client.post("/api/v1/dispatch", json={"intent": "get_agent",
                                                      "context": {"agent_id": name}})
        assert reply.status_code == 200, reply.text
        trace_id = reply.headers["x-trace-id"]
        trace = _eventually(lambda: client.get(f"/api/v1/observability/traces/{trace_id}"),
                            lambda r: r.status_code == 200 and
                            {"gateway", "governance", "agents"} <= set(r.json()["services"]))
        body = trace.json()
        assert {"gateway", "governance", "agents"} <= set(body["services"]), body["services"]
        spans = {s["span_id"]: s for s in body["spans"]}
        get_agent = next(s for s in body["spans"] if s["service"] == "agents")
        assert spans[get_agent["parent_span_id"]]["service"] == "governance"
