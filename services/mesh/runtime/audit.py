"""The audit trail every service keeps, designed once here: one row per mutation, written in the
same transaction as the mutation itself, so a change is never recorded without happening or
happen unrecorded; then forwarded to the observability service, which the tenant (and the
operator, across tenants) reads (`GET /api/v1/observability/audit`, docs/observability.md).

**Captured without service code.** A SQLAlchemy `before_flush` hook (`install()`, done once by
the runtime) turns every insert, update and delete of a tenant table's row, made while serving
a call, into an event: the actor (the caller's user, and the API key when the call came with
one), tenant, service, `action` (`<resource>.create|update|delete`), resource type and id,
correlation id, and the row `before` and `after` the change (changed columns only for an
update) with secrets masked (`mesh.runtime.redaction.mask_record`: columns named like a secret,
and every secret value this process revealed). A table that is itself a record (decisions,
executions' progress, spans, deliveries, sessions ...) says `__audit__ = False`; one whose
rows carry more than the caller's change names the columns an event shows in `__audit_columns__`.

**Explicit events** for what is not a row change (a login, a revealed secret, a decision) or
where a service wants its own words:

    def apply(session):
        row = skills.add(session, SkillRow(...))
        audit.record(session, caller, "create", "skill", row.id)
        return row

An explicit event for a resource replaces the captured one of the same flush (one event per
change).

**Forwarding** (`Forwarder`, started by the runtime in every service with observability as a
peer): the outbox pattern of `mesh.runtime.outbox` over this table — rows not forwarded yet are
claimed with a lease (SKIP LOCKED on PostgreSQL), sent in batches to observability's internal
`IngestAuditEvents`, then marked forwarded. At least once; observability stores each event once,
by its id. Forwarded rows are deleted from the service's table after
`AGENTMESH_AUDIT_LOCAL_RETENTION_DAYS`; observability keeps them `AGENTMESH_AUDIT_RETENTION_DAYS`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.orm import attributes
from sqlmodel import Field, Session, SQLModel, select

from mesh.runtime.context import (Caller, caller_from, correlation_id, current_call,
                                  current_service)
from mesh.runtime.db import pause
from mesh.runtime.tables import TenantTable, json_field, new_id, timestamp_field, utcnow
from mesh.runtime.wakeups import OUTBOX_SETTLE_SECONDS, Waiter, mark

log = logging.getLogger("mesh.runtime.audit")
WAKE_TOPIC = "audit"  # the forwarder is woken when events commit (mesh.runtime.wakeups)


class AuditEvent(SQLModel, table=True):
    """One mutation (or a sensitive read, such as revealing a secret, or a decision)."""

    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("ix_audit_events_tenant_created_at", "tenant_id", "created_at", "id"),
                      sa.Index("ix_audit_events_forwarded_at", "forwarded_at", "next_forward_at"))

    id: str = Field(default_factory=new_id, primary_key=True)
    tenant_id: str
    actor: str = ""
    service: str = ""
    action: str
    resource_type: str
    resource_id: str = ""
    correlation_id: str = ""
    details: dict[str, Any] = json_field(dict)
    created_at: datetime | None = timestamp_field(nullable=False)
    # The API key the change was made with ("" for a token or the platform itself).
    api_key_id: str = Field(default="", sa_column_kwargs={"server_default": ""})
    # The resource before and after the change, secrets masked (None: not applicable).
    before: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    after: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    # Forwarding to observability: when it was done, and when a claim's lease ends.
    forwarded_at: datetime | None = timestamp_field()
    next_forward_at: datetime | None = timestamp_field()


def _mask(record: dict[str, Any] | None) -> dict[str, Any] | None:
    from mesh.runtime.redaction import mask_record

    return mask_record(record) if record is not None else None


def record(session: Session, caller: Caller, action: str, resource_type: str, resource_id: str,
           *, before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
           **details: Any) -> AuditEvent:
    """Adds an audit event to the session's transaction (committed with the change it records).
    An action without a dot is the resource's (`create` on a `skill`: `skill.create`)."""
    if "." not in action:
        action = f"{resource_type}.{action}"
    event = AuditEvent(tenant_id=caller.tenant_id, actor=caller.user_id,
                       api_key_id=caller.api_key_id, service=current_service.get(),
                       action=action, resource_type=resource_type, resource_id=resource_id,
                       correlation_id=caller.correlation_id or correlation_id(),
                       details=_mask(details) or {}, before=_mask(before), after=_mask(after),
                       created_at=utcnow())
    # One event per change: the service's words replace what was captured of the same resource
    # in this transaction (before or after this call).
    session.info.setdefault("audit_explicit", set()).add(resource_id)
    captured = session.info.get("audit_captured", {}).pop(resource_id, [])
    for earlier in captured:
        if earlier in session.new:
            session.expunge(earlier)
        else:
            session.delete(earlier)
    session.add(event)
    mark(session, WAKE_TOPIC)
    return event


# ---- captured: every row change made while serving a call -----------------------------------
_SKIPPED_COLUMNS = frozenset({"id", "tenant_id", "created_at", "updated_at"})


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return str(value)


def _columns(row: TenantTable) -> list[str]:
    return _columns_of(type(row))


@functools.cache
def _columns_of(table: type) -> list[str]:
    """The columns an event shows of a row: the table's `__audit_columns__` when it names
    them (what a caller's change is; an execution's outcome is its own record), else all."""
    kept = getattr(table, "__audit_columns__", None)
    return [c.key for c in sa.inspect(table).column_attrs
            if c.key not in _SKIPPED_COLUMNS and (kept is None or c.key in kept)]


def _snapshot(row: TenantTable) -> dict[str, Any]:
    return {key: _plain(getattr(row, key, None)) for key in _columns(row)}


def _changes(row: TenantTable) -> tuple[dict[str, Any], dict[str, Any]]:
    """(before, after) of the columns an update changes."""
    before, after = {}, {}
    state = sa.inspect(row)
    for key in _columns(row):
        history = attributes.get_history(row, key) if key in state.attrs else None
        if history is None or not history.has_changes():
            continue
        old = history.deleted[0] if history.deleted else None
        new = history.added[0] if history.added else getattr(row, key, None)
        if _plain(old) != _plain(new):
            before[key], after[key] = _plain(old), _plain(new)
    return before, after


def resource_name(row: TenantTable) -> str:
    """The resource type of a row: its table's `__audit_resource__`, else the table's name
    made singular (`policies` -> `policy`, `api_keys` -> `api_key`)."""
    name = getattr(type(row), "__audit_resource__", "") or type(row).__tablename__
    if name.endswith("ies"):
        return name[:-3] + "y"
    return name[:-1] if name.endswith("s") else name


def _audited(row: Any) -> bool:
    return isinstance(row, TenantTable) and getattr(type(row), "__audit__", True) \
        and getattr(row, "tenant_id", "")


def _before_flush(session: Session, flush_context, instances) -> None:
    context = current_call.get()
    if context is None:  # background work (an execution's steps, a sender): not a caller's
        return
    changed = [(row, "create") for row in session.new if _audited(row)]
    changed += [(row, "update") for row in session.dirty if _audited(row)
                and session.is_modified(row, include_collections=False)]
    changed += [(row, "delete") for row in session.deleted if _audited(row)]
    if not changed:
        return
    explicit = session.info.get("audit_explicit", set())
    captured = session.info.setdefault("audit_captured", {})
    caller = caller_from(context)
    for row, verb in changed:
        if row.id in explicit:
            continue
        if verb == "create":
            before, after = None, _snapshot(row)
        elif verb == "delete":
            before, after = _snapshot(row), None
        else:
            before, after = _changes(row)
            if not after:
                continue
            earlier = captured.get(row.id)
            if earlier:  # changed again in the same transaction: still one event
                earlier[-1].after = {**(earlier[-1].after or {}), **(_mask(after) or {})}
                continue
        event = AuditEvent(**_captured(row, verb, caller, before, after))
        captured.setdefault(row.id, []).append(event)
        session.add(event)
        mark(session, WAKE_TOPIC)


def _captured(row: TenantTable, verb: str, caller: Caller, before: dict[str, Any] | None,
              after: dict[str, Any] | None) -> dict[str, Any]:
    """The values of the event a caller's change of `row` is captured as."""
    details = {"name": row.name} if isinstance(getattr(row, "name", None), str) else {}
    kind = resource_name(row)
    return dict(
        id=new_id(), tenant_id=row.tenant_id, actor=caller.user_id,
        api_key_id=caller.api_key_id, service=current_service.get(), action=f"{kind}.{verb}",
        resource_type=kind, resource_id=row.id, correlation_id=caller.correlation_id,
        details=details, before=_mask(before), after=_mask(after), created_at=utcnow(),
        forwarded_at=None, next_forward_at=None)


def record_inserted(session: Session, rows: list[TenantTable]) -> None:
    """The events `rows` would be captured as, for rows inserted as values without the ORM's
    flush (mesh.runtime.repository `insert`): the same events, in the same transaction."""
    context = current_call.get()
    if context is None:
        return
    caller = caller_from(context)
    events = [_captured(row, "create", caller, None, _snapshot(row))
              for row in rows if _audited(row)]
    if events:
        session.connection().execute(sa.insert(AuditEvent.__table__), events)
        mark(session, WAKE_TOPIC)


_installed = False


def install() -> None:
    """Captures every session's row changes from now on (once per process)."""
    global _installed
    if not _installed:
        sa_event.listen(Session, "before_flush", _before_flush)
        _installed = True


# ---- forwarded to observability -------------------------------------------------------------
# What is forwarded of an event: read as values, not ORM objects.
_EVENTS = AuditEvent.__table__
_FORWARDED = tuple(_EVENTS.c[name] for name in (
    "id", "tenant_id", "actor", "api_key_id", "service", "action", "resource_type",
    "resource_id", "correlation_id", "details", "before", "after", "created_at"))
# The forwarder's statements, built once and run as SQL (not ORM-enabled: an ORM UPDATE
# looks for the rows in the session, and building the statements cost more than running them).
_LEASED = sa.update(_EVENTS).where(_EVENTS.c.id.in_(sa.bindparam("ids", expanding=True)))
_LEASE = _LEASED.values(next_forward_at=sa.bindparam("until"))
_FORWARDED_AT = _LEASED.values(forwarded_at=sa.bindparam("at"))


def as_dict(event: Any) -> dict[str, Any]:
    """An event (its row, or the columns `_FORWARDED` of it) as it is forwarded."""
    return {"id": event.id, "tenant_id": event.tenant_id, "actor": event.actor,
            "api_key_id": event.api_key_id, "service": event.service, "action": event.action,
            "resource_type": event.resource_type, "resource_id": event.resource_id,
            "correlation_id": event.correlation_id, "details": event.details or {},
            "before": event.before, "after": event.after,
            "created_at": event.created_at.isoformat() if event.created_at else ""}


class Forwarder:
    """Sends the service's audit events to observability, at least once (see the module)."""

    def __init__(self, db, peers, *, lease_seconds: float = 30.0, poll_seconds: float = 15.0,
                 idle_seconds: float = 60.0, batch: int = 50,
                 local_retention_days: float = 7.0) -> None:
        self.db, self.peers = db, peers
        self.lease = timedelta(seconds=lease_seconds)
        # After a failed batch the next try comes within poll_seconds (once its lease is
        # over); otherwise a local commit wakes the forwarder, and idle_seconds is the safety
        # net for rows another replica left (a wake-up of each of the ~20 forwarders and
        # senders of the idle process every 15 s was a tenth of its CPU).
        self.poll_seconds, self.idle_seconds = poll_seconds, idle_seconds
        # A batch is claimed, stored and marked on the loop (mesh.runtime.db), each a turn of
        # its own: 50 events keep each turn near a millisecond.
        self.batch = batch
        self.local_retention = timedelta(days=local_retention_days)
        self._task: asyncio.Task | None = None
        self._last_prune = 0.0

    def start(self) -> None:
        if self._task is None:
            self._waiter = Waiter(self.db.writer, WAKE_TOPIC, OUTBOX_SETTLE_SECONDS)
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _claim(self, session: Session) -> list[dict[str, Any]]:
        now = utcnow()
        connection = session.connection()
        rows = connection.execute(self._claimable, {"now": now}).all()
        if not rows:
            return []
        connection.execute(_LEASE, {"ids": [r.id for r in rows], "until": now + self.lease})
        return [as_dict(r) for r in rows]

    @functools.cached_property
    def _claimable(self):
        return (sa.select(*_FORWARDED).where(
            _EVENTS.c.forwarded_at.is_(None),
            sa.or_(_EVENTS.c.next_forward_at.is_(None),
                   _EVENTS.c.next_forward_at <= sa.bindparam("now")))
            .order_by(_EVENTS.c.created_at).limit(self.batch)
            .with_for_update(skip_locked=True))

    def _done(self, ids: list[str]):
        def mark(session: Session) -> None:
            session.connection().execute(_FORWARDED_AT, {"ids": ids, "at": utcnow()})
        return mark

    def _prune(self, session: Session) -> None:
        session.execute(sa.delete(AuditEvent).where(
            AuditEvent.forwarded_at.is_not(None),
            AuditEvent.forwarded_at < utcnow() - self.local_retention))

    async def forward_once(self) -> int:
        """One batch claimed, sent and marked; how many."""
        # A batch by key, on the loop as the writes that queue events are (mesh.runtime.db):
        # a claim waiting on a thread would send those to threads behind it.
        events = await self.db.write(self._claim, inline=True)
        if not events:
            return 0
        await pause()  # each step on its own, the loop's calls served between them
        await self._send(events)
        await pause()
        await self.db.write(self._done([e["id"] for e in events]), inline=True)
        return len(events)

    async def _send(self, events: list[dict[str, Any]]) -> None:
        """To the audit trail: handed over as they are when this process serves it on this
        loop (mesh.runtime.local.receiver), else by IngestAuditEvents."""
        take = self.peers.receiver("observability", "audit")
        if take is not None:
            await take(events)
            return
        from google.protobuf import struct_pb2

        from agentmesh.observability.v1 import observability_pb2 as pb
        from agentmesh.observability.v1 import observability_pb2_grpc as pb_grpc

        request = pb.IngestAuditEventsRequest()
        for item in events:
            body = struct_pb2.Struct()
            body.update(item)
            request.events.append(body)
        await self.peers.stub(pb_grpc.ObservabilityServiceStub).IngestAuditEvents(
            request, timeout=10)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._waiter.clear()  # before the claim: a commit from now on ends the wait below
            try:
                sent = await self.forward_once()
                if loop.time() - self._last_prune > 3600:
                    self._last_prune = loop.time()
                    await self.db.write(self._prune)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again at the next round
                log.debug("audit events not forwarded yet: %s", exc)
                sent, failed = 0, True
            else:
                failed = False
            if sent < self.batch:  # until events commit here, or the next poll (retries)
                await self._waiter.wait(self.poll_seconds if failed else self.idle_seconds)
