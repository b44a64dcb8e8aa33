"""Spans are stored the same whichever way they arrive (mesh.observability.otlp): over OTLP
(the gateway, a collector, a service in another process) or handed over by the SDK in the
process that made them (`agentmesh up`, mesh.runtime.telemetry.InProcessFirst)."""

from __future__ import annotations

from datetime import UTC, datetime

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from mesh.observability.otlp import sdk_span_rows, span_rows


class _Kept(SpanExporter):
    def __init__(self) -> None:
        self.spans = []

    def export(self, spans):
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _spans() -> list:
    kept = _Kept()
    provider = TracerProvider(resource=Resource.create({"service.name": "agentmesh-workflows",
                                                        "service.version": "1.2.3"}))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("agentmesh.workflows")
    with tracer.start_as_current_span("agentmesh.workflows.v1.WorkflowService/ExecuteWorkflow",
                                      kind=SpanKind.SERVER, attributes={
                                          "agentmesh.tenant_id": "t-1",
                                          "agentmesh.service": "workflows",
                                          "agentmesh.execution_id": "e-1",
                                          "rpc.grpc.status_code": 0, "ratio": 0.5,
                                          "retried": False}):
        with tracer.start_as_current_span("step s1", kind=SpanKind.INTERNAL, attributes={
                "agentmesh.tenant_id": "t-1", "choices": ["a", "b"], "sizes": [1, 2]}) as step:
            step.set_status(Status(StatusCode.ERROR, "the step failed"))
        tracer.start_span("model call", kind=SpanKind.CLIENT, attributes={
            "tenant_id": "t-2", "agentmesh.call_id": "c-1"}).end()
    provider.shutdown()
    return kept.spans


def test_spans_handed_over_in_the_process_are_the_rows_of_their_otlp_export():
    spans = _spans()
    now = datetime.now(UTC)
    handed = sdk_span_rows(spans, now)
    exported = span_rows(encode_spans(spans), now)
    assert len(handed) == len(exported) == 3
    for row in (*handed, *exported):
        row.pop("id")
    assert handed == exported
    by_name = {row["name"]: row for row in handed}
    step = by_name["step s1"]
    root = by_name["agentmesh.workflows.v1.WorkflowService/ExecuteWorkflow"]
    assert step["parent_span_id"] == root["span_id"] and root["parent_span_id"] == ""
    assert (root["kind"], step["kind"], by_name["model call"]["kind"]) == (
        "SPAN_KIND_SERVER", "SPAN_KIND_INTERNAL", "SPAN_KIND_CLIENT")
    assert (step["status"], step["status_message"]) == ("SPAN_STATUS_ERROR", "the step failed")
    assert (root["tenant_id"], root["service"], root["subject_id"]) == ("t-1", "workflows", "e-1")
    assert (by_name["model call"]["tenant_id"], by_name["model call"]["subject_id"]) == (
        "t-2", "c-1")
