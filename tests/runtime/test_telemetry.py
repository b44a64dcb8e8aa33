"""Traces from the runtime to an OTLP receiver that is not the project's (the official
`TraceService` of opentelemetry-proto, tests/fakes/otlp_collector.py), configured by the
standard OTEL_* variables: what a collector receives, what it never receives, what the log
lines say. The whole mesh against such a receiver: tests/e2e/test_telemetry.py."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets

import grpc
import pytest

from agentmesh.observability.v1 import observability_pb2 as pb
from agentmesh.observability.v1 import observability_pb2_grpc as pb_grpc
from mesh.observability.service import DEFINITION
from mesh.runtime import internal, logs
from mesh.runtime.telemetry import Tracing, parent_context
from tests.harness import Identity, ServiceHarness
from tests.support.fixtures import local_server

OBSERVABILITY = "agentmesh.observability.v1.ObservabilityService"


collector = local_server("tests.fakes.otlp_collector:OtlpCollector", scope="function")


@pytest.fixture
def traced(monkeypatch, tmp_path):
    """Starts the observability service with the given environment and settings; shuts the
    process's tracing down afterwards (it is made once per process)."""
    harnesses = []

    def start(env: dict[str, str], **settings) -> ServiceHarness:
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                     "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_TRACES_SAMPLER", "OTEL_SERVICE_NAME",
                     "OTEL_SEMCONV_STABILITY_OPT_IN", "AGENTMESH_OTEL_EXPORTER_OTLP_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert Tracing.current() is None
        harness = ServiceHarness(DEFINITION, tmp_path / f"obs{len(harnesses)}", **settings)
        harnesses.append(harness)
        return harness

    yield start
    tracing = Tracing.current()
    if tracing is not None:
        tracing.shutdown()
    for harness in harnesses:
        harness.close()


@pytest.fixture
def json_log_lines():
    """The process's JSON log lines (mesh.runtime.logs at DEBUG, the level that logs each
    call), captured; the logging set-up is restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure("observability", "DEBUG", "json")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    logs.apply_levels("INFO")
    root.handlers[:], root.level = saved


def _traceparent(sampled: bool = True) -> tuple[str, str, str]:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-{'01' if sampled else '00'}"


def test_a_parent_is_read_once_for_every_span_of_it_and_keeps_its_tracestate():
    """The calls one span makes carry the same traceparent: its context is parsed once and
    shared (immutable); a tracestate is its own entry; a long one (a client's) is read each
    time, not kept; a malformed header is no parent."""
    from opentelemetry.trace import get_current_span

    trace_id, parent, traceparent = _traceparent()
    with_state = parent_context(traceparent, "vendor=abc")
    assert parent_context(traceparent, "vendor=abc") is with_state
    remote = get_current_span(with_state).get_span_context()
    assert (f"{remote.trace_id:032x}", f"{remote.span_id:016x}") == (trace_id, parent)
    assert remote.is_remote and remote.trace_flags.sampled
    assert remote.trace_state.get("vendor") == "abc"
    assert get_current_span(parent_context(traceparent)).get_span_context() \
        .trace_state.get("vendor") is None
    assert not get_current_span(parent_context("00-nothing")).get_span_context().is_valid
    with pytest.raises(ValueError):  # shared, so it must not change
        with_state["key"] = "value"
    long_state = ",".join(f"v{n}=" + "x" * 200 for n in range(8))   # read, not kept
    long = parent_context(traceparent, long_state)
    assert parent_context(traceparent, long_state) is not long
    assert get_current_span(long).get_span_context().trace_state.get("v7") == "x" * 200


def _flush() -> None:
    assert Tracing.current().force_flush(5000)


def test_a_sampled_call_reaches_any_collector_with_the_standard_variables(
        traced, collector, json_log_lines):
    """A call whose traceparent is sampled becomes a SERVER span at the collector named by
    OTEL_EXPORTER_OTLP_ENDPOINT, with the headers of OTEL_EXPORTER_OTLP_HEADERS (never the
    internal token: this is not the platform's receiver), the service's own service.name, RPC
    conventions, the caller's trace state, and its ids in the call's log lines."""
    harness = traced({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                      "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20collector-key"})
    stub = harness.stub(pb_grpc.ObservabilityServiceStub)
    me = Identity()
    trace_id, parent, traceparent = _traceparent()
    stub.ListTraces(pb.ListTracesRequest(), metadata=(
        *me.metadata(), ("traceparent", traceparent), ("tracestate", "vendor=abc")))
    _flush()
    spans = collector.wait_for(lambda s: any(x.trace_id == trace_id for x in s))
    span = next(s for s in spans if s.trace_id == trace_id)
    assert span.name == f"{OBSERVABILITY}/ListTraces"
    assert span.span.kind == span.span.SPAN_KIND_SERVER
    assert span.span.parent_span_id.hex() == parent
    assert span.span.trace_state == "vendor=abc"
    assert span.service_name == "agentmesh-observability"
    assert span.resource["service.namespace"] == "agentmesh"
    assert span.attributes.items() >= {
        "rpc.system": "grpc", "rpc.service": OBSERVABILITY, "rpc.method": "ListTraces",
        "rpc.grpc.status_code": 0, "agentmesh.tenant_id": me.tenant_id}.items()
    assert span.metadata["authorization"] == "Bearer collector-key"
    assert internal.HEADER not in span.metadata
    lines = [line for line in json_log_lines() if "ListTraces" in line["message"]]
    assert lines and all(line["trace_id"] == trace_id and
                         line["span_id"] == span.span.span_id.hex() for line in lines), lines


def test_a_failed_call_has_its_status_code_error_type_and_an_exception_event(traced, collector):
    harness = traced({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint})
    stub = harness.stub(pb_grpc.ObservabilityServiceStub)
    trace_id, _, traceparent = _traceparent()
    with pytest.raises(grpc.RpcError):
        stub.GetTrace(pb.GetTraceRequest(trace_id=secrets.token_hex(16)),
                      metadata=(*Identity().metadata(), ("traceparent", traceparent)))
    _flush()
    span = next(s for s in collector.wait_for(lambda s: any(x.trace_id == trace_id for x in s))
                if s.trace_id == trace_id)
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert span.attributes["error.type"] == "NOT_FOUND"
    # A client's mistake is not a server error: the span's status stays unset.
    assert span.span.status.code == span.span.status.STATUS_CODE_UNSET
    [event] = span.span.events
    event_attributes = {a.key: a.value.string_value for a in event.attributes}
    assert event.name == "exception"
    assert event_attributes["agentmesh.error.reason"] == "TRACE_NOT_FOUND"
    assert event_attributes["exception.type"].endswith("NotFound")


def test_an_unsampled_call_makes_no_span(traced, collector, json_log_lines):
    harness = traced({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint})
    stub = harness.stub(pb_grpc.ObservabilityServiceStub)
    unsampled_id, _, unsampled = _traceparent(sampled=False)
    sampled_id, _, sampled = _traceparent()
    stub.ListTraces(pb.ListTracesRequest(), metadata=(*Identity().metadata(),
                                                      ("traceparent", unsampled)))
    stub.ListTraces(pb.ListTracesRequest(), metadata=(*Identity().metadata(),
                                                      ("traceparent", sampled)))
    _flush()
    spans = collector.wait_for(lambda s: any(x.trace_id == sampled_id for x in s))
    assert unsampled_id not in {s.trace_id for s in spans}
    answered = [line for line in json_log_lines() if "ListTraces answered" in line["message"]]
    assert len(answered) == 2 and "trace_id" not in answered[0]


def test_the_semantic_conventions_opt_in_gives_the_newer_rpc_attributes(traced, collector):
    harness = traced({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                      "OTEL_SEMCONV_STABILITY_OPT_IN": "rpc"})
    trace_id, _, traceparent = _traceparent()
    harness.stub(pb_grpc.ObservabilityServiceStub).ListTraces(
        pb.ListTracesRequest(), metadata=(*Identity().metadata(), ("traceparent", traceparent)))
    _flush()
    span = next(s for s in collector.wait_for(lambda s: any(x.trace_id == trace_id for x in s))
                if s.trace_id == trace_id)
    assert span.attributes.items() >= {"rpc.system.name": "grpc",
                                    "rpc.method": f"{OBSERVABILITY}/ListTraces",
                                    "rpc.response.status_code": "OK"}.items()
    assert "rpc.system" not in span.attributes and "rpc.grpc.status_code" not in span.attributes


def test_the_platform_receiver_gets_the_internal_token_through_the_deprecated_alias(
        traced, collector):
    """AGENTMESH_OTEL_EXPORTER_OTLP_ENDPOINT (host:port, plaintext) still works for a release;
    an endpoint that is the observability service's address in AGENTMESH_PEERS is sent the
    platform's internal token, which its receiver requires."""
    address = f"127.0.0.1:{collector.port}"
    harness = traced({}, otel_exporter_otlp_endpoint=address,
                     peers=f"observability={address}")
    trace_id, _, traceparent = _traceparent()
    harness.stub(pb_grpc.ObservabilityServiceStub).ListTraces(
        pb.ListTracesRequest(), metadata=(*Identity().metadata(), ("traceparent", traceparent)))
    _flush()
    span = next(s for s in collector.wait_for(lambda s: any(x.trace_id == trace_id for x in s))
                if s.trace_id == trace_id)
    assert span.metadata[internal.HEADER] == internal.token(harness.settings)


def test_one_process_names_each_service_and_otel_service_name_a_single_one(monkeypatch):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing-agents")
    several = Tracing("", exporter=InMemorySpanExporter(), hosted=("agents", "tools"))
    assert {several.provider(s).resource.attributes["service.name"]
            for s in ("agents", "tools")} == {"agentmesh-agents", "agentmesh-tools"}
    one = Tracing("", exporter=InMemorySpanExporter(), hosted=("agents",))
    assert one.provider("agents").resource.attributes["service.name"] == "billing-agents"
    several.shutdown()
    one.shutdown()


def test_a_model_request_is_a_genai_client_span_of_the_traced_call():
    """Inside a traced call, ChatClient.complete makes a CLIENT span with the GenAI
    conventions (operation, provider, model, token usage), child of the call's span."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mesh.agents.model_client import ChatClient
    from mesh.runtime.context import current_service
    from mesh.runtime.egress import EgressPolicy
    from mesh.runtime.masterdata_client import ModelSpec
    from tests.fakes.openai_server import ScriptedModelServer

    server = ScriptedModelServer()
    server.script("m-traced", [{"content": "hello there"}])
    exporter = InMemorySpanExporter()
    tracing = Tracing._instance = Tracing("", exporter=exporter, hosted=("agents",))
    spec = ModelSpec(id="m1", name="traced", provider="openai_compatible", model="m-traced",
                     base_url=server.base_url)

    async def call() -> None:
        token = current_service.set("agents")
        _, _, traceparent = _traceparent()
        span = tracing.start("agents", "/agentmesh.agents.v1.CallService/SendMessage",
                             {"traceparent": traceparent})
        client = ChatClient(spec, "sk-test", EgressPolicy.parse("127.0.0.1"))
        try:
            await client.complete([{"role": "user", "content": "hi"}], [], max_tokens=50)
        finally:
            await client.close()
            span.end(True)
            current_service.reset(token)

    try:
        asyncio.run(call())
        tracing.force_flush()
        spans = {s.name: s for s in exporter.get_finished_spans()}
    finally:
        tracing.shutdown()
        server.close()
    model, served = spans["chat m-traced"], spans["agentmesh.agents.v1.CallService/SendMessage"]
    assert model.kind.name == "CLIENT" and model.parent.span_id == served.context.span_id
    assert dict(model.attributes).items() >= {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai_compatible",
        "gen_ai.request.model": "m-traced", "gen_ai.request.max_tokens": 50,
        "server.address": "127.0.0.1", "gen_ai.response.finish_reasons": ("stop",)}.items()
    assert model.attributes["gen_ai.usage.input_tokens"] > 0
    assert model.attributes["gen_ai.usage.output_tokens"] > 0
    assert model.resource.attributes["service.name"] == "agentmesh-agents"
