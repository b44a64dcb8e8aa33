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
        assert agents_span["name"] == "agentmesh.agents.v1.AgentService/CreateAgent"
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


def test_metrics_in_prometheus_text_move_with_traffic(mesh, operator):
    from prometheus_client.parser import text_string_to_metric_families

    def created_agents(text: str) -> float:
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "agentmesh_requests_total" and s.labels["method"] == "CreateAgent"
                   and s.labels["code"] == "OK")

    with mesh.client(operator.token) as client:  # the platform's metrics: platform:read
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


def _observability_address(mesh, operator) -> str:
    with mesh.client(operator.token) as client:
        status = client.get("/api/v1/system/status").json()
    return next(s["address"] for s in status["services"] if s["name"] == "observability")


def _export_span(address: str, trace_id: bytes, tenant_id: str, token: str = "") -> None:
    """One span as an OTLP exporter sends it, straight to the receiver's port."""
    import secrets

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    from mesh.runtime.internal import HEADER

    now = time.time_ns()
    span = Span(trace_id=trace_id, span_id=secrets.token_bytes(8), name="forged",
                start_time_unix_nano=now, end_time_unix_nano=now + 1000,
                attributes=[KeyValue(key=key, value=AnyValue(string_value=tenant_id))
                            for key in ("agentmesh.tenant_id", "tenant_id")])
    request = otlp.ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        scope_spans=[ScopeSpans(spans=[span])])])
    with grpc.insecure_channel(address) as channel:
        export = otlp_grpc.TraceServiceStub(channel).Export
        export(request, timeout=10, metadata=((HEADER, token),) if token else ())


def test_the_span_receiver_takes_spans_only_from_the_platform(mesh, operator, tenant):
    """Anything that reaches the receiver's port without the platform's internal token is
    refused and stores nothing, whatever tenant its spans name; the platform's own exporters
    (the gateway's tracer and the services' runtime) still deliver."""
    import secrets

    import grpc
    import pytest

    address = _observability_address(mesh, operator)
    for token in ("", "guessed-token"):
        trace_id = secrets.token_bytes(16)
        with pytest.raises(grpc.RpcError) as refused:
            _export_span(address, trace_id, tenant.tenant_id, token)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        time.sleep(0.5)
        with mesh.client(tenant.token) as client:
            assert_envelope(client.get(f"/api/v1/observability/traces/{trace_id.hex()}"), 404,
                            "NOT_FOUND")
    # The platform's own: a call through the gateway is traced by Envoy and the service.
    with mesh.client(tenant.token) as client:
        trace_id = client.get("/api/v1/agents").headers["x-trace-id"]
        trace = _eventually(lambda: client.get(f"/api/v1/observability/traces/{trace_id}"),
                            lambda r: r.status_code == 200
                            and {"gateway", "agents"} <= set(r.json()["services"]))
        assert {"gateway", "agents"} <= set(trace.json()["services"]), trace.text


def test_a_spoofed_tenant_header_does_not_file_spans_under_another_tenant(
        mesh, tenant, other_tenant):
    """The tenant of a span is the one the gateway verified: a client that sends another
    tenant's id in `x-agentmesh-tenant-id`, and picks the trace id itself, still has its spans
    filed under its own tenant; the other tenant sees none of them."""
    import secrets

    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    with mesh.client(tenant.token) as client:
        reply = client.get("/api/v1/agents", headers={"x-agentmesh-tenant-id": other_tenant.tenant_id,
                                                      "traceparent": traceparent})
        assert reply.status_code == 200 and reply.headers["x-trace-id"] == trace_id
        mine = _eventually(lambda: client.get(f"/api/v1/observability/traces/{trace_id}"),
                           lambda r: r.status_code == 200
                           and {"gateway", "agents"} <= set(r.json()["services"]))
        assert mine.json()["tenant_id"] == tenant.tenant_id
        assert {"gateway", "agents"} <= set(mine.json()["services"]), mine.text
    with mesh.client(other_tenant.token) as client:
        assert_envelope(client.get(f"/api/v1/observability/traces/{trace_id}"), 404, "NOT_FOUND")
        listed = client.get("/api/v1/observability/traces").json()
        assert trace_id not in [t["trace_id"] for t in listed["items"]]
