"""The audit trail every service keeps: one row per mutation, written in the same transaction as
the mutation itself, so a change is never recorded without happening or happen unrecorded.

    def apply(session):
        row = skills.add(session, SkillRow(...))
        audit.record(session, caller, "create", "skill", row.id)
        return row

A row says who (the caller's user, or the calling service for service-to-service calls), which
tenant, what (`action` on `resource_type`/`resource_id`), when, in which service and under which
correlation id. `details` is for extra context and must never hold a secret value. The table
lives in each service's own database (the runtime's migration branch creates it), so the
observability service can collect it later without any service reaching into another's data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel

from mesh.runtime.context import Caller, current_service
from mesh.runtime.tables import json_field, new_id, timestamp_field, utcnow


class AuditEvent(SQLModel, table=True):
    """One mutation (or a sensitive read, such as revealing a secret)."""

    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("ix_audit_events_tenant_created_at", "tenant_id", "created_at", "id"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    tenant_id: str
    actor: str = ""
    service: str = ""
    action: str
    resource_type: str
    resource_id: str = ""
    correlation_id: str = ""
    details: dict[str, Any] = json_field(dict)
    created_at: datetime | None = timestamp_field(nullable=False)


def record(session: Session, caller: Caller, action: str, resource_type: str, resource_id: str,
           **details: Any) -> AuditEvent:
    """Adds an audit event to the session's transaction (committed with the change it records)."""
    event = AuditEvent(tenant_id=caller.tenant_id, actor=caller.user_id,
                       service=current_service.get(), action=action, resource_type=resource_type,
                       resource_id=resource_id, correlation_id=caller.correlation_id,
                       details=details, created_at=utcnow())
    session.add(event)
    return event
