"""Platform events for the tenants' webhooks (docs/integration.md): a service where something
happened (workflows: an execution ended; agents: a call failed) tells the integration service,
which owns the subscriptions and delivers them signed and retried.

**Through the service's outbox, at least once** (what workflows and agents use):

    platform_events.queue(session, tenant_id, "execution.finished", {...})  # in the change's
    await platform_events.record(db, tenant_id, "call.failed", {...})        # or its own txn

writes the event to the service's `platform_event_outbox` (every service has it: the runtime's
migration branch); `Sender`, started by the runtime where integration is a peer, claims unsent
rows with a lease (SKIP LOCKED on PostgreSQL), hands each to integration's
`PublishPlatformEvent` with its id, and marks it sent. A restart or an unreachable integration
loses nothing; integration queues each event id once per webhook.

**In memory** (`emit`), for callers without a database:

    platform_events.emit(runtime.peers, tenant_id, "execution.finished", {...})

Sent in the background and never awaited by the operation that caused it: a slow or absent
integration service delays nothing and fails nothing. While integration cannot be reached
(UNAVAILABLE: it is restarting, or a pod is being replaced; the call almost always never
reached it) the event is tried again with backoff for about half a minute. A call that reached
it and failed otherwise is not repeated, since it may have been queued. After that the event is
logged and dropped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel

from mesh.runtime.context import TENANT_HEADER
from mesh.runtime.db import pause
from mesh.runtime.tables import json_field, new_id, timestamp_field, utcnow
from mesh.runtime.wakeups import OUTBOX_SETTLE_SECONDS, Waiter, mark

log = logging.getLogger("mesh.runtime.platform_events")
WAKE_TOPIC = "platform_events"  # the sender is woken when events commit (mesh.runtime.wakeups)
_pending: set[asyncio.Task] = set()


class PlatformEventRow(SQLModel, table=True):
    """A platform event waiting to be handed to integration (or handed, until pruned)."""

    __tablename__ = "platform_event_outbox"
    __table_args__ = (sa.Index("ix_platform_event_outbox_due", "sent_at", "next_attempt_at"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    tenant_id: str
    event: str
    data: dict[str, Any] = json_field(dict)
    created_at: datetime | None = timestamp_field(nullable=False)
    sent_at: datetime | None = timestamp_field()
    next_attempt_at: datetime | None = timestamp_field()


def queue(session: Session, tenant_id: str, event: str, data: dict[str, Any]) -> None:
    """The event, in the transaction of the change that caused it (inserted as values: an
    ORM object's flush cost more than the row, and every ended execution queues one)."""
    now = utcnow()
    session.connection().execute(_QUEUE, {
        "id": new_id(), "tenant_id": tenant_id, "event": event, "data": data,
        "created_at": now, "sent_at": None, "next_attempt_at": now})
    mark(session, WAKE_TOPIC)


_EVENTS = PlatformEventRow.__table__
_QUEUE = sa.insert(_EVENTS)
# The sender's statements, built once and run as SQL (as audit.Forwarder's).
_CLAIMED = sa.update(_EVENTS).where(_EVENTS.c.id.in_(sa.bindparam("ids", expanding=True)))
_LEASE = _CLAIMED.values(next_attempt_at=sa.bindparam("until"))
_SENT = _CLAIMED.values(sent_at=sa.bindparam("at"))
_PRUNE = sa.delete(_EVENTS).where(_EVENTS.c.sent_at < sa.bindparam("before"))


async def record(db, tenant_id: str, event: str, data: dict[str, Any]) -> None:
    """The event, in a transaction of its own (after the change). Never raises."""
    try:
        await db.write(lambda session: queue(session, tenant_id, event, data))
    except Exception:  # noqa: BLE001 - an event never fails what caused it
        log.exception("could not queue platform event %s of tenant %s", event, tenant_id)


class Sender:
    """Hands the service's queued platform events to integration, at least once."""

    def __init__(self, db, peers, *, lease_seconds: float = 30.0, poll_seconds: float = 15.0,
                 idle_seconds: float = 60.0, batch: int = 50,
                 keep_sent: timedelta = timedelta(days=1)) -> None:
        self.db, self.peers = db, peers
        self.lease = timedelta(seconds=lease_seconds)
        # As the audit forwarder's: poll_seconds after a failure, idle_seconds otherwise.
        self.poll_seconds, self.idle_seconds = poll_seconds, idle_seconds
        self.batch, self.keep_sent = batch, keep_sent
        self._unsent = 0  # of the last batch: not handed over (tried again after the lease)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._waiter = Waiter(self.db.writer, WAKE_TOPIC, OUTBOX_SETTLE_SECONDS)
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _claim(self, session: Session) -> list[tuple[str, str, str, dict]]:
        now = utcnow()
        connection = session.connection()
        rows = connection.execute(self._claimable, {"now": now}).all()
        if rows:
            connection.execute(_LEASE, {"ids": [r.id for r in rows], "until": now + self.lease})
        connection.execute(_PRUNE, {"before": now - self.keep_sent})
        return [(r.id, r.tenant_id, r.event, dict(r.data)) for r in rows]

    @functools.cached_property
    def _claimable(self):
        return (sa.select(_EVENTS.c.id, _EVENTS.c.tenant_id, _EVENTS.c.event, _EVENTS.c.data)
                .where(_EVENTS.c.sent_at.is_(None),
                       _EVENTS.c.next_attempt_at <= sa.bindparam("now"))
                .order_by(_EVENTS.c.created_at).limit(self.batch)
                .with_for_update(skip_locked=True))

    async def send_once(self) -> int:
        claimed = await self.db.write(self._claim, inline=True)  # as audit.Forwarder's
        if claimed:
            await pause()
        sent = []
        for event_id, tenant_id, event, data in claimed:
            if await _send(self.peers, tenant_id, event, data, delays=(), event_id=event_id):
                sent.append(event_id)
        self._unsent = len(claimed) - len(sent)
        if sent:
            await self.db.write(lambda session: session.connection().execute(
                _SENT, {"ids": sent, "at": utcnow()}), inline=True)
        return len(claimed)

    async def _run(self) -> None:
        while True:
            self._waiter.clear()  # before the claim: a commit from now on ends the wait below
            try:
                claimed = await self.send_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - tried again at the next round
                log.exception("platform events not sent yet")
                claimed, self._unsent = 0, 1
            if claimed < self.batch:  # until events commit here, or the next poll (retries)
                await self._waiter.wait(self.poll_seconds if self._unsent else
                                        self.idle_seconds)


def emit(peers, tenant_id: str, event: str, data: dict[str, Any]) -> None:
    """Schedules `event` for the tenant's webhooks; returns at once."""
    task = asyncio.get_running_loop().create_task(_send(peers, tenant_id, event, data))
    _pending.add(task)  # kept until done, so it is not collected mid-flight
    task.add_done_callback(_pending.discard)


# Waits between attempts while integration is UNAVAILABLE: about 30 s in all.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


async def _send(peers, tenant_id: str, event: str, data: dict[str, Any],
                delays: tuple[float, ...] = RETRY_DELAYS, event_id: str = "") -> bool:
    import grpc
    from google.protobuf import struct_pb2

    from agentmesh.integration.v1 import integration_pb2 as pb
    from agentmesh.integration.v1 import integration_pb2_grpc as pb_grpc

    body = struct_pb2.Struct()
    body.update(data)
    request = pb.PublishPlatformEventRequest(event=event, data=body, event_id=event_id)
    for attempt, delay in enumerate((*delays, None), start=1):
        try:
            stub = peers.stub(pb_grpc.IntegrationServiceStub)
            await stub.PublishPlatformEvent(request, metadata=[(TENANT_HEADER, tenant_id)],
                                            timeout=5)
            return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE and delay is not None:
                await asyncio.sleep(delay)
                continue
            reason = f"{exc.code().name}: {exc.details()}"
        except Exception as exc:  # noqa: BLE001 - an event never fails what caused it
            reason = f"{type(exc).__name__}: {exc}"
        log.warning("platform event %s of tenant %s not delivered to integration after %d "
                    "attempts: %s", event, tenant_id, attempt, reason)
        return False
    raise AssertionError("unreachable: the last attempt returns")
