"""Platform events to the tenant's webhooks, through the runtime's outbox
(`mesh.runtime.outbox`): `publish` writes one `pending` delivery per subscribed webhook, with
the signed body, in the transaction that reads the webhooks; the outbox's sender attempts it
(HMAC-signed, the egress guard on every attempt), retries it with backoff across restarts and
replicas, and records the outcome that `ListWebhookDeliveries` shows.

A payload is `{"id", "event", "tenant_id", "occurred_at", "data": {...}}`."""

from __future__ import annotations

import fnmatch
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, select

from mesh.integration.models import DeliveryRow, WebhookRow
from mesh.runtime import outbox
from mesh.runtime.db import Database
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.tables import new_id, utcnow
from mesh.runtime import webhooks
from mesh.runtime.webhooks import WebhookSender

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
    "budget.exceeded": "a token or cost budget was used up; model requests are refused until "
                       "its window ends (governance)",
}


def known(pattern: str) -> bool:
    return pattern == "*" or any(fnmatch.fnmatchcase(e, pattern) for e in EVENTS)


def matches(patterns: list[str], event: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(event, p) for p in patterns)


def _targets(session: Session, rows: Sequence[DeliveryRow]) -> dict[str, tuple[str, str] | str]:
    hooks = {h.id: h for h in session.exec(select(WebhookRow).where(
        WebhookRow.id.in_({r.webhook_id for r in rows}))).all()}
    found: dict[str, tuple[str, str] | str] = {}
    for row in rows:
        hook = hooks.get(row.webhook_id)
        found[row.id] = ("the webhook was deleted" if hook is None else
                         "the webhook is inactive" if not hook.active else (hook.url, hook.secret))
    return found


# The events of the tenant's active webhooks: read for every event published, on the hot path's
# raw connection (Database.fetch), without a session.
_SUBSCRIBED = (f'SELECT "events" FROM "{WebhookRow.__tablename__}" '
               'WHERE "tenant_id" = {p} AND "active"')


class Events:
    """The tenant's platform events into the outbox. `start()` once the service runs (it also
    sends what was queued before a restart), `close()` on shutdown."""

    def __init__(self, db: Database, egress: EgressPolicy, *, max_attempts: int = 8,
                 base_delay: float = 1.0, max_delay: float = 300.0, lease_seconds: float = 60.0,
                 poll_seconds: float = 5.0) -> None:
        self.db = db
        # 8 attempts over about four minutes by default: a receiver that restarts or deploys
        # meanwhile still gets the event.
        self.sender = WebhookSender(egress=egress, max_attempts=max_attempts,
                                    base_delay=base_delay, max_delay=max_delay)
        self.outbox = outbox.Outbox(db, DeliveryRow, _targets, sender=self.sender,
                                    lease_seconds=lease_seconds, poll_seconds=poll_seconds,
                                    name="webhook")

    async def subscribed(self, tenant_id: str, event: str) -> bool:
        """Whether an active webhook of the tenant takes `event`: most events have no
        receiver, and a read says so without the write transaction `publish` takes."""
        try:
            (rows,) = await self.db.fetch(
                (_SUBSCRIBED.format(p=self.db.placeholder), (tenant_id,)), inline=True)
        except Exception:  # noqa: BLE001 - publish says it, if it fails too
            return True
        # A JSON column: text on SQLite, decoded by psycopg on PostgreSQL.
        return any(matches(json.loads(kinds) if isinstance(kinds, str) else list(kinds), event)
                   for (kinds,) in rows)

    async def publish(self, tenant_id: str, event: str, data: dict[str, Any],
                      event_id: str = "") -> int:
        """Queues the event for every active webhook of the tenant that subscribes to it;
        returns how many. Never raises: an event must not fail the operation that caused it.
        With `event_id` (the sender's outbox id), an event sent again is queued once per
        webhook: the delivery id is derived from both."""

        def queue(session: Session) -> int:
            hooks = session.exec(select(WebhookRow).where(
                WebhookRow.tenant_id == tenant_id, WebhookRow.active == True)).all()  # noqa: E712
            now = utcnow()
            queued = 0
            for hook in hooks:
                if not matches(list(hook.events), event):
                    continue
                delivery_id = (str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event_id}:{hook.id}"))
                               if event_id else new_id())
                if event_id and session.exec(select(DeliveryRow.id).where(
                        DeliveryRow.webhook_id == hook.id,
                        DeliveryRow.delivery_id == delivery_id)).first() is not None:
                    continue  # sent again: already queued
                payload = {"id": event_id or new_id(), "event": event, "tenant_id": tenant_id,
                           "occurred_at": now.isoformat(), "data": data}
                session.add(DeliveryRow(tenant_id=tenant_id, webhook_id=hook.id, event=event,
                                        delivery_id=delivery_id,
                                        payload=webhooks.encode(payload), next_attempt_at=now,
                                        created_at=now, updated_at=now))
                queued += 1
            return queued

        try:
            queued = await self.db.write(queue)
        except Exception:  # noqa: BLE001
            log.exception("could not queue %s for the webhooks of tenant %s", event, tenant_id)
            return 0
        if queued:
            self.outbox.wake()
        return queued

    def start(self) -> None:
        self.outbox.start()

    async def close(self) -> None:
        await self.outbox.close()
