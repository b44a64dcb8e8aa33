"""The observability service's repositories and row <-> message: spans (and the traces they
make), events, logs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agentmesh.observability.v1 import observability_pb2 as pb
from mesh.observability.models import EventRow, LogRow, SpanRow
from mesh.runtime.convert import to_message
from mesh.runtime.repository import TenantRepository

events = TenantRepository(EventRow, noun="event", message=pb.Event, name_column=None,
                          search_columns=("message", "event_type"))
logs = TenantRepository(LogRow, noun="log", message=pb.LogEntry, name_column=None,
                        search_columns=("message",), order_columns=("timestamp",),
                        default_order="-timestamp")
spans = TenantRepository(SpanRow, noun="span", name_column=None, order_columns=("started_at",))


def event_message(row: EventRow) -> pb.Event:
    return to_message(row, pb.Event)


def log_message(row: LogRow) -> pb.LogEntry:
    return to_message(row, pb.LogEntry)


def trace_message(trace_id: str, rows: list[SpanRow], tenant_id: str,
                  with_spans: bool) -> pb.Trace:
    """The trace the spans `rows` make: its root, services, duration and status."""
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
        trace.spans.extend(to_message(r, pb.Span) for r in rows)
    return trace


def between(column, request) -> list[Any]:
    """The request's `start_time` / `end_time` bounds on `column`."""
    clauses = []
    if request.HasField("start_time"):
        clauses.append(column >= request.start_time.ToDatetime(tzinfo=UTC))
    if request.HasField("end_time"):
        clauses.append(column <= request.end_time.ToDatetime(tzinfo=UTC))
    return clauses
