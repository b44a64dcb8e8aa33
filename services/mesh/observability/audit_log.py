"""The audit trail as the tenant and the operator read it (docs/observability.md "Audit"):
events forwarded by every service (mesh.runtime.audit), stored once by id; listed with filters
and pages, per tenant or across tenants; exported as JSON Lines; pruned after
`AGENTMESH_AUDIT_RETENTION_DAYS`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from google.protobuf import json_format, struct_pb2
from sqlmodel import Session, select

from agentmesh.observability.v1 import observability_pb2 as pb
from mesh.observability.models import AuditRow
from mesh.runtime.db import Database, in_turns
from mesh.runtime.errors import invalid_field
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.tables import utcnow

EXPORT_LIMIT = 100_000


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return utcnow()
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# Which of a forward's events are stored already: built once, run as SQL (a forward of a few
# events spent more building the ORM statement than running it).
_KNOWN = sa.select(AuditRow.__table__.c.id).where(
    AuditRow.__table__.c.id.in_(sa.bindparam("ids", expanding=True)))


async def ingest(db: Database, events: list[struct_pb2.Struct]) -> int:
    """Stores the events not stored yet (a forward may be repeated: at least once)."""
    return await store(db, [json_format.MessageToDict(e) for e in events])


async def store(db: Database, events: list[dict[str, Any]]) -> int:
    """`ingest` of events as dicts (`mesh.runtime.audit.as_dict`): what the forwarder of this
    process hands over without a call (mesh.runtime.local)."""
    items = [i for i in events if i.get("id") and i.get("tenant_id")]
    if not items:
        return 0

    def store(session: Session, items: Sequence[dict[str, Any]]) -> int:
        known = set(session.connection().execute(
            _KNOWN, {"ids": [i["id"] for i in items]}).scalars())
        rows = []
        for item in items:
            if item["id"] in known:
                continue
            known.add(item["id"])
            at = _time(item.get("created_at", ""))
            rows.append(dict(
                id=item["id"], tenant_id=item["tenant_id"], actor=item.get("actor", ""),
                api_key_id=item.get("api_key_id", ""), service=item.get("service", ""),
                action=item.get("action", ""), resource_type=item.get("resource_type", ""),
                resource_id=item.get("resource_id", ""),
                correlation_id=item.get("correlation_id", ""), before=item.get("before"),
                after=item.get("after"), details=item.get("details") or {},
                created_at=at, updated_at=at))
        if rows:  # values, not ORM objects: a forward brings hundreds (as spans are stored)
            session.execute(sa.insert(AuditRow.__table__), rows)
        return len(rows)

    stored = 0
    async for part in in_turns(items):
        stored += await db.write(lambda session: store(session, part), inline=True)
    return stored


def _where(request, tenant_id: str | None) -> list[Any]:
    """The filters of a ListAuditEvents, ExportAuditEvents or ListPlatformAuditEvents request."""
    start = request.start_time.ToDatetime(UTC) if request.HasField("start_time") else None
    end = request.end_time.ToDatetime(UTC) if request.HasField("end_time") else None
    if start and end and end < start:
        raise invalid_field("end_time", "precedes start_time")
    where: list[Any] = []
    if tenant_id:
        where.append(AuditRow.tenant_id == tenant_id)
    if request.actor:
        where.append(sa.or_(AuditRow.actor == request.actor,
                            AuditRow.api_key_id == request.actor))
    for column, value in ((AuditRow.resource_type, request.resource_type),
                          (AuditRow.resource_id, request.resource_id),
                          (AuditRow.service, request.service),
                          (AuditRow.correlation_id, request.correlation_id)):
        if value:
            where.append(column == value)
    if request.action.endswith("*"):
        where.append(AuditRow.action.startswith(request.action[:-1]))
    elif request.action:
        where.append(AuditRow.action == request.action)
    if start:
        where.append(AuditRow.created_at >= start)
    if end:
        where.append(AuditRow.created_at < end)
    return where


def message(row: AuditRow) -> pb.AuditEvent:
    event = pb.AuditEvent(id=row.id, tenant_id=row.tenant_id, actor=row.actor,
                          api_key_id=row.api_key_id, service=row.service, action=row.action,
                          resource_type=row.resource_type, resource_id=row.resource_id,
                          correlation_id=row.correlation_id)
    if row.before is not None:
        event.before.update(row.before)
    if row.after is not None:
        event.after.update(row.after)
    event.details.update(row.details or {})
    event.created_at.FromDatetime(row.created_at)
    return event


async def page(db: Database, request, tenant_id: str | None) -> pb.ListAuditEventsResponse:
    """One page, newest first: the tenant's (`tenant_id`), or every tenant's (None, or the
    request's `tenant_id`)."""
    paging = PageRequest.of(request)
    where = _where(request, tenant_id or getattr(request, "tenant_id", "") or None)

    def read(session: Session) -> Page:
        total = session.exec(select(sa.func.count()).select_from(AuditRow).where(*where)).one()
        rows = session.exec(select(AuditRow).where(*where).order_by(
            AuditRow.created_at.desc(), AuditRow.id.desc())
            .offset(paging.offset).limit(paging.page_size)).all()
        return Page([message(r) for r in rows], total, paging.page, paging.page_size)

    result = await db.read(read)
    return pb.ListAuditEventsResponse(**result.fields())


async def export(db: Database, request: pb.ExportAuditEventsRequest, tenant_id: str) -> bytes:
    """The tenant's matching events as JSON Lines, oldest first."""
    where = _where(request, tenant_id)

    def read(session: Session) -> list[AuditRow]:
        return list(session.exec(select(AuditRow).where(*where).order_by(
            AuditRow.created_at, AuditRow.id).limit(EXPORT_LIMIT)).all())

    rows = await db.read(read)
    lines = (json.dumps(json_format.MessageToDict(message(r), preserving_proto_field_name=True),
                        separators=(",", ":"), ensure_ascii=False) for r in rows)
    return ("\n".join(lines) + ("\n" if rows else "")).encode()


def prune(session: Session, days: float) -> int:
    """Deletes events older than `days`; how many."""
    before = utcnow() - timedelta(days=days)
    return session.execute(sa.delete(AuditRow).where(AuditRow.created_at < before)).rowcount
