"""Platform events to the tenant's webhooks, through the one delivery mechanism of the runtime
(`mesh.runtime.webhooks.WebhookSender`: HMAC-signed, retried with backoff), with every attempt
checked by the egress guard and each finished delivery recorded (`integration_webhook_deliveries`,
read by ListWebhookDeliveries).

A payload is `{"id", "event", "tenant_id", "occurred_at", "data": {...}}`."""

from __future__ import annotations

import fnmatch
import logging
from typing import Any

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


class Events:
    def __init__(self, db: Database, egress: EgressPolicy, *, max_attempts: int = 5,
                 base_delay: float = 0.5) -> None:
        self.db = db
        self._targets: dict[str, tuple[str, str]] = {}  # delivery id -> (tenant, webhook id)
        self.sender = WebhookSender(egress=egress, on_result=self._record,
                                    max_attempts=max_attempts, base_delay=base_delay)

    async def publish(self, tenant_id: str, event: str, data: dict[str, Any]) -> int:
        """Schedules the event to every active webhook of the tenant that subscribes to it;
        returns how many. Never raises: an event must not fail the operation that caused it."""
        try:
            hooks = await self.db.read(lambda s: s.exec(select(WebhookRow).where(
                WebhookRow.tenant_id == tenant_id, WebhookRow.active == True)).all())  # noqa: E712
        except Exception:  # noqa: BLE001
            log.exception("could not read the webhooks of tenant %s", tenant_id)
            return 0
        sent = 0
        for hook in hooks:
            if not matches(list(hook.events), event):
                continue
            payload = {"id": new_id(), "event": event, "tenant_id": tenant_id,
                       "occurred_at": utcnow().isoformat(), "data": data}
            delivery = self.sender.send(hook.url, hook.secret, event, payload)
            if delivery is not None:
                self._targets[delivery.id] = (tenant_id, hook.id)
                sent += 1
        return sent

    async def _record(self, delivery: Delivery) -> None:
        target = self._targets.pop(delivery.id, None)
        if target is None:
            return
        tenant_id, webhook_id = target

        def add(session: Session) -> None:
            session.add(DeliveryRow(
                tenant_id=tenant_id, webhook_id=webhook_id, delivery_id=delivery.id,
                event=delivery.event, status="delivered" if delivery.delivered else "failed",
                attempts=delivery.attempts, status_code=delivery.status_code,
                error=delivery.error[:1000], created_at=utcnow(), updated_at=utcnow()))

        await self.db.write(add)

    async def close(self) -> None:
        await self.sender.close()
