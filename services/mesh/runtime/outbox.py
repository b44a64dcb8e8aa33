"""Webhook deliveries from an outbox table: nothing queued is lost to a restart or a crash.

A service writes one row per delivery (`OutboxFields`: the event, the signed body, `pending`)
in the same transaction as whatever caused it, then calls `wake()`. A sender task in every
replica claims due rows, makes one attempt each through the runtime's `WebhookSender`
(HMAC-signed; the egress guard on every attempt when the sender has one) and records the
outcome: delivered, failed for good, or pending again after a backoff.

Claiming moves a row's `next_attempt_at` to the end of a lease (a visibility timeout; `SKIP
LOCKED` on PostgreSQL keeps replicas that claim at the same moment apart), so no other replica
takes it meanwhile, and a replica that dies mid-attempt leaves it due again when the lease ends.
Delivery is at least once: receivers de-duplicate on `X-AgentMesh-Delivery`, the row's
`delivery_id`, which every attempt repeats.

The service says where each row goes: `targets(session, rows)` answers, per row id, the
`(url, secret)` to send to, or a reason (a string) why the delivery ends failed without an
attempt (its webhook or alert was deleted, say).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, select

from mesh.runtime.db import Database
from mesh.runtime.tables import aware, new_id, timestamp_field, utcnow
from mesh.runtime.webhooks import Delivery, WebhookSender

log = logging.getLogger("mesh.runtime.outbox")

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class OutboxFields(SQLModel):
    """The columns an outbox table carries besides its own (mix into a `TenantTable`, and give
    the table an index on (status, next_attempt_at): the sender's query)."""

    delivery_id: str = Field(default_factory=new_id)
    event: str
    status: str = PENDING  # pending, delivered or failed
    attempts: int = 0
    status_code: int = 0
    error: str = ""
    # The signed body, exactly as every attempt sends it ("" once the delivery has ended).
    payload: str = Field(default="", sa_type=sa.Text)
    # When a pending row is due; a claim moves it to the end of the claim's lease.
    next_attempt_at: datetime | None = timestamp_field()


Row = TypeVar("Row", bound=OutboxFields)
Targets = Callable[[Session, Sequence[Any]], dict[str, "tuple[str, str] | str"]]


class Outbox(Generic[Row]):
    """The sender of one outbox table. `start()` once the service runs, `close()` on stop."""

    def __init__(self, db: Database, table: type[Row], targets: Targets, *,
                 sender: WebhookSender, lease_seconds: float = 60.0, poll_seconds: float = 5.0,
                 idle_seconds: float = 60.0, batch: int = 16, name: str = "webhook") -> None:
        self.db = db
        self.table = table
        self.targets = targets
        self.sender = sender
        self.lease = timedelta(seconds=lease_seconds)
        # With deliveries pending, the sender looks again when the next is due, or within
        # poll_seconds (a row another replica queued). With none, the rows queued here wake it
        # (`wake()`, after their commit) and idle_seconds is the safety net for rows another
        # replica queued and left (the three outboxes of the mesh, reading every 5 s, made 36
        # of the idle mesh's ~350 table scans a minute on PostgreSQL, pg_stat_user_tables).
        self.poll_seconds, self.idle_seconds = poll_seconds, idle_seconds
        self.batch = batch
        self.name = name
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def max_attempts(self) -> int:
        return self.sender.max_attempts

    def wake(self) -> None:
        """Rows were queued here: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.sender.close()

    async def pending(self) -> int:
        """Deliveries not ended yet (every replica's)."""
        table = self.table
        return await self.db.read(lambda s: s.exec(select(sa.func.count()).select_from(table)
                                                   .where(table.status == PENDING)).one())

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before the read: a wake from now on ends the wait below
            # A read decides first: a write transaction that found nothing would still take
            # SQLite's write lock at every poll.
            idle = await self._idle_seconds()
            if idle > 0:
                try:  # until the next retry is due, a local wake, or the next poll
                    await asyncio.wait_for(self._wake.wait(), idle)
                except TimeoutError:
                    pass
                continue
            try:
                claimed = await self.db.write(self._claim, inline=True)  # as audit's
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database is back at the next round
                log.exception("could not claim %s deliveries", self.name)
                await asyncio.sleep(self.poll_seconds)
                continue
            # Attempts end well inside the lease (the sender's timeout), or another replica
            # would take the same rows again.
            await asyncio.gather(*(self._attempt(row, target) for row, target in claimed))

    async def _idle_seconds(self) -> float:
        table = self.table

        def earliest(session: Session):
            return session.exec(select(sa.func.min(table.next_attempt_at))
                                .where(table.status == PENDING)).one()

        try:
            due = await self.db.read(earliest)
        except Exception:  # noqa: BLE001
            return self.poll_seconds
        if due is None:
            return self.idle_seconds
        return min(self.poll_seconds, max(0.0, (aware(due) - utcnow()).total_seconds()))

    def _claim(self, session: Session) -> list[tuple[Row, tuple[str, str] | str]]:
        """Takes up to `batch` due rows for this replica, with where each goes."""
        table, now = self.table, utcnow()
        rows = session.exec(select(table).where(
            table.status == PENDING, table.next_attempt_at <= now)
            .order_by(table.next_attempt_at).limit(self.batch)
            .with_for_update(skip_locked=True)).all()
        if not rows:
            return []
        targets = self.targets(session, rows)
        for row in rows:
            row.next_attempt_at = now + self.lease
            session.add(row)
        session.flush()
        for row in rows:
            session.expunge(row)
        return [(row, targets.get(row.id, "its target no longer exists")) for row in rows]

    async def _attempt(self, row: Row, target: tuple[str, str] | str) -> None:
        url, secret = target if isinstance(target, tuple) else ("", "")
        delivery = Delivery(url=url, secret=secret, event=row.event, body=row.payload.encode(),
                            id=row.delivery_id, attempts=row.attempts + 1,
                            status_code=row.status_code)
        if isinstance(target, str):
            delivery.attempts, delivery.error, final = row.attempts, target, True
        else:
            try:
                final = await self.sender.attempt(delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded, retried like a network error
                delivery.error, final = f"{type(exc).__name__}: {exc}", False
        ended = final or delivery.attempts >= self.max_attempts
        if ended and not delivery.delivered:
            log.warning("%s %s to %s failed after %d attempts: %s", self.name, row.event,
                        url or "(no target)", delivery.attempts, delivery.error)
        now, table = utcnow(), self.table

        def record(session: Session) -> None:
            session.execute(sa.update(table).where(table.id == row.id).values(
                status=(DELIVERED if delivery.delivered else FAILED) if ended else PENDING,
                attempts=delivery.attempts, status_code=delivery.status_code,
                error=delivery.error[:1000], updated_at=now,
                payload="" if ended else row.payload,
                next_attempt_at=None if ended else
                now + timedelta(seconds=self.sender.backoff(delivery.attempts))))

        try:
            await self.db.write(record, inline=True)
        except Exception:  # noqa: BLE001 - the lease ends and the row is attempted again
            log.exception("could not record %s delivery %s", self.name, row.delivery_id)
