"""The integration repositories (webhooks, their deliveries, API connections), the record of
the tenant's last sync, import and export, and rows as messages."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, func, select

from agentmesh.integration.v1 import integration_pb2 as pb
from mesh.integration.models import ActivityRow, ApiConnectionRow, DeliveryRow, WebhookRow
from mesh.runtime import audit
from mesh.runtime.context import Caller
from mesh.runtime.convert import to_message
from mesh.runtime.repository import TenantRepository
from mesh.runtime.tables import utcnow

webhooks = TenantRepository(WebhookRow, noun="webhook", search_columns=("name", "url"),
                            order_columns=("name",), default_order="name", quota="resource")
api_connections = TenantRepository(ApiConnectionRow, noun="api_connection",
                                   search_columns=("name", "base_url"), order_columns=("name",),
                                   default_order="name", quota="resource")
deliveries = TenantRepository(DeliveryRow, noun="delivery", name_column=None)


# ---- rows as messages -----------------------------------------------------------------------
def webhook_message(row: WebhookRow) -> pb.Webhook:
    return pb.Webhook(id=row.id, tenant_id=row.tenant_id, name=row.name, url=row.url,
                      events=list(row.events), secret_hint=row.secret_hint, active=row.active,
                      created_at=row.created_at, updated_at=row.updated_at)


def delivery_message(row: DeliveryRow) -> pb.WebhookDelivery:
    return pb.WebhookDelivery(
        id=row.delivery_id, webhook_id=row.webhook_id, event=row.event, status=row.status,
        attempts=row.attempts, status_code=row.status_code, error=row.error,
        created_at=row.created_at, updated_at=row.updated_at,
        next_attempt_at=row.next_attempt_at)


def connection_message(row: ApiConnectionRow) -> pb.ApiConnection:
    return to_message(row, pb.ApiConnection)


def connection_dict(row: ApiConnectionRow) -> dict[str, Any]:
    """A connection as the domain uses it (and a bundle carries it, without the id)."""
    return {"id": row.id, "name": row.name, "base_url": row.base_url, "auth_type": row.auth_type,
            "secret_ref": row.secret_ref, "auth_param": row.auth_param,
            "headers": dict(row.headers)}


def connection_rows(session: Session, tenant_id: str) -> list[ApiConnectionRow]:
    return list(session.exec(select(ApiConnectionRow).where(
        ApiConnectionRow.tenant_id == tenant_id)).all())


# ---- the tenant's activity ------------------------------------------------------------------
def record_activity(session: Session, caller: Caller, kind: str, details: dict[str, Any]) -> None:
    """When the tenant last did `kind` (sync, import, export), and the audit event of it."""
    row = session.exec(select(ActivityRow).where(
        ActivityRow.tenant_id == caller.tenant_id, ActivityRow.kind == kind)).first()
    if row is None:
        row = ActivityRow(tenant_id=caller.tenant_id, kind=kind, created_at=utcnow())
    row.at, row.details, row.updated_at = utcnow(), details, utcnow()
    session.add(row)
    audit.record(session, caller, kind, "integration", "", **details)


def counts(session: Session, tenant_id: str) -> tuple[int, int, dict[str, Any]]:
    """The tenant's active webhooks, its API connections, and when it last did each activity."""
    active = session.exec(select(func.count()).select_from(WebhookRow).where(
        WebhookRow.tenant_id == tenant_id, WebhookRow.active == True)).one()  # noqa: E712
    connections = session.exec(select(func.count()).select_from(ApiConnectionRow).where(
        ApiConnectionRow.tenant_id == tenant_id)).one()
    seen = {r.kind: r.at for r in session.exec(select(ActivityRow).where(
        ActivityRow.tenant_id == tenant_id)).all()}
    return active, connections, seen
