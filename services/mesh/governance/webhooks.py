"""Decision webhooks: URLs a tenant registers to receive its decisions (all, only denied, only
allowed), each signed with the webhook's secret. The deliveries are outbox rows written in the
transaction that records the decision (mesh.runtime.outbox): a restart or a crash loses none;
they are sent at least once, through the egress guard."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from urllib.parse import urlparse

from google.protobuf import json_format
from sqlmodel import Session, select

from agentmesh.governance.v1 import governance_pb2 as pb
from mesh.governance.models import DecisionDeliveryRow, WebhookRow
from mesh.governance.store import webhooks
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import invalid_field
from mesh.runtime import outbox
from mesh.runtime import webhooks as runtime_webhooks
from mesh.runtime.tables import utcnow
from mesh.runtime.webhooks import WebhookSender

log = logging.getLogger("mesh.governance")
DECISION_EVENT = "governance.decision"
EVENTS = ("all", "denied", "allowed")


def _targets(session: Session, rows: Sequence[DecisionDeliveryRow]
             ) -> dict[str, tuple[str, str] | str]:
    hooks = {h.id: h for h in session.exec(select(WebhookRow).where(
        WebhookRow.id.in_({r.webhook_id for r in rows}))).all()}
    return {row.id: ((hooks[row.webhook_id].url, hooks[row.webhook_id].secret)
                     if row.webhook_id in hooks else "the webhook was deleted") for row in rows}


class DecisionWebhooks:
    """The tenant's decision webhooks (cached per tenant for the policy-cache time) and the
    outbox they are sent from: `deliveries(...)` are written in the transaction that records
    the decisions, the sender task attempts them (retried with backoff, at least once)."""

    def __init__(self, db: Database, egress: EgressPolicy, ttl: float) -> None:
        self.db = db
        self.ttl = ttl
        # Decision webhooks are tenant URLs: every delivery goes through the egress guard.
        self.sender = WebhookSender(egress=egress)
        self.outbox = outbox.Outbox(db, DecisionDeliveryRow, _targets, sender=self.sender,
                                    name="decision webhook")
        self._hooks: dict[str, tuple[float, list[tuple[str, str, str]]]] = {}

    def forget(self, tenant_id: str) -> None:
        """The tenant's webhooks changed: read them again at its next decision."""
        self._hooks.pop(tenant_id, None)

    async def of(self, tenant_id: str) -> list[tuple[str, str, str]]:
        """(id, events, url) of each of the tenant's webhooks."""
        entry = self._hooks.get(tenant_id)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        hooks = await self.db.read(lambda s: [(w.id, w.events, w.url) for w in s.exec(
            select(WebhookRow).where(WebhookRow.tenant_id == tenant_id)).all()])
        self._hooks[tenant_id] = (time.monotonic(), hooks)
        return hooks

    @staticmethod
    def deliveries(hooks: list[tuple[str, str, str]], decision: pb.Decision
                   ) -> list[DecisionDeliveryRow]:
        """The outbox rows of one decision for the hooks that want it."""
        wanted = [h for h in hooks if h[1] == "all" or (h[1] == "denied") != decision.allowed]
        if not wanted:
            return []
        record = json_format.MessageToDict(decision, preserving_proto_field_name=True)
        # Seed 002's decision webhook: `timestamp` is when the decision was made.
        payload = runtime_webhooks.encode({"event": DECISION_EVENT, "service": "governance",
                                         "timestamp": record.get("created_at", ""), **record})
        now = utcnow()
        return [DecisionDeliveryRow(tenant_id=decision.tenant_id, webhook_id=hook_id,
                                    event=DECISION_EVENT, payload=payload, next_attempt_at=now,
                                    created_at=now, updated_at=now)
                for hook_id, _, _ in wanted]

    def start(self) -> None:
        self.outbox.start()

    async def close(self) -> None:
        await self.outbox.close()


async def create(db: Database, egress: EgressPolicy, caller: Caller,
                 webhook: pb.Webhook) -> WebhookRow:
    """A new webhook of the caller's tenant, with a secret made here: an http(s) URL the egress
    guard allows (403 EGRESS_DENIED for an internal address; each delivery is checked again
    when it connects)."""
    url = webhook.url.strip()
    try:
        parsed = urlparse(url)
    except ValueError:  # "http://[": not a URL at all
        raise invalid_field("url", "must be an http or https URL") from None
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise invalid_field("url", "must be an http or https URL")
    events = webhook.events or "all"
    if events not in EVENTS:
        raise invalid_field("events", "must be all, denied or allowed")
    await egress.check_url(url)
    secret = runtime_webhooks.new_secret()
    row = WebhookRow(tenant_id=caller.tenant_id, url=url, events=events, secret=secret,
                     created_by=caller.user_id)
    return await db.write(lambda s: webhooks.add(s, row))
