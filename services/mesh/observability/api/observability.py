"""ObservabilityService: metrics, traces, events, logs (and their internal ingest), alert rules
and the service's own health. Spans arrive through the OTLP receiver (api/otlp.py)."""

from __future__ import annotations

from datetime import UTC

from google.api import httpbody_pb2
from google.protobuf import json_format
from sqlmodel import Session

from agentmesh.common.v1 import common_pb2 as common
from agentmesh.observability.v1 import observability_pb2 as pb
from agentmesh.observability.v1 import observability_pb2_grpc as pb_grpc
from mesh.observability import alerts as alert_rules
from mesh.observability import audit_log, health, metrics, traces
from mesh.observability.alerts import alert_message, alerts, new_alert
from mesh.observability.models import AlertRow, EventRow, LogRow
from mesh.observability.state import ObservabilityState
from mesh.observability.store import between, event_message, events, log_message, logs
from mesh.runtime import audit
from mesh.runtime.context import require_caller
from mesh.runtime.convert import values, writable
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import invalid_field
from mesh.runtime.paging import PageRequest
from mesh.runtime.service import Runtime
from mesh.runtime.tables import utcnow


class ObservabilityService(pb_grpc.ObservabilityServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.state: ObservabilityState = runtime.state
        self.targets = [t.strip() for t in runtime.settings.metrics_targets.split(",") if t.strip()]
        self.egress = EgressPolicy.from_settings(runtime.settings)
        # The audit events of this process's services, as dicts, without Structs both ways.
        runtime.receivers["audit"] = lambda events: audit_log.store(self.db, list(events))

    # ---- the audit trail (mesh.observability.audit_log) ---------------------------------------
    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest,
                              context) -> pb.ListAuditEventsResponse:
        caller = require_caller(context)
        return await audit_log.page(self.db, request, caller.tenant_id)

    async def ExportAuditEvents(self, request: pb.ExportAuditEventsRequest,
                                context) -> httpbody_pb2.HttpBody:
        caller = require_caller(context)
        # JSON Lines as text: generators (openapi-python-client) know no NDJSON media type.
        return httpbody_pb2.HttpBody(content_type="text/plain; charset=utf-8",
                                     data=await audit_log.export(self.db, request,
                                                                 caller.tenant_id))

    async def ListPlatformAuditEvents(self, request: pb.ListPlatformAuditEventsRequest,
                                      context) -> pb.ListAuditEventsResponse:
        require_caller(context)  # platform:read, checked by the gateway
        return await audit_log.page(self.db, request, None)

    async def IngestAuditEvents(self, request: pb.IngestAuditEventsRequest,
                                context) -> pb.IngestAuditEventsResponse:
        return pb.IngestAuditEventsResponse(stored=await audit_log.ingest(self.db,
                                                                          list(request.events)))

    # ---- metrics ---------------------------------------------------------------------------
    async def GetPrometheusMetrics(self, request, context) -> httpbody_pb2.HttpBody:
        text = await metrics.prometheus_text(self.targets)
        return httpbody_pb2.HttpBody(content_type="text/plain; version=0.0.4; charset=utf-8",
                                     data=text.encode())

    async def GetMetrics(self, request: pb.GetMetricsRequest, context) -> pb.Metrics:
        """The same numbers as GET /metrics, as JSON: one point (now) per series."""
        require_caller(context)
        return metrics.as_json(await metrics.prometheus_text(self.targets), request)

    # ---- traces ----------------------------------------------------------------------------
    async def ListTraces(self, request: pb.ListTracesRequest, context) -> pb.ListTracesResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        traces.check_order(request.order_by)
        result = await self.db.read(lambda s: traces.list_traces(s, caller.tenant_id, request,
                                                                 page))
        return pb.ListTracesResponse(**result.fields())

    async def GetTrace(self, request: pb.GetTraceRequest, context) -> pb.Trace:
        caller = require_caller(context)
        trace_id = request.trace_id.lower()
        if not trace_id:
            raise invalid_field("trace_id", "is required")
        return await self.db.read(lambda s: traces.get_trace(s, caller.tenant_id, trace_id))

    # ---- events ----------------------------------------------------------------------------
    async def CreateEvent(self, request: pb.CreateEventRequest, context) -> pb.Event:
        caller = require_caller(context)
        fields = values(request.event, writable(pb.Event))
        if not fields["event_type"]:
            raise invalid_field("event.event_type", "is required")
        if not fields["message"]:
            raise invalid_field("event.message", "is required")
        fields["severity"] = fields["severity"] if request.event.severity else "SEVERITY_INFO"
        fields["correlation_id"] = fields["correlation_id"] or caller.correlation_id
        row = EventRow(tenant_id=caller.tenant_id, **fields)
        return event_message(await self.db.write(lambda s: events.add(s, row)))

    async def ListEvents(self, request: pb.ListEventsRequest, context) -> pb.ListEventsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        severity = pb.Severity.Name(request.severity) if request.severity else None
        result = await self.db.read(lambda s: events.list(
            s, caller.tenant_id, page, search=request.search,
            filters={"event_type": request.event_type, "source": request.source,
                     "severity": severity, "correlation_id": request.correlation_id,
                     "trace_id": request.trace_id},
            where=tuple(between(EventRow.created_at, request))))
        return pb.ListEventsResponse(**result.fields(event_message))

    # ---- logs ------------------------------------------------------------------------------
    async def IngestLogs(self, request: pb.IngestLogsRequest, context) -> pb.IngestLogsResponse:
        now = utcnow()
        rows = [LogRow(tenant_id=e.tenant_id, level=pb.LogLevel.Name(e.level),
                       service=e.service, message=e.message[:8000],
                       correlation_id=e.correlation_id, trace_id=e.trace_id,
                       attributes=json_format.MessageToDict(e.attributes),
                       timestamp=e.timestamp.ToDatetime(tzinfo=UTC) if e.HasField("timestamp") else now,
                       created_at=now, updated_at=now)
                for e in request.entries]

        def store(session: Session) -> None:
            session.add_all(rows)

        if rows:
            await self.db.write(store)
            self.state.intake.logs_received += len(rows)
            self.state.intake.last_ingest_at = now
        return pb.IngestLogsResponse(stored=len(rows))

    async def ListLogs(self, request: pb.ListLogsRequest, context) -> pb.ListLogsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        where = list(between(LogRow.timestamp, request))
        if request.level:  # a level and everything more severe
            names = [pb.LogLevel.Name(v) for v in pb.LogLevel.values() if v >= request.level]
            where.append(LogRow.level.in_(names))
        result = await self.db.read(lambda s: logs.list(
            s, caller.tenant_id, page, search=request.search, where=tuple(where),
            filters={"service": request.service, "correlation_id": request.correlation_id,
                     "trace_id": request.trace_id}))
        return pb.ListLogsResponse(**result.fields(log_message))

    # ---- alerts ----------------------------------------------------------------------------
    async def CreateAlert(self, request: pb.CreateAlertRequest, context) -> pb.Alert:
        caller = require_caller(context)
        row = new_alert(request, caller.tenant_id, caller.user_id)
        # A channel to an internal address is refused now (403 EGRESS_DENIED); each
        # notification is checked again when it connects.
        for channel in row.channels:
            kind, _, target = channel.partition(":")
            if kind == "webhook":
                await self.egress.check_url(target)

        def add(session: Session) -> AlertRow:
            added = alerts.add(session, row)
            audit.record(session, caller, "create", "alert", added.id, name=added.name,
                         metric=added.metric)
            return added

        return alert_message(await self.db.write(add), with_secret=True)

    async def ListAlerts(self, request: pb.ListAlertsRequest, context) -> pb.ListAlertsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        where = []
        if request.status == pb.ALERT_STATUS_DISABLED:
            where.append(AlertRow.enabled == False)  # noqa: E712
        elif request.status:
            where += [AlertRow.enabled == True,  # noqa: E712
                      AlertRow.status == pb.AlertStatus.Name(request.status)]
        severity = pb.Severity.Name(request.severity) if request.severity else None
        result = await self.db.read(lambda s: alerts.list(
            s, caller.tenant_id, page, search=request.search, where=tuple(where),
            filters={"severity": severity}))
        return pb.ListAlertsResponse(**result.fields(alert_message))

    async def GetAlert(self, request: pb.GetAlertRequest, context) -> pb.Alert:
        caller = require_caller(context)
        return alert_message(await self.db.read(
            lambda s: alerts.get(s, caller.tenant_id, request.alert_id)))

    async def UpdateAlert(self, request: pb.UpdateAlertRequest, context) -> pb.Alert:
        caller = require_caller(context)
        mask = list(request.update_mask.paths)
        current = await self.db.read(lambda s: alerts.get(s, caller.tenant_id, request.alert_id))
        checked, fields = alert_rules.updated_alert(current, request.alert, mask)
        for channel in checked.channels if "channels" in fields else ():
            kind, _, target = channel.partition(":")
            if kind == "webhook":
                await self.egress.check_url(target)

        def apply(session: Session) -> AlertRow:
            row = alerts.get(session, caller.tenant_id, request.alert_id, lock=True)
            alert_rules.apply_update(row, checked, fields)
            return alerts.save(session, row)
        return alert_message(await self.db.write(apply))

    async def SilenceAlert(self, request: pb.SilenceAlertRequest, context) -> pb.Alert:
        caller = require_caller(context)
        until = alert_rules.silence_until(request.duration)

        def apply(session: Session) -> AlertRow:
            row = alerts.get(session, caller.tenant_id, request.alert_id, lock=True)
            row.silenced_until = until
            return alerts.save(session, row)
        return alert_message(await self.db.write(apply))

    async def DeleteAlert(self, request: pb.DeleteAlertRequest, context) -> common.DeleteResponse:
        caller = require_caller(context)
        name = await self.db.write(lambda s: alerts.remove(
            s, alerts.get(s, caller.tenant_id, request.alert_id, lock=True), caller))
        return common.DeleteResponse(success=True, message=f"alert {name!r} deleted")

    # ---- health ----------------------------------------------------------------------------
    async def GetHealth(self, request, context) -> common.HealthResponse:
        state = self.state
        return await health.report(self.db, state.runtime.settings, state.intake,
                                   state.retention, state.evaluator, state.tasks)
