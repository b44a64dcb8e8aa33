"""Platform events to the tenant's webhooks, from an outbox in the integration database.

`publish` writes one `pending` delivery per subscribed webhook (the signed body in it) and
returns; a sender task in every replica claims due rows with a lease, makes one attempt each
through the runtime's `WebhookSender` (HMAC-signed, egress guard on every attempt), and writes
the outcome: delivered, failed for good, or pending again after a backoff. So a restart, a
crash or a receiver that is down for minutes loses nothing, and `ListWebhookDeliveries` shows
pending deliveries with their attempts as well as the ended ones.

A payload is `{"id", "event", "tenant_id", "occurred_at", "data": {...}}`."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
from datetime import UTC, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from mesh.integration.models import DeliveryRow, WebhookRow
from mesh.runtime.db import Database
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.tables import new_id, utcnow
from mesh.runtime.webhooks import Delivery, WebhookSender

log = logging.getLogger("mesh.integration.events")

# The events a webhook may subscribe to (and where they come from).
EVENTS = {
    "agent.deployed": "an agent deployed by agent-from-template or deploy-agent-workflow",
    "workflow.activated": "a workflow activated by deploy-agent-workflow",
    "tool.registered": "tools registered by external-tool",
    "data.imported": "a bundle imported by import or import-file",
    "master_data.synced": "master data synchronized by sync-master-data",
    # Sent by the owning services (mesh.runtime.platform_events).
    "execution.finished": "a workflow execution ended: completed, failed or cancelled (workflows)",
    "call.failed": "an agent call that ended failed (agents)",
}


def known(pattern: str) -> bool:
    return pattern == "*" or any(fnmatch.fnmatchcase(e, pattern) for e in EVENTS)


def matches(patterns: list[str], event: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(event, p) for p in patterns)


PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class Events:
    """The outbox and its sender. `start()` once the service runs, `close()` on shutdown."""

    def __init__(self, db: Database, egress: EgressPolicy, *, max_attempts: int = 8,
                 base_delay: float = 1.0, max_delay: float = 300.0, lease_seconds: float = 60.0,
                 poll_seconds: float = 2.0, batch: int = 16) -> None:
        self.db = db
        # 8 attempts over about four minutes by default: a receiver that restarts or deploys
        # meanwhile still gets the event.
        self.sender = WebhookSender(egress=egress, max_attempts=max_attempts,
                                    base_delay=base_delay, max_delay=max_delay)
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def max_attempts(self) -> int:
        return self.sender.max_attempts

    async def publish(self, tenant_id: str, event: str, data: dict[str, Any]) -> int:
        """Queues the event for every active webhook of the tenant that subscribes to it;
        returns how many. Never raises: an event must not fail the operation that caused it."""

        def queue(session: Session) -> int:
            hooks = session.exec(select(WebhookRow).where(
                WebhookRow.tenant_id == tenant_id, WebhookRow.active == True)).all()  # noqa: E712
            now = utcnow()
            queued = 0
            for hook in hooks:
                if not matches(list(hook.events), event):
                    continue
                payload = {"id": new_id(), "event": event, "tenant_id": tenant_id,
                           "occurred_at": now.isoformat(), "data": data}
                session.add(DeliveryRow(
                    tenant_id=tenant_id, webhook_id=hook.id, delivery_id=new_id(), event=event,
                    status=PENDING, payload=json.dumps(payload, separators=(",", ":"),
                                                       default=str),
                    next_attempt_at=now, created_at=now, updated_at=now))
                queued += 1
            return queued

        try:
            queued = await self.db.write(queue)
        except Exception:  # noqa: BLE001
            log.exception("could not queue %s for the webhooks of tenant %s", event, tenant_id)
            return 0
        if queued:
            self._wake.set()
        return queued

    # ---- the sender ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.sender.close()

    async def _run(self) -> None:
        while True:
            # A read first: a write transaction that finds nothing would still take SQLite's
            # write lock every poll.
            self._wake.clear()  # before the read: a publish from now on wakes the wait below
            idle = await self._idle_seconds()
            if idle > 0:
                try:  # until the next retry is due, a local publish, or the next poll
                    await asyncio.wait_for(self._wake.wait(), idle)
                except TimeoutError:
                    pass
                continue
            try:
                claimed = await self.db.write(self._claim)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database is back at the next round
                log.exception("could not claim webhook deliveries")
                await asyncio.sleep(self.poll_seconds)
                continue
            # Attempts end well inside the lease (5 s timeout each), or another replica would
            # take the same rows again.
            await asyncio.gather(*(self._attempt(row) for row in claimed))

    async def _idle_seconds(self) -> float:
        def earliest(session: Session):
            return session.exec(select(sa.func.min(DeliveryRow.next_attempt_at)).where(
                DeliveryRow.status == PENDING)).one()

        try:
            due = await self.db.read(earliest)
        except Exception:  # noqa: BLE001
            return self.poll_seconds
        if due is None:
            return self.poll_seconds
        if due.tzinfo is None:  # SQLite gives timestamps back without their zone (UTC)
            due = due.replace(tzinfo=UTC)
        return min(self.poll_seconds, max(0.0, (due - utcnow()).total_seconds()))

    def _claim(self, session: Session) -> list[tuple[DeliveryRow, WebhookRow | None]]:
        """Takes up to `batch` due rows for this replica: their next attempt moves to the end
        of the lease, so no other replica takes them meanwhile (and SKIP LOCKED keeps replicas
        claiming at the same moment apart), while a replica that dies mid-attempt leaves them
        due again when the lease ends. Returns them with their webhooks."""
        now = utcnow()
        rows = session.exec(select(DeliveryRow).where(
            DeliveryRow.status == PENDING, DeliveryRow.next_attempt_at <= now)
            .order_by(DeliveryRow.next_attempt_at).limit(self.batch)
            .with_for_update(skip_locked=True)).all()
        if not rows:
            return []
        hooks = {h.id: h for h in session.exec(select(WebhookRow).where(
            WebhookRow.id.in_({r.webhook_id for r in rows}))).all()}
        for row in rows:
            row.next_attempt_at = now + self.lease
            session.add(row)
        session.flush()
        for row in rows:
            session.expunge(row)
        return [(row, hooks.get(row.webhook_id)) for row in rows]

    async def _attempt(self, claimed: tuple[DeliveryRow, WebhookRow | None]) -> None:
        row, hook = claimed
        delivery = Delivery(url=hook.url if hook else "", secret=hook.secret if hook else "",
                            event=row.event, body=row.payload.encode(), id=row.delivery_id,
                            attempts=row.attempts + 1, status_code=row.status_code)
        if hook is None or not hook.active:
            delivery.attempts = row.attempts
            delivery.error = "the webhook was deleted" if hook is None else "the webhook is inactive"
            final = True
        else:
            try:
                final = await self.sender.attempt(delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded, retried like a network error
                delivery.error, final = f"{type(exc).__name__}: {exc}", False
        ended = final or delivery.attempts >= self.max_attempts
        if ended and not delivery.delivered:
            log.warning("webhook %s to %s failed after %d attempts: %s", row.event,
                        delivery.url, delivery.attempts, delivery.error)
        now = utcnow()

        def record(session: Session) -> None:
            session.execute(sa.update(DeliveryRow).where(DeliveryRow.id == row.id).values(
                status=(DELIVERED if delivery.delivered else FAILED) if ended else PENDING,
                attempts=delivery.attempts, status_code=delivery.status_code,
                error=delivery.error[:1000], updated_at=now,
                payload="" if ended else row.payload,
                next_attempt_at=None if ended else
                now + timedelta(seconds=self.sender.backoff(delivery.attempts))))

        try:
            await self.db.write(record)
        except Exception:  # noqa: BLE001 - the lease ends and the row is attempted again
            log.exception("could not record webhook delivery %s", row.delivery_id)
