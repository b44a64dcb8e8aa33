"""Tables of the observability service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field

from mesh.runtime.tables import TenantTable, json_field, timestamp_field


class SpanRow(TenantTable, table=True):
    """One span as received over OTLP. `tenant_id` is the tenant the span's call ran for
    ("" for a span that names none, such as the gateway's span of a public route); a trace
    belongs to every tenant one of its spans names."""

    __tablename__ = "spans"
    trace_id: str = Field(index=True)
    span_id: str
    parent_span_id: str = ""
    name: str = ""
    service: str = ""
    kind: str = "SPAN_KIND_UNSPECIFIED"
    started_at: datetime | None = timestamp_field()
    ended_at: datetime | None = timestamp_field()
    duration_ms: float = 0.0
    status: str = "SPAN_STATUS_UNSPECIFIED"
    status_message: str = ""
    attributes: dict[str, Any] = json_field(dict)


class EventRow(TenantTable, table=True):
    __tablename__ = "events"
    event_type: str
    source: str = ""
    severity: str = "SEVERITY_INFO"
    message: str = ""
    attributes: dict[str, Any] = json_field(dict)
    correlation_id: str = Field(default="", index=True)
    trace_id: str = ""


class LogRow(TenantTable, table=True):
    """A log record of any service, shipped by the runtime (`mesh.runtime.logs`)."""

    __tablename__ = "logs"
    timestamp: datetime | None = timestamp_field()
    level: str = "LOG_LEVEL_INFO"
    service: str = ""
    message: str = ""
    correlation_id: str = Field(default="", index=True)
    trace_id: str = ""
    attributes: dict[str, Any] = json_field(dict)
