"""The observability service: ObservabilityService (metrics, traces, events, logs, alert rules),
AnalyticsService and the OTLP trace receiver (mesh/observability/api/).

Traces arrive over OTLP/gRPC (`opentelemetry.proto.collector.trace.v1.TraceService`, with the
official `opentelemetry-proto` messages: the standard wire format, so any collector can stand in
for this service): from the gateway (Envoy's OpenTelemetry tracer) and from every service
(`mesh.runtime.telemetry`, the SDK's OTLP exporter). Logs arrive from the
services' runtime (`mesh.runtime.logs`) through the internal `IngestLogs`.
"""

from __future__ import annotations

from mesh.observability.api.analytics import AnalyticsService
from mesh.observability.api.observability import ObservabilityService
from mesh.observability.api.otlp import TraceReceiver
from mesh.observability.models import (AlertNotificationRow, AlertRow, AuditRow, EventRow,
                                       LogRow, SpanRow)
from mesh.observability.state import ObservabilityState
from mesh.runtime.service import ServiceDefinition

DEFINITION = ServiceDefinition("observability",
                               servicers=[ObservabilityService, AnalyticsService],
                               extra_handlers=lambda runtime: [TraceReceiver(runtime).handler()],
                               tables=[SpanRow, EventRow, LogRow, AlertRow,
                                       AlertNotificationRow, AuditRow],
                               state=ObservabilityState)
