"""Traces that cost nothing when a call is not sampled.

The gateway decides: Envoy's OpenTelemetry tracer samples a share of requests
(`AGENTMESH_TRACE_SAMPLE_PERCENT`, 1% by default: at 10% the spans cost ~0.1 ms of CPU per
request, measured with bench/lean_runtime.py) and passes `traceparent` on. A service makes a span only for a call whose `traceparent` says
"sampled", as a child of the gateway's span; its calls to other services carry the new
context on (`mesh.runtime.peers`). Spans are exported over OTLP/gRPC to
`AGENTMESH_OTEL_EXPORTER_OTLP_ENDPOINT` (the observability service under `agentmesh up`; any
collector in production). An unsampled call pays one metadata lookup.

The exporter is ours (`OtlpExporter`, ~50 lines over the SDK's `SpanExporter` interface), not
`opentelemetry-exporter-otlp`: that package needs the `opentelemetry.proto` modules, which the
`xds-protos` wheel overwrites with an old copy whenever it is installed after them, so it broke
in a clean install. The messages are Agent Mesh's copy (protos/agentmesh/otlp/v1).
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from mesh.runtime.settings import Settings

log = logging.getLogger("mesh.telemetry")
TRACEPARENT = "traceparent"
# The traceparent of the span of the call being served, for calls it makes.
current_traceparent: contextvars.ContextVar[str] = contextvars.ContextVar("current_traceparent",
                                                                          default="")


class Tracing:
    """The tracer of one process (shared by the services it hosts)."""

    _instance: "Tracing | None" = None

    def __init__(self, endpoint: str, token: str = "") -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = TracerProvider(resource=Resource.create({"service.name": "agentmesh"}))
        self.provider.add_span_processor(BatchSpanProcessor(
            OtlpExporter(endpoint, timeout=2, token=token), schedule_delay_millis=500))
        self.propagator = TraceContextTextMapPropagator()
        self._tracers: dict[str, Any] = {}

    @classmethod
    def of(cls, settings: Settings) -> "Tracing | None":
        if not settings.otel_exporter_otlp_endpoint:
            return None
        if cls._instance is None:
            from mesh.runtime import internal

            cls._instance = cls(settings.otel_exporter_otlp_endpoint, internal.token(settings))
        return cls._instance

    def tracer(self, service: str):
        tracer = self._tracers.get(service)
        if tracer is None:
            tracer = self._tracers[service] = self.provider.get_tracer(f"agentmesh.{service}")
        return tracer

    def start(self, service: str, method: str, traceparent: str, tenant_id: str):
        """A server span for a sampled call, or None; the caller ends it."""
        if not traceparent.endswith("-01"):  # W3C flags: 01 = sampled
            return None
        from opentelemetry.trace import SpanKind

        parent = self.propagator.extract({TRACEPARENT: traceparent})
        span = self.tracer(service).start_span(
            method.rsplit("/", 1)[-1], context=parent, kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.method": method, "agentmesh.service": service,
                        "agentmesh.tenant_id": tenant_id})
        carrier: dict[str, str] = {}
        from opentelemetry import trace

        self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        return span, carrier.get(TRACEPARENT, "")

    def shutdown(self) -> None:
        self.provider.shutdown()


class OtlpExporter:
    """Sends finished spans to an OTLP/gRPC receiver (`TraceService/Export`). Runs on the
    BatchSpanProcessor's thread, with a blocking channel of its own. Every export carries the
    platform's internal token (`mesh.runtime.internal`), without which the observability
    service's receiver refuses spans; so the endpoint must be that receiver or a collector
    trusted with the token."""

    METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

    def __init__(self, endpoint: str, timeout: float = 2.0, token: str = "") -> None:
        import grpc

        from agentmesh.otlp.v1 import trace_pb2
        from mesh.runtime.internal import HEADER

        self.pb = trace_pb2
        self.timeout = timeout
        self.metadata = ((HEADER, token),) if token else ()
        self.channel = grpc.insecure_channel(endpoint)
        self.export_call = self.channel.unary_unary(
            self.METHOD, request_serializer=trace_pb2.ExportTraceServiceRequest.SerializeToString,
            response_deserializer=trace_pb2.ExportTraceServiceResponse.FromString)

    def _value(self, value: Any):
        pb = self.pb
        if isinstance(value, bool):
            return pb.AnyValue(bool_value=value)
        if isinstance(value, int):
            return pb.AnyValue(int_value=value)
        if isinstance(value, float):
            return pb.AnyValue(double_value=value)
        if isinstance(value, (list, tuple)):
            return pb.AnyValue(array_value=pb.ArrayValue(values=[self._value(v) for v in value]))
        return pb.AnyValue(string_value=str(value))

    def _attributes(self, attributes) -> list:
        return [self.pb.KeyValue(key=k, value=self._value(v)) for k, v in (attributes or {}).items()]

    def encode(self, spans) -> Any:
        pb = self.pb
        by_resource: dict[int, tuple[Any, list]] = {}
        for span in spans:
            entry = by_resource.setdefault(id(span.resource), (span.resource, []))
            context, parent = span.get_span_context(), span.parent
            entry[1].append(pb.Span(
                trace_id=context.trace_id.to_bytes(16, "big"),
                span_id=context.span_id.to_bytes(8, "big"),
                parent_span_id=parent.span_id.to_bytes(8, "big") if parent else b"",
                name=span.name, kind=span.kind.value + 1,  # SDK kinds count from INTERNAL=0
                start_time_unix_nano=span.start_time or 0, end_time_unix_nano=span.end_time or 0,
                attributes=self._attributes(span.attributes),
                status=pb.Status(code=span.status.status_code.value,
                                 message=span.status.description or "")))
        return pb.ExportTraceServiceRequest(resource_spans=[
            pb.ResourceSpans(resource=pb.Resource(attributes=self._attributes(resource.attributes)),
                             scope_spans=[pb.ScopeSpans(spans=items)])
            for resource, items in by_resource.values()])

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            self.export_call(self.encode(spans), timeout=self.timeout, metadata=self.metadata)
            return SpanExportResult.SUCCESS
        except Exception as exc:  # noqa: BLE001 - the receiver may be down; spans are dropped
            log.debug("span export failed: %s", exc)
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.channel.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
