"""Decision webhooks: URLs a tenant registers to receive its decisions (all, only denied, only
allowed), each signed with the webhook's secret. A decision is answered first; looking the
tenant's webhooks up (cached per tenant for the policy-cache time) and delivering them happen in
the background (mesh.runtime.webhooks, through the egress guard)."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlparse

from google.protobuf import json_format
from sqlmodel import select

from agentmesh.governance.v1 import governance_pb2 as pb
from mesh.governance.models import WebhookRow
from mesh.governance.store import webhooks
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import invalid_field
from mesh.runtime import webhooks as runtime_webhooks
from mesh.runtime.webhooks import WebhookSender

log = logging.getLogger("mesh.governance")
DECISION_EVENT = "governance.decision"
EVENTS = ("all", "denied", "allowed")


class DecisionWebhooks:
    def __init__(self, db: Database, egress: EgressPolicy, ttl: float) -> None:
        self.db = db
        self.ttl = ttl
        # Decision webhooks are tenant URLs: every delivery goes through the egress guard.
        self.sender = WebhookSender(egress=egress)
        self._background: set[asyncio.Task] = set()
        self._hooks: dict[str, tuple[float, list[tuple[str, str, str]]]] = {}

    def forget(self, tenant_id: str) -> None:
        """The tenant's webhooks changed: read them again at its next decision."""
        self._hooks.pop(tenant_id, None)

    async def of(self, tenant_id: str) -> list[tuple[str, str, str]]:
        """(url, secret, events) of each of the tenant's webhooks."""
        entry = self._hooks.get(tenant_id)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        hooks = await self.db.read(lambda s: [(w.url, w.secret, w.events) for w in s.exec(
            select(WebhookRow).where(WebhookRow.tenant_id == tenant_id)).all()])
        self._hooks[tenant_id] = (time.monotonic(), hooks)
        return hooks

    def notify(self, tenant_id: str, decision: pb.Decision) -> None:
        """Sends the decision to the tenant's webhooks in the background: looking them up and
        delivering both happen after the decision has been answered."""
        async def fan_out() -> None:
            try:
                hooks = await self.of(tenant_id)
            except Exception:  # noqa: BLE001
                log.exception("could not read webhooks of tenant %s", tenant_id)
                return
            if not hooks:
                return
            record = json_format.MessageToDict(decision, preserving_proto_field_name=True)
            # Seed 002's decision webhook: `timestamp` is when the decision was made.
            payload = {"event": DECISION_EVENT, "service": "governance",
                       "timestamp": record.get("created_at", ""), **record}
            for url, secret, events in hooks:
                if events == "all" or (events == "denied") != decision.allowed:
                    self.sender.send(url, secret, DECISION_EVENT, payload)

        task = asyncio.get_running_loop().create_task(fan_out())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        await self.sender.close()


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
