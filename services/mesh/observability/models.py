"""Tables of the observability service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mesh.runtime.outbox import OutboxFields
from mesh.runtime.tables import TenantTable, json_field, timestamp_field


class SpanRow(TenantTable, table=True):
    """One span as received over OTLP. `tenant_id` is the tenant the span's call ran for
    ("" for a span that names none, such as the gateway's span of a public route); a trace
    belongs to every tenant one of its spans names."""

    __tablename__ = "spans"
    __audit__ = False  # a record itself, not a change to audit
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
    # The call or execution the span worked on (`agentmesh.call_id`, `agentmesh.execution_id`):
    # a trace is found from either (ListTraces `call_id`, `execution_id`).
    subject_id: str = Field(default="", index=True)


class EventRow(TenantTable, table=True):
    __tablename__ = "events"
    __audit__ = False  # a record itself, not a change to audit
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
    __audit__ = False  # a record itself, not a change to audit
    timestamp: datetime | None = timestamp_field()
    level: str = "LOG_LEVEL_INFO"
    service: str = ""
    message: str = ""
    correlation_id: str = Field(default="", index=True)
    trace_id: str = ""
    attributes: dict[str, Any] = json_field(dict)


class AlertRow(TenantTable, table=True):
    """An alert rule and its current state; its firing/resolved history is events
    (`alert.firing`, `alert.resolved`) in the events table."""

    __tablename__ = "alerts"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_alerts_tenant_name"),)

    name: str
    description: str = ""
    metric: str
    labels: dict[str, str] = json_field(dict)
    operator: str
    threshold: float = 0.0
    window_seconds: float = 300.0
    severity: str = "SEVERITY_WARNING"
    status: str = "ALERT_STATUS_OK"
    channels: list[str] = json_field(list)
    enabled: bool = True
    signing_secret: str = ""
    last_value: float = 0.0
    last_fired_at: datetime | None = timestamp_field()
    last_resolved_at: datetime | None = timestamp_field()
    last_evaluated_at: datetime | None = timestamp_field()
    # No notification is queued before this time (SilenceAlert); None: none held back.
    silenced_until: datetime | None = timestamp_field()
    created_by: str = ""


class AlertNotificationRow(TenantTable, OutboxFields, table=True):
    """One notification of an alert's change to one of its webhook channels: queued in the
    transaction that moves the alert's state, sent from this outbox (`mesh.runtime.outbox`),
    so a restart between the change and its delivery loses nothing."""

    __tablename__ = "alert_notifications"
    __audit__ = False  # a record itself, not a change to audit
    __table_args__ = (sa.Index("ix_alert_notifications_due", "status", "next_attempt_at"),)

    alert_id: str = Field(index=True)
    url: str


class AuditRow(TenantTable, table=True):
    """One event of the audit trail, forwarded by the service that recorded it
    (mesh.runtime.audit); its id is the event's, so a repeated forward stores it once."""

    __tablename__ = "audit_log"
    __audit__ = False  # the trail itself
    __table_args__ = (sa.Index("ix_audit_log_tenant_created_at", "tenant_id", "created_at", "id"),
                      sa.Index("ix_audit_log_created_at", "created_at"))

    actor: str = ""
    api_key_id: str = ""
    service: str = ""
    action: str = ""
    resource_type: str = ""
    resource_id: str = ""
    correlation_id: str = ""
    before: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    after: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    details: dict[str, Any] = json_field(dict)
