"""Tables of the integration service: webhooks, their deliveries, API connections and the
record of the tenant's last sync, import and export. A change here needs a migration:
`agentmesh db revision integration -m "..."`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mesh.runtime.outbox import OutboxFields
from mesh.runtime.tables import TenantTable, json_field, timestamp_field


class WebhookRow(TenantTable, table=True):
    """An endpoint that receives the tenant's platform events, signed with `secret`."""

    __tablename__ = "integration_webhooks"
    __audit_resource__ = "webhook"  # as its own audit events name it
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_integration_webhooks_name"),)

    name: str
    url: str
    events: list[str] = json_field(list)
    # The signing key. Not a master-data secret: the receiver holds the same value, and the
    # sender needs it on every delivery; reads never return it.
    secret: str = ""
    secret_hint: str = ""
    active: bool = True
    created_by: str = ""


class DeliveryRow(TenantTable, OutboxFields, table=True):
    """One event to one webhook, and its attempts: the outbox (`mesh.runtime.outbox`) the
    webhooks are sent from, and the delivery history `ListWebhookDeliveries` reads."""

    __tablename__ = "integration_webhook_deliveries"
    __audit__ = False  # a record itself, not a change to audit
    # The sender's query: pending rows whose next attempt is due.
    __table_args__ = (sa.Index("ix_integration_webhook_deliveries_due", "status",
                                "next_attempt_at"),)

    webhook_id: str = Field(index=True)


class ApiConnectionRow(TenantTable, table=True):
    """A named external API: base URL, how to authenticate (a secret's name), default headers."""

    __tablename__ = "integration_api_connections"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name",
                                          name="uq_integration_api_connections_name"),)

    name: str
    base_url: str
    auth_type: str = "AUTH_TYPE_NONE"
    secret_ref: str = ""
    auth_param: str = ""
    headers: dict[str, str] = json_field(dict)
    created_by: str = ""


class ActivityRow(TenantTable, table=True):
    """When the tenant last synced, imported and exported (one row per tenant and kind)."""

    __tablename__ = "integration_activity"
    __audit__ = False  # a record itself, not a change to audit
    __table_args__ = (sa.UniqueConstraint("tenant_id", "kind", name="uq_integration_activity_kind"),)

    kind: str
    at: datetime | None = timestamp_field()
    details: dict[str, Any] = json_field(dict)
