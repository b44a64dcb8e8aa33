"""Traces that cost nothing when a call is not sampled.

The gateway decides: Envoy's OpenTelemetry tracer samples a share of requests
(`AGENTMESH_TRACE_SAMPLE_PERCENT`, or every request that arrives with a sampled `traceparent`)
and passes `traceparent` on. A service makes a span only for a call whose `traceparent` says
"sampled", as a child of the gateway's span; its calls to other services carry the new
context on (`mesh.runtime.peers`). Spans are exported over OTLP/gRPC to
`AGENTMESH_OTEL_EXPORTER_OTLP_ENDPOINT` (the observability service under `agentmesh up`; any
collector in production). An unsampled call pays one metadata lookup.
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

    def __init__(self, endpoint: str) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = TracerProvider(resource=Resource.create({"service.name": "agentmesh"}))
        self.provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=2),
            schedule_delay_millis=500))
        self.propagator = TraceContextTextMapPropagator()
        self._tracers: dict[str, Any] = {}

    @classmethod
    def of(cls, settings: Settings) -> "Tracing | None":
        if not settings.otel_exporter_otlp_endpoint:
            return None
        if cls._instance is None:
            cls._instance = cls(settings.otel_exporter_otlp_endpoint)
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
