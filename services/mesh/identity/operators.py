"""The tenants that operate the platform: their admins hold `*` (mesh/identity/roles.py)."""

from __future__ import annotations

from sqlmodel import Session, func, select

from mesh.identity.models import TenantRow


class Operators:
    """The tenants that operate the platform (settings.operator_tenants by name, else the first
    tenant registered): their admins hold `platform:read` and `system:write`. Resolved once per
    process; the first tenant never changes, and named tenants are looked up until every one
    exists."""

    def __init__(self, database, settings) -> None:
        self.db = database
        self.names = {n.strip().lower() for n in settings.operator_tenants.split(",") if n.strip()}
        self.ids: set[str] = set()
        self.complete = False

    def refresh(self, session: Session) -> None:
        if self.names:
            rows = session.exec(select(TenantRow.id).where(
                func.lower(TenantRow.name).in_(sorted(self.names)))).all()
            self.ids, self.complete = set(rows), len(rows) == len(self.names)
        else:
            first = session.exec(select(TenantRow.id).order_by(TenantRow.created_at,
                                                               TenantRow.id).limit(1)).first()
            self.ids, self.complete = ({first} if first else set()), first is not None

    def __contains__(self, tenant_id: str) -> bool:
        if not self.complete and tenant_id not in self.ids:
            with self.db.session() as session:  # once per process, or until they all exist
                self.refresh(session)
        return tenant_id in self.ids
