"""The tenant's webhooks: created (an http(s) URL the egress guard allows, known events, a
signing secret), listed, deleted, their delivery history, and platform events published to
them through the outbox (mesh.integration.events)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from sqlmodel import Session

from agentmesh.integration.v1 import integration_pb2 as pb
from mesh.integration import connections, events
from mesh.integration.models import WebhookRow
from mesh.integration.store import deliveries, delivery_message, webhook_message, webhooks
from mesh.runtime import audit
from mesh.runtime import webhooks as runtime_webhooks
from mesh.runtime.context import Caller
from mesh.runtime.errors import invalid_field
from mesh.runtime.paging import PageRequest

if TYPE_CHECKING:
    from mesh.integration.state import IntegrationState


async def create(state: "IntegrationState", caller: Caller, hook: pb.Webhook) -> pb.Webhook:
    if not hook.name:
        raise invalid_field("name", "is required")
    url = connections.check_url(hook.url, "url")
    for i, event in enumerate(hook.events):
        if not events.known(event):
            raise invalid_field(f"events[{i}]",
                                f"unknown event; known: {', '.join(events.EVENTS)}")
    await state.egress.check_url(url)
    secret = hook.secret or runtime_webhooks.new_secret()
    if len(secret) < 16:
        raise invalid_field("secret", "at least 16 characters")
    row = WebhookRow(tenant_id=caller.tenant_id, name=hook.name, url=url,
                     events=sorted(set(hook.events)), secret=secret,
                     secret_hint="****" + secret[-4:],
                     active=hook.active if hook.HasField("active") else True,
                     created_by=caller.user_id)

    def add(session: Session) -> WebhookRow:
        webhooks.add(session, row)
        audit.record(session, caller, "create", "webhook", row.id, name=row.name)
        return row

    return webhook_message(await state.db.write(add))


async def page(state: "IntegrationState", caller: Caller, page: PageRequest, *,
               active: bool | None, event: str, search: str) -> dict[str, Any]:
    """One page of webhooks; with `event`, only those of the page subscribed to it."""
    where = () if active is None else (WebhookRow.active == active,)
    result = await state.db.read(lambda s: webhooks.list(s, caller.tenant_id, page,
                                                         search=search, where=where))
    fields = result.fields(webhook_message)
    if event:
        fields["items"] = [webhook_message(r) for r in result.items
                           if events.matches(list(r.events), event)]
    return fields


async def delete(state: "IntegrationState", caller: Caller, key: str) -> str:
    return await state.db.write(lambda s: webhooks.remove(
        s, webhooks.get(s, caller.tenant_id, key, lock=True), caller))


async def delivery_page(state: "IntegrationState", caller: Caller, key: str,
                        page: PageRequest) -> dict[str, Any]:
    def read(session: Session):
        hook = webhooks.get(session, caller.tenant_id, key)
        return deliveries.list(session, caller.tenant_id, page, filters={"webhook_id": hook.id})

    return (await state.db.read(read)).fields(delivery_message)


async def publish(state: "IntegrationState", caller: Caller, event: str,
                  data: Any, event_id: str = "") -> int:
    """A platform event from another service (mesh.runtime.platform_events) to the tenant's
    webhooks; how many deliveries were queued."""
    if event not in events.EVENTS:
        raise invalid_field("event", f"is not one of: {', '.join(sorted(events.EVENTS))}")
    if not await state.events.subscribed(caller.tenant_id, event):
        return 0
    return await state.events.publish(caller.tenant_id, event, json_format.MessageToDict(data),
                                      event_id=event_id)
