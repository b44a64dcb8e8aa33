"""The platform's traces at a collector it did not write: a mesh started with the standard
OTEL_* variables pointing at the official OTLP `TraceService` of opentelemetry-proto
(tests/fakes/otlp_collector.py), a request through the gateway that crosses two services, and
what that collector receives and the mesh's own log files say."""

from __future__ import annotations

import json
import secrets
import time
import uuid

import pytest

from mesh.runtime import internal
from tests.conftest import assert_envelope, register, start_mesh, stop_mesh
from tests.support.fixtures import local_server


collector = local_server("tests.fakes.otlp_collector:OtlpCollector", scope="module")


@pytest.fixture(scope="module")
def collected_mesh(tmp_path_factory, collector):
    # Every request sampled (start_mesh sets AGENTMESH_TRACE_SAMPLE_PERCENT=100); DEBUG makes
    # the runtime log every call it answers, so each traced call has log lines.
    running = start_mesh(tmp_path_factory.mktemp("otel-mesh"), extra_env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20collector-key",
        "AGENTMESH_TRACE_SAMPLE_PERCENT": "100",
        "AGENTMESH_LOG_LEVEL": "DEBUG"})
    yield running
    stop_mesh(running)


def _json_lines(mesh) -> list[dict]:
    lines = []
    for path in sorted((mesh.data_dir / "logs").glob("*.log")):
        for text in path.read_text(errors="replace").splitlines():
            if text.startswith("{"):
                try:
                    lines.append(json.loads(text))
                except ValueError:
                    continue  # a line cut by a concurrent write
    return lines


def test_each_service_reports_its_spans_under_its_own_name_with_the_requests_trace_id(
        collected_mesh, collector):
    tenant = register(collected_mesh)
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    with collected_mesh.client(tenant.token) as client:
        name = f"traced-{uuid.uuid4().hex[:6]}"
        assert client.post("/api/v1/agents", json={"name": name}).status_code == 200
        # gateway -> governance (Dispatch) -> agents (GetAgent)
        reply = client.post("/api/v1/dispatch", json={"intent": "get_agent",
                                                      "context": {"agent_id": name}},
                            headers={"traceparent": traceparent, "tracestate": "vendor=abc"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-trace-id"] == trace_id
    wanted = {"agentmesh-gateway", "agentmesh-governance", "agentmesh-agents"}
    spans = [s for s in collector.wait_for(lambda received: wanted <= {
        s.service_name for s in received if s.trace_id == trace_id}) if s.trace_id == trace_id]
    by_service = {s.service_name: s for s in spans}
    assert wanted <= set(by_service), [(s.service_name, s.name) for s in spans]

    dispatch, get_agent = by_service["agentmesh-governance"], by_service["agentmesh-agents"]
    assert dispatch.name == "agentmesh.governance.v1.GovernanceService/Dispatch"
    assert get_agent.name == "agentmesh.agents.v1.AgentService/GetAgent"
    assert get_agent.span.parent_span_id == dispatch.span.span_id  # one trace across hops
    assert get_agent.attributes.items() >= {
        "rpc.system": "grpc", "rpc.service": "agentmesh.agents.v1.AgentService",
        "rpc.method": "GetAgent", "rpc.grpc.status_code": 0,
        "agentmesh.tenant_id": tenant.tenant_id}.items()
    # The trace state the client sent is kept on the services' spans, hop after hop.
    assert dispatch.span.trace_state == get_agent.span.trace_state == "vendor=abc"
    # The collector's own headers reached it from the services and the gateway alike; the
    # platform's internal token never left the mesh.
    for span in spans:
        assert span.metadata.get("authorization") == "Bearer collector-key", span.service_name
    assert all(internal.HEADER not in metadata for metadata, _ in collector.exports)

    # The request's log lines (the mesh's own JSON log files) carry its trace id, with the
    # span id of the service that wrote them.
    span_ids = {s.span.span_id.hex() for s in spans}
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in _json_lines(collected_mesh) if line.get("trace_id") == trace_id]
        if {line["service"] for line in lines} >= {"governance", "agents"} or \
                time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {line["service"] for line in lines} >= {"governance", "agents"}, lines
    assert {line["span_id"] for line in lines} <= span_ids
    assert any("GetAgent" in line["message"] for line in lines)


def test_a_failure_in_the_second_service_is_an_event_on_its_span(collected_mesh, collector):
    tenant = register(collected_mesh)
    trace_id = secrets.token_hex(16)
    with collected_mesh.client(tenant.token) as client:
        reply = client.post(
            "/api/v1/dispatch", json={"intent": "get_agent",
                                      "context": {"agent_id": f"missing-{uuid.uuid4().hex[:6]}"}},
            headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
    assert_envelope(reply, 404, "NOT_FOUND")
    spans = collector.wait_for(lambda received: any(
        s.trace_id == trace_id and s.service_name == "agentmesh-agents" for s in received))
    get_agent = next(s for s in spans
                     if s.trace_id == trace_id and s.service_name == "agentmesh-agents")
    assert get_agent.attributes["rpc.grpc.status_code"] == 5  # NOT_FOUND
    assert get_agent.attributes["error.type"] == "NOT_FOUND"
    [event] = get_agent.span.events
    attributes = {a.key: a.value.string_value for a in event.attributes}
    assert event.name == "exception" and attributes["agentmesh.error.reason"] == "AGENT_NOT_FOUND"
