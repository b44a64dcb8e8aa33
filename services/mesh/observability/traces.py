"""Traces of the caller's tenant: listed with their filters (grouped in SQL, one page of trace
ids, then their spans), or one whole."""

from __future__ import annotations

from datetime import UTC

import sqlalchemy as sa
from sqlmodel import Session, func, select

from agentmesh.observability.v1 import observability_pb2 as pb
from mesh.observability.models import SpanRow
from mesh.observability.store import trace_message
from mesh.runtime.errors import NotFound, invalid_field
from mesh.runtime.paging import Page, PageRequest

_FAILED = sa.case((SpanRow.status == "SPAN_STATUS_ERROR", 1), else_=0)


def check_order(order_by: str) -> None:
    if order_by not in ("", "-started_at", "started_at"):
        raise invalid_field("order_by", "use started_at or -started_at")


def list_traces(session: Session, tenant_id: str, request: pb.ListTracesRequest,
                page: PageRequest) -> Page[pb.Trace]:
    mine = select(SpanRow.trace_id).where(SpanRow.tenant_id == tenant_id)
    if request.service:
        mine = mine.where(SpanRow.service == request.service)
    subject = request.call_id or request.execution_id
    if subject:
        mine = mine.where(SpanRow.subject_id == subject)
    grouped = (select(SpanRow.trace_id, func.min(SpanRow.started_at).label("start"),
                      (func.max(SpanRow.duration_ms)).label("longest"),
                      func.max(_FAILED).label("failed"))
               .where(SpanRow.trace_id.in_(mine.distinct()), SpanRow.tenant_id == tenant_id)
               .group_by(SpanRow.trace_id))
    having = []
    if request.min_duration_ms:
        having.append(func.max(SpanRow.duration_ms) >= request.min_duration_ms)
    if request.status == pb.SPAN_STATUS_ERROR:
        having.append(func.max(_FAILED) == 1)
    elif request.status == pb.SPAN_STATUS_OK:
        having.append(func.max(_FAILED) == 0)
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
                                                  SpanRow.tenant_id == tenant_id)):
        found[row.trace_id].append(row)
    if request.root_span_name:
        found = {k: v for k, v in found.items()
                 if trace_message(k, v, tenant_id, False).root_span_name == request.root_span_name}
    items = [trace_message(i, found[i], tenant_id, False) for i in ids if i in found]
    return Page(items, total, page.page, page.page_size)


def get_trace(session: Session, tenant_id: str, trace_id: str) -> pb.Trace:
    # Only the caller's spans: a trace id is chosen by whoever sends `traceparent`, so
    # another tenant's spans may share it.
    rows = list(session.exec(select(SpanRow).where(
        SpanRow.trace_id == trace_id, SpanRow.tenant_id == tenant_id)))
    if not rows:
        raise NotFound(f"trace {trace_id!r} not found", reason="TRACE_NOT_FOUND",
                       details={"trace_id": trace_id})
    return trace_message(trace_id, rows, tenant_id, True)
