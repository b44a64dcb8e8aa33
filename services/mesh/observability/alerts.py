"""Alert rules: stored per tenant, evaluated by a background task every
`AGENTMESH_ALERT_EVALUATION_SECONDS`, with their firing/resolved history as events
(`alert.firing`, `alert.resolved`) and notifications to the rule's webhook channels, queued in
the same transaction as the change and sent from the runtime's outbox (`mesh.runtime.outbox`:
signed, retried across restarts, every attempt through the egress guard).

Metrics (per tenant, over the rule's trailing window; docs/observability.md):
    calls, call_errors, call_error_rate, call_p95_latency_ms   agents' calls (AggregateCalls)
    active_calls                                               calls in progress now
    workflow_failures                                          failed executions (workflows)
    error_events                                               events of severity ERROR or worse
    error_logs                                                 log lines of level ERROR or worse
"""

from __future__ import annotations

import asyncio
import logging
import math
import operator
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from sqlmodel import Session, func, select

from agentmesh.observability.v1 import observability_pb2 as pb
from mesh.observability.analytics import Sources, Window
from mesh.observability.models import AlertNotificationRow, AlertRow, EventRow, LogRow
from mesh.runtime import outbox, webhooks
from mesh.runtime.context import SCOPES_HEADER, TENANT_HEADER, USER_HEADER
from mesh.runtime.convert import changes
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import invalid_field
from mesh.runtime.repository import TenantRepository
from mesh.runtime.service import Runtime
from mesh.runtime.tables import aware, utcnow
from mesh.runtime.webhooks import WebhookSender

log = logging.getLogger("mesh.observability.alerts")
alerts = TenantRepository(AlertRow, noun="alert", search_columns=("name", "description"),
                          order_columns=("name", "severity", "last_fired_at"), quota="resource")

CALL_METRICS = {"calls", "call_errors", "call_error_rate", "call_p95_latency_ms", "active_calls"}
LABELS = {**{m: {"agent_id", "provider"} for m in CALL_METRICS},
          "workflow_failures": {"workflow_id"}, "error_events": {"source", "event_type"},
          "error_logs": {"service"}}
METRICS = tuple(LABELS)
_COMPARE = {
    pb.COMPARISON_OPERATOR_GREATER_THAN: operator.gt,
    pb.COMPARISON_OPERATOR_GREATER_THAN_OR_EQUAL: operator.ge,
    pb.COMPARISON_OPERATOR_LESS_THAN: operator.lt,
    pb.COMPARISON_OPERATOR_LESS_THAN_OR_EQUAL: operator.le,
    pb.COMPARISON_OPERATOR_EQUAL: operator.eq,
    pb.COMPARISON_OPERATOR_NOT_EQUAL: operator.ne,
}
DEFAULT_WINDOW = 300.0
MAX_WINDOW = 7 * 86400.0
FIRING, RESOLVED = "ALERT_STATUS_FIRING", "ALERT_STATUS_RESOLVED"
ERROR_LEVELS = ("LOG_LEVEL_ERROR", "LOG_LEVEL_CRITICAL")
ERROR_SEVERITIES = ("SEVERITY_ERROR", "SEVERITY_CRITICAL")


def alert_message(row: AlertRow, *, with_secret: bool = False) -> pb.Alert:
    out = pb.Alert(
        id=row.id, tenant_id=row.tenant_id, name=row.name, description=row.description,
        severity=row.severity, status=row.status if row.enabled else "ALERT_STATUS_DISABLED",
        channels=row.channels, enabled=row.enabled, last_value=row.last_value)
    condition = out.condition
    condition.metric, condition.operator, condition.threshold = row.metric, row.operator, row.threshold
    condition.labels.update(row.labels)
    condition.window.FromTimedelta(timedelta(seconds=row.window_seconds))
    for name in ("last_fired_at", "last_resolved_at", "created_at", "updated_at",
                 "silenced_until"):
        value = getattr(row, name)
        if value is not None:
            getattr(out, name).FromDatetime(aware(value))
    if with_secret:
        out.signing_secret = row.signing_secret
    return out


def new_alert(request: pb.CreateAlertRequest, tenant_id: str, user_id: str) -> AlertRow:
    alert = request.alert
    condition = alert.condition
    if not alert.name:
        raise invalid_field("alert.name", "is required")
    if condition.metric not in LABELS:
        raise invalid_field("alert.condition.metric", f"use one of {', '.join(METRICS)}")
    if condition.operator not in _COMPARE:
        raise invalid_field("alert.condition.operator", "is required")
    if not math.isfinite(condition.threshold):
        raise invalid_field("alert.condition.threshold", "must be a finite number")
    window = condition.window.ToTimedelta().total_seconds() if condition.HasField("window") else 0
    if window < 0 or window > MAX_WINDOW:
        raise invalid_field("alert.condition.window", "must be between 1 s and 7 days")
    return AlertRow(
        tenant_id=tenant_id, name=alert.name, description=alert.description,
        metric=condition.metric, labels=dict(condition.labels),
        operator=pb.ComparisonOperator.Name(condition.operator), threshold=condition.threshold,
        window_seconds=max(1.0, window) if window else DEFAULT_WINDOW,
        severity=pb.Severity.Name(alert.severity) if alert.severity else "SEVERITY_WARNING",
        channels=list(alert.channels), enabled=alert.enabled if alert.HasField("enabled") else True,
        status="ALERT_STATUS_OK" if not alert.HasField("enabled") or alert.enabled
        else "ALERT_STATUS_DISABLED",
        signing_secret=webhooks.new_secret(), created_by=user_id)


# What UpdateAlert may change, and the columns a changed rule takes from its checked form.
WRITABLE = frozenset({"name", "description", "condition", "severity", "channels", "enabled",
                      "silenced_until"})
_RULE_COLUMNS = ("name", "description", "metric", "labels", "operator", "threshold",
                 "window_seconds", "severity", "channels", "enabled")
MIN_SILENCE, MAX_SILENCE = 60.0, 30 * 86400.0


def updated_alert(row: AlertRow, alert: pb.Alert, mask: list[str]) -> tuple[AlertRow, set[str]]:
    """The rule `row` would become with the fields of `alert` that the update names, checked
    as CreateAlert checks a new one; and the names of those fields."""
    update = changes(alert, WRITABLE, mask)
    merged = alert_message(row)
    for name in update:
        field = merged.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            del getattr(merged, name)[:]
            getattr(merged, name).extend(getattr(alert, name))
        elif field.message_type is not None or field.has_presence:
            merged.ClearField(name)
            if alert.HasField(name):
                if field.message_type is not None:
                    getattr(merged, name).CopyFrom(getattr(alert, name))
                else:
                    setattr(merged, name, getattr(alert, name))
        else:
            setattr(merged, name, getattr(alert, name))
    checked = new_alert(pb.CreateAlertRequest(alert=merged), row.tenant_id, row.created_by)
    if "silenced_until" in update and merged.HasField("silenced_until"):
        checked.silenced_until = merged.silenced_until.ToDatetime(tzinfo=UTC)
    return checked, set(update)


def apply_update(row: AlertRow, checked: AlertRow, fields: set[str]) -> None:
    """`row` (locked) takes the checked rule's columns; re-enabled, it starts again at OK."""
    was_enabled = row.enabled
    for column in _RULE_COLUMNS:
        setattr(row, column, getattr(checked, column))
    if "silenced_until" in fields:
        row.silenced_until = checked.silenced_until
    if row.enabled and not was_enabled:
        row.status = "ALERT_STATUS_OK"


def silence_until(duration: Duration) -> datetime:
    seconds = duration.ToTimedelta().total_seconds()
    if not MIN_SILENCE <= seconds <= MAX_SILENCE:
        raise invalid_field("duration", "must be between 1 minute and 30 days")
    return utcnow() + timedelta(seconds=seconds)


def silenced(row: AlertRow, now: datetime) -> bool:
    return row.silenced_until is not None and aware(row.silenced_until) > aware(now)


def _tenant_metadata(tenant_id: str) -> list[tuple[str, str]]:
    """The identity of a background evaluation: the rule's tenant, no user, no scopes (the
    internal RPCs it calls check the tenant only)."""
    return [(TENANT_HEADER, tenant_id), (USER_HEADER, ""), (SCOPES_HEADER, "")]


def queue_notifications(session: Session, row: AlertRow, change: str, value: float,
                        now) -> int:
    """One outbox row per webhook channel of the rule, in the caller's transaction."""
    event = "alert.firing" if change == FIRING else "alert.resolved"
    payload = webhooks.encode({"event": event, "service": "observability", "value": value,
                           "alert": json_format.MessageToDict(alert_message(row),
                                                              preserving_proto_field_name=True)})
    queued = 0
    for channel in row.channels:
        kind, _, target = channel.partition(":")
        if kind == "webhook":
            session.add(AlertNotificationRow(
                tenant_id=row.tenant_id, alert_id=row.id, url=target, event=event,
                payload=payload, next_attempt_at=now, created_at=now, updated_at=now))
            queued += 1
    return queued


def _targets(session: Session, rows) -> dict[str, tuple[str, str] | str]:
    """Each notification's URL, signed with its rule's current secret; a deleted rule's
    pending notifications end."""
    secrets_by_alert = dict(session.exec(select(AlertRow.id, AlertRow.signing_secret).where(
        AlertRow.id.in_({r.alert_id for r in rows}))).all())
    return {r.id: (r.url, secrets_by_alert[r.alert_id]) if r.alert_id in secrets_by_alert
            else "the alert was deleted" for r in rows}


class Evaluator:
    """Evaluates every enabled rule each round, moves its state and notifies on a change."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.db = runtime.database
        self.sources = Sources(runtime)
        policy = EgressPolicy.from_settings(runtime.settings)
        self.outbox = outbox.Outbox(self.db, AlertNotificationRow, _targets,
                                    sender=WebhookSender(egress=policy), name="alert notification")
        self.rounds = 0
        self.last_round_at = None
        self.last_error = ""

    async def metric(self, row: AlertRow) -> float:
        labels = row.labels
        if set(labels) - LABELS[row.metric]:
            return 0.0  # a label the metric does not have: no series matches
        now = utcnow()
        span = Window(now - timedelta(seconds=row.window_seconds), now)
        metadata = _tenant_metadata(row.tenant_id)
        if row.metric in CALL_METRICS:
            filters = {"agent_id": labels.get("agent_id", ""), "provider": labels.get("provider", "")}
            if row.metric == "active_calls":
                answer = await self.sources.calls(metadata, status="CALL_STATUS_ACTIVE", **filters)
            else:
                answer = await self.sources.calls(metadata, span=span, **filters)
            g = answer.groups[0] if answer.groups else None
            if g is None:
                return 0.0
            return {"calls": g.calls, "active_calls": g.calls, "call_errors": g.failed,
                    "call_error_rate": g.failed / g.ended if g.ended else 0.0,
                    "call_p95_latency_ms": g.p95_ms}[row.metric]
        if row.metric == "workflow_failures":
            answer = await self.sources.executions(metadata, span=span,
                                                   workflow_id=labels.get("workflow_id", ""))
            return float(answer.groups[0].failed) if answer.groups else 0.0

        def count(session: Session) -> int:
            if row.metric == "error_logs":
                query = select(func.count()).select_from(LogRow).where(
                    LogRow.tenant_id == row.tenant_id, LogRow.level.in_(ERROR_LEVELS),
                    LogRow.timestamp >= span.start)
                if labels.get("service"):
                    query = query.where(LogRow.service == labels["service"])
            else:  # error_events, without the alerts' own history
                query = select(func.count()).select_from(EventRow).where(
                    EventRow.tenant_id == row.tenant_id, EventRow.severity.in_(ERROR_SEVERITIES),
                    EventRow.created_at >= span.start, ~EventRow.event_type.startswith("alert."))
                for key in ("source", "event_type"):
                    if labels.get(key):
                        query = query.where(getattr(EventRow, key) == labels[key])
            return session.exec(query).one()

        return float(await self.db.read(count))

    async def evaluate(self, row: AlertRow) -> None:
        value = await self.metric(row)
        holds = _COMPARE[pb.ComparisonOperator.Value(row.operator)](value, row.threshold)
        now = utcnow()
        change = None

        def store(session: Session) -> AlertRow | None:
            nonlocal change
            # The state is read again under a row lock (PostgreSQL), so that of two replicas
            # evaluating the same rule only one moves it and notifies.
            current = session.get(AlertRow, row.id, with_for_update=True)
            if current is None or not current.enabled:
                return None
            was = current.status
            change = FIRING if holds and was != FIRING else \
                RESOLVED if not holds and was == FIRING else None
            current.last_value, current.last_evaluated_at = value, now
            if change == FIRING:
                current.status, current.last_fired_at = FIRING, now
            elif change == RESOLVED:
                current.status, current.last_resolved_at = RESOLVED, now
            session.add(current)
            if change:
                session.add(EventRow(
                    tenant_id=row.tenant_id, event_type="alert." + change.rsplit("_", 1)[1].lower(),
                    source="observability",
                    severity=row.severity if change == FIRING else "SEVERITY_INFO",
                    message=f"alert {row.name!r} {'fired' if change == FIRING else 'resolved'}: "
                            f"{row.metric} = {value:g} ({row.operator.removeprefix('COMPARISON_OPERATOR_').lower()} "
                            f"{row.threshold:g} over {row.window_seconds:g} s)",
                    attributes={"alert_id": row.id, "alert": row.name, "metric": row.metric,
                                "value": value, "threshold": row.threshold,
                                "channels": list(row.channels)},
                    created_at=now, updated_at=now))
            session.flush()
            session.refresh(current)
            if change and not silenced(current, now):  # silenced: the event, no notification
                queue_notifications(session, current, change, value, now)
            session.expunge(current)
            return current

        current = await self.db.write(store)
        if current is not None and change and not silenced(current, now) and any(
                c.startswith("webhook:") for c in current.channels):
            self.outbox.wake()

    async def round(self) -> int:
        rows = await self.db.read(lambda s: list(s.exec(
            select(AlertRow).where(AlertRow.enabled == True))))  # noqa: E712
        for row in rows:
            try:
                await self.evaluate(row)
            except grpc.aio.AioRpcError as exc:
                log.warning("alert %s of tenant %s not evaluated: %s %s", row.name,
                            row.tenant_id, exc.code().name, exc.details())
        return len(rows)

    async def run(self) -> None:
        while True:
            try:
                await self.round()
                self.last_error = ""
            except Exception as exc:  # noqa: BLE001 - retried at the next round
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("alert evaluation round failed")
            self.rounds += 1
            self.last_round_at = utcnow()
            await asyncio.sleep(self.runtime.settings.alert_evaluation_seconds)

    async def close(self) -> None:
        await self.outbox.close()
