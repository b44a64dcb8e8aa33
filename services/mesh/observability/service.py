"""ObservabilityService (traces, events, logs) and the OTLP trace receiver.

Traces arrive over OTLP/gRPC (`opentelemetry.proto.collector.trace.v1.TraceService`, with the
official `opentelemetry-proto` messages: the standard wire format, so any collector can stand in
for this service): from the gateway (Envoy's OpenTelemetry tracer) and from every service
(`mesh.runtime.telemetry`, the SDK's OTLP exporter). Logs arrive from the
services' runtime (`mesh.runtime.logs`) through the internal `IngestLogs`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from google.api import httpbody_pb2
from google.protobuf import json_format
import grpc
from sqlmodel import Session, func, select

from agentmesh.common.v1 import common_pb2 as common
from agentmesh.observability.v1 import observability_pb2 as pb
from agentmesh.observability.v1 import observability_pb2_grpc as pb_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

from mesh.observability.alerts import Evaluator, alert_message, alerts, new_alert
from mesh.observability.analytics import AnalyticsService
from mesh.observability.models import AlertNotificationRow, AlertRow, EventRow, LogRow, SpanRow
from mesh.runtime import audit, internal, live
from mesh.runtime.context import require_caller
from mesh.runtime.convert import to_message, values, writable
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import NotFound, Unavailable, invalid_field
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.repository import TenantRepository
from mesh.runtime.service import Runtime, ServiceDefinition
from mesh.runtime.tables import utcnow
from mesh.runtime.telemetry import SERVICE_NAMESPACE

log = logging.getLogger("mesh.observability")
events = TenantRepository(EventRow, noun="event", message=pb.Event, name_column=None,
                          search_columns=("message", "event_type"))
logs = TenantRepository(LogRow, noun="log", message=pb.LogEntry, name_column=None,
                        search_columns=("message",), order_columns=("timestamp",),
                        default_order="-timestamp")
spans = TenantRepository(SpanRow, noun="span", name_column=None, order_columns=("started_at",))

_KINDS = {0: "SPAN_KIND_UNSPECIFIED", 1: "SPAN_KIND_INTERNAL", 2: "SPAN_KIND_SERVER",
          3: "SPAN_KIND_CLIENT", 4: "SPAN_KIND_PRODUCER", 5: "SPAN_KIND_CONSUMER"}
_STATUS = {0: "SPAN_STATUS_UNSPECIFIED", 1: "SPAN_STATUS_OK", 2: "SPAN_STATUS_ERROR"}
# Attribute names that carry the tenant: ours, and the gateway's custom tag.
_TENANT_KEYS = ("agentmesh.tenant_id", "tenant_id")


def _value(any_value) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value"):
        return json_format.MessageToDict(getattr(any_value, kind))
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, kind)


def _time(nanos: int) -> datetime | None:
    return datetime.fromtimestamp(nanos / 1e9, UTC) if nanos else None


def span_rows(request: otlp.ExportTraceServiceRequest) -> list[SpanRow]:
    rows = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {a.key: _value(a.value) for a in span.attributes}
                tenant = next((str(attributes[k]) for k in _TENANT_KEYS if attributes.get(k)), "")
                # Agent Mesh's short name (`agents`, `gateway`): the runtime's attribute, else
                # the resource's `service.name` without the `agentmesh-` of the platform's own.
                service = str(attributes.get("agentmesh.service")
                              or str(resource.get("service.name", "")).removeprefix(
                                  f"{SERVICE_NAMESPACE}-"))
                rows.append(SpanRow(
                    tenant_id=tenant, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(), name=span.name, service=service,
                    kind=_KINDS.get(span.kind, "SPAN_KIND_UNSPECIFIED"),
                    started_at=_time(span.start_time_unix_nano),
                    ended_at=_time(span.end_time_unix_nano),
                    duration_ms=max(0, span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
                    status=_STATUS.get(span.status.code, "SPAN_STATUS_UNSPECIFIED"),
                    status_message=span.status.message, attributes=attributes))
    return rows


@dataclass
class State:
    """What the observability service knows about itself, for GetHealth."""

    started_at: datetime = field(default_factory=utcnow)
    spans_received: int = 0
    spans_refused: int = 0  # Exports without the platform's internal token
    last_export_at: datetime | None = None
    logs_received: int = 0
    last_ingest_at: datetime | None = None
    retention_last_run_at: datetime | None = None
    retention_removed: int = 0
    retention_error: str = ""
    evaluator: Evaluator | None = None
    tasks: list = field(default_factory=list)


_states: dict[int, State] = {}


def state_of(runtime: Runtime) -> State:
    return _states.setdefault(id(runtime), State())


class TraceReceiver(otlp_grpc.TraceServiceServicer):
    """OTLP/gRPC trace receiver (the official `TraceService`): stores the spans the platform's
    own exporters send.

    A span is filed under the tenant its attributes name, which is to be trusted only from the
    platform's own exporters: the services' runtime sets `agentmesh.tenant_id` and the gateway
    its `tenant_id` tag, both from the identity the gateway verified. So an Export must present
    the platform's internal token (`mesh.runtime.internal`, compared in constant time); anything
    else that reaches this port is refused UNAUTHENTICATED and nothing is stored."""

    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.state = state_of(runtime)
        self.token = internal.token(runtime.settings)

    async def Export(self, request: otlp.ExportTraceServiceRequest, context):
        presented = dict(context.invocation_metadata() or ()).get(internal.HEADER, "")
        if not internal.verify(presented, self.token):
            self.state.spans_refused += 1
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "spans are accepted only from the platform's own exporters")
        rows = span_rows(request)
        if rows:
            now = utcnow()

            def store(session: Session) -> None:
                for row in rows:
                    row.created_at = row.updated_at = now
                session.add_all(rows)

            try:
                await self.db.write(store)
            except Exception:  # noqa: BLE001 - an exporter retries; never a stack trace out
                log.exception("could not store %d spans", len(rows))
                await context.abort(grpc.StatusCode.UNAVAILABLE, "spans not stored; retry")
            self.state.spans_received += len(rows)
            self.state.last_export_at = now
        return otlp.ExportTraceServiceResponse()

    def handler(self) -> grpc.GenericRpcHandler:
        """The generated registration's handler, without the runtime's wrapper: OTLP carries
        none of the contract's annotations, and its Export must not make spans of its own."""
        service = otlp.DESCRIPTOR.services_by_name["TraceService"]
        return grpc.method_handlers_generic_handler(service.full_name, {
            "Export": grpc.unary_unary_rpc_method_handler(
                self.Export, otlp.ExportTraceServiceRequest.FromString,
                otlp.ExportTraceServiceResponse.SerializeToString)})


def _span(row: SpanRow) -> pb.Span:
    return to_message(row, pb.Span)


def _trace(trace_id: str, rows: list[SpanRow], tenant_id: str, with_spans: bool) -> pb.Trace:
    rows = sorted(rows, key=lambda r: r.started_at or datetime.min.replace(tzinfo=UTC))
    ids = {r.span_id for r in rows}
    root = next((r for r in rows if not r.parent_span_id or r.parent_span_id not in ids), rows[0])
    start = min(r.started_at for r in rows if r.started_at)
    end = max(r.ended_at for r in rows if r.ended_at)
    failed = any(r.status == "SPAN_STATUS_ERROR" for r in rows)
    trace = pb.Trace(trace_id=trace_id, tenant_id=tenant_id, root_span_name=root.name,
                     services=sorted({r.service for r in rows if r.service}),
                     span_count=len(rows), duration_ms=(end - start).total_seconds() * 1000,
                     status="SPAN_STATUS_ERROR" if failed else "SPAN_STATUS_OK")
    trace.started_at.FromDatetime(start)
    if with_spans:
        trace.spans.extend(_span(r) for r in rows)
    return trace


def _between(column, request) -> list[Any]:
    clauses = []
    if request.HasField("start_time"):
        clauses.append(column >= request.start_time.ToDatetime(tzinfo=UTC))
    if request.HasField("end_time"):
        clauses.append(column <= request.end_time.ToDatetime(tzinfo=UTC))
    return clauses


def _scrape(url: str) -> str:
    from mesh.runtime.metrics import scrape

    try:
        return scrape(url, timeout=2)
    except OSError as exc:
        log.warning("metrics target %s unreachable: %s", url, exc)
        return ""


class ObservabilityService(pb_grpc.ObservabilityServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.runtime = runtime
        self.state = state_of(runtime)
        self.targets = [t.strip() for t in runtime.settings.metrics_targets.split(",") if t.strip()]
        self.egress = EgressPolicy.from_settings(runtime.settings)

    # ---- metrics ---------------------------------------------------------------------------
    async def _prometheus_text(self) -> str:
        """Every process's metrics and the gateway's; this process's own registry when no
        targets are configured (one process serving every service)."""
        if not self.targets:
            from prometheus_client import REGISTRY, generate_latest

            return generate_latest(REGISTRY).decode()
        texts = await asyncio.gather(*(asyncio.to_thread(_scrape, t) for t in self.targets))
        return "\n".join(t.strip() for t in texts if t.strip()) + "\n"

    async def GetPrometheusMetrics(self, request, context) -> httpbody_pb2.HttpBody:
        text = await self._prometheus_text()
        return httpbody_pb2.HttpBody(content_type="text/plain; version=0.0.4; charset=utf-8",
                                     data=text.encode())

    async def GetMetrics(self, request: pb.GetMetricsRequest, context) -> pb.Metrics:
        """The same numbers as GET /metrics, as JSON: one point (now) per series."""
        from prometheus_client.parser import text_string_to_metric_families

        require_caller(context)
        text = await self._prometheus_text()
        now = utcnow()
        wanted = set(request.names)
        metrics = pb.Metrics()
        metrics.start_time.FromDatetime(now)
        metrics.end_time.FromDatetime(now)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if wanted and sample.name not in wanted and family.name not in wanted:
                    continue
                if request.service and sample.labels.get("service") != request.service:
                    continue
                series = metrics.series.add(name=sample.name, labels=sample.labels,
                                            unit=family.unit or "")
                point = series.points.add(value=float(sample.value))
                point.timestamp.FromDatetime(now)
        return metrics

    # ---- traces ----------------------------------------------------------------------------
    async def ListTraces(self, request: pb.ListTracesRequest, context) -> pb.ListTracesResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        if request.order_by not in ("", "-started_at", "started_at"):
            raise invalid_field("order_by", "use started_at or -started_at")

        def query(session: Session) -> Page[pb.Trace]:
            mine = select(SpanRow.trace_id).where(SpanRow.tenant_id == caller.tenant_id)
            if request.service:
                mine = mine.where(SpanRow.service == request.service)
            grouped = (select(SpanRow.trace_id, func.min(SpanRow.started_at).label("start"),
                              (func.max(SpanRow.duration_ms)).label("longest"),
                              func.max(sa.case((SpanRow.status == "SPAN_STATUS_ERROR", 1),
                                               else_=0)).label("failed"))
                       .where(SpanRow.trace_id.in_(mine.distinct()),
                              SpanRow.tenant_id == caller.tenant_id)
                       .group_by(SpanRow.trace_id))
            having = []
            if request.min_duration_ms:
                having.append(func.max(SpanRow.duration_ms) >= request.min_duration_ms)
            if request.status == pb.SPAN_STATUS_ERROR:
                having.append(func.max(sa.case((SpanRow.status == "SPAN_STATUS_ERROR", 1),
                                               else_=0)) == 1)
            elif request.status == pb.SPAN_STATUS_OK:
                having.append(func.max(sa.case((SpanRow.status == "SPAN_STATUS_ERROR", 1),
                                               else_=0)) == 0)
            if request.HasField("start_time"):
                having.append(func.min(SpanRow.started_at) >= request.start_time.ToDatetime(tzinfo=UTC))
            if request.HasField("end_time"):
                having.append(func.min(SpanRow.started_at) <= request.end_time.ToDatetime(tzinfo=UTC))
            if having:
                grouped = grouped.having(*having)
            sub = grouped.subquery()
            total = session.exec(select(func.count()).select_from(sub)).one()
            order = sub.c.start.asc() if request.order_by == "started_at" else sub.c.start.desc()
            ids = list(session.exec(select(sub.c.trace_id).order_by(order)
                                    .offset(page.offset).limit(page.page_size)))
            found: dict[str, list[SpanRow]] = {i: [] for i in ids}
            for row in session.exec(select(SpanRow).where(SpanRow.trace_id.in_(ids),
                                                          SpanRow.tenant_id == caller.tenant_id)):
                found[row.trace_id].append(row)
            if request.root_span_name:
                found = {k: v for k, v in found.items()
                         if _trace(k, v, caller.tenant_id, False).root_span_name == request.root_span_name}
            items = [_trace(i, found[i], caller.tenant_id, False) for i in ids if i in found]
            return Page(items, total, page.page, page.page_size)

        result = await self.db.read(query)
        return pb.ListTracesResponse(**result.fields())

    async def GetTrace(self, request: pb.GetTraceRequest, context) -> pb.Trace:
        caller = require_caller(context)
        trace_id = request.trace_id.lower()
        if not trace_id:
            raise invalid_field("trace_id", "is required")

        def query(session: Session) -> list[SpanRow]:
            # Only the caller's spans: a trace id is chosen by whoever sends `traceparent`, so
            # another tenant's spans may share it.
            return list(session.exec(select(SpanRow).where(
                SpanRow.trace_id == trace_id, SpanRow.tenant_id == caller.tenant_id)))

        rows = await self.db.read(query)
        if not rows:
            raise NotFound(f"trace {trace_id!r} not found", reason="TRACE_NOT_FOUND",
                           details={"trace_id": trace_id})
        return _trace(trace_id, rows, caller.tenant_id, True)

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
        return to_message(await self.db.write(lambda s: events.add(s, row)), pb.Event)

    async def ListEvents(self, request: pb.ListEventsRequest, context) -> pb.ListEventsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        severity = pb.Severity.Name(request.severity) if request.severity else None
        result = await self.db.read(lambda s: events.list(
            s, caller.tenant_id, page, search=request.search,
            filters={"event_type": request.event_type, "source": request.source,
                     "severity": severity, "correlation_id": request.correlation_id,
                     "trace_id": request.trace_id},
            where=tuple(_between(EventRow.created_at, request))))
        return pb.ListEventsResponse(**result.fields(lambda r: to_message(r, pb.Event)))

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
            self.state.logs_received += len(rows)
            self.state.last_ingest_at = now
        return pb.IngestLogsResponse(stored=len(rows))

    async def ListLogs(self, request: pb.ListLogsRequest, context) -> pb.ListLogsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        where = list(_between(LogRow.timestamp, request))
        if request.level:  # a level and everything more severe
            names = [pb.LogLevel.Name(v) for v in pb.LogLevel.values() if v >= request.level]
            where.append(LogRow.level.in_(names))
        result = await self.db.read(lambda s: logs.list(
            s, caller.tenant_id, page, search=request.search, where=tuple(where),
            filters={"service": request.service, "correlation_id": request.correlation_id,
                     "trace_id": request.trace_id}))
        return pb.ListLogsResponse(**result.fields(lambda r: to_message(r, pb.LogEntry)))

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

    # ---- health ----------------------------------------------------------------------------
    async def GetHealth(self, request, context) -> common.HealthResponse:
        import time
        from importlib.metadata import PackageNotFoundError, version

        state = self.state
        components: list[common.ServiceHealth] = []
        started = time.perf_counter()
        try:
            # A probe answers in the time of one round trip, however much is stored (what was
            # taken in is in the receiver's and ingest's figures below).
            await self.db.read(lambda s: s.exec(select(1)).one())
            database = common.ServiceHealth(name="database", status="healthy")
        except Exception as exc:  # noqa: BLE001 - the report names it
            database = common.ServiceHealth(name="database", status="unhealthy",
                                        message=f"{type(exc).__name__}: {exc}"[:500])
        database.latency_ms = (time.perf_counter() - started) * 1000
        components.append(database)

        def stamp(value: datetime | None) -> str:
            return value.isoformat() if value else ""

        receiver = common.ServiceHealth(name="otlp-receiver", status="healthy")
        receiver.details.update({"spans_received": state.spans_received,
                                 "exports_refused": state.spans_refused,
                                 "last_export_at": stamp(state.last_export_at)})
        ingest = common.ServiceHealth(name="log-ingest", status="healthy")
        ingest.details.update({"records_received": state.logs_received,
                               "last_ingest_at": stamp(state.last_ingest_at)})
        settings = self.runtime.settings
        retention = common.ServiceHealth(name="retention", status="unhealthy" if state.retention_error
                                     else "healthy", message=state.retention_error)
        retention.details.update({"retention_days": settings.retention_days,
                                  "interval_seconds": settings.retention_prune_seconds,
                                  "last_run_at": stamp(state.retention_last_run_at),
                                  "rows_removed": state.retention_removed})
        components += [receiver, ingest, retention]
        evaluator = state.evaluator
        if evaluator is not None:
            alive = bool(state.tasks) and not any(t.done() for t in state.tasks)
            problem = evaluator.last_error or ("" if alive else "background tasks stopped")
            check = common.ServiceHealth(name="alert-evaluator",
                                     status="unhealthy" if problem else "healthy", message=problem)
            check.details.update({"interval_seconds": settings.alert_evaluation_seconds,
                                  "rounds": evaluator.rounds,
                                  "last_round_at": stamp(evaluator.last_round_at),
                                  "notifications_pending": await evaluator.outbox.pending()})
            components.append(check)
        failing = [c.name for c in components if c.status != "healthy"]
        try:
            release = version("agentmesh")
        except PackageNotFoundError:
            release = ""
        if "database" in failing:
            raise Unavailable("the observability service is unhealthy", reason="UNHEALTHY",
                              details={"status": "unhealthy", "failing": ",".join(failing)})
        out = common.HealthResponse(status="degraded" if failing else "healthy",
                                service="observability", version=release, services=components)
        out.timestamp.FromDatetime(utcnow())
        return out


def prune(session: Session, before: datetime) -> int:
    """Deletes spans, logs, events and ended alert notifications older than `before`; how
    many rows went."""
    removed = 0
    for table, column in ((SpanRow, SpanRow.created_at), (LogRow, LogRow.timestamp),
                          (EventRow, EventRow.created_at)):
        removed += session.execute(sa.delete(table).where(column < before)).rowcount
    removed += session.execute(sa.delete(AlertNotificationRow).where(
        AlertNotificationRow.created_at < before,
        AlertNotificationRow.status != "pending")).rowcount
    return removed


async def _keep_pruning(runtime: Runtime) -> None:
    """Retention: every `AGENTMESH_RETENTION_PRUNE_SECONDS`, rows older than
    `AGENTMESH_RETENTION_DAYS` go, so storage does not grow without bound."""
    from datetime import timedelta

    settings = runtime.settings
    state = state_of(runtime)
    while True:
        try:
            # The runtime configuration (PUT /api/v1/system/config, `retention.days`) wins
            # over the setting the process started with.
            days = float(live.value("retention", "days", settings.retention_days))
            before = utcnow() - timedelta(days=days)
            removed = await runtime.database.write(lambda s: prune(s, before))
            state.retention_last_run_at, state.retention_error = utcnow(), ""
            state.retention_removed += removed
            if removed:
                log.info("retention: removed %d spans, logs and events older than %s",
                         removed, before.isoformat())
        except Exception as exc:  # noqa: BLE001 - retried at the next round
            state.retention_error = f"{type(exc).__name__}: {exc}"[:500]
            log.exception("retention round failed")
        await asyncio.sleep(settings.retention_prune_seconds)


async def _start(runtime: Runtime) -> None:
    state = state_of(runtime)
    state.evaluator = Evaluator(runtime)
    loop = asyncio.get_running_loop()
    state.tasks = [loop.create_task(_keep_pruning(runtime)),
                   loop.create_task(state.evaluator.run())]
    state.evaluator.outbox.start()  # also sends what was queued before a restart


async def _stop(runtime: Runtime) -> None:
    state = _states.pop(id(runtime), None)
    if state is None:
        return
    for task in state.tasks:
        task.cancel()
    await asyncio.gather(*state.tasks, return_exceptions=True)
    if state.evaluator is not None:
        await state.evaluator.close()


DEFINITION = ServiceDefinition("observability",
                               servicers=[ObservabilityService, AnalyticsService],
                               extra_handlers=lambda runtime: [TraceReceiver(runtime).handler()],
                               tables=[SpanRow, EventRow, LogRow, AlertRow,
                                       AlertNotificationRow],
                               on_start=_start, on_stop=_stop)
