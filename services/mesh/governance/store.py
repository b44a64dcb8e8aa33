"""The governance service's repositories and its rows as messages; the version of a tenant's
policy set, one more on every policy change, and each policy's immutable versions."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from agentmesh.governance.v1 import governance_pb2 as pb
from mesh.governance.models import (DecisionRow, PolicyRow, PolicySetRow, PolicyVersionRow,
                                    WebhookRow)
from mesh.runtime.context import Caller
from mesh.runtime.convert import to_message
from mesh.runtime.repository import TenantRepository
from mesh.runtime.tables import utcnow

policies = TenantRepository(PolicyRow, noun="policy", message=pb.Policy,
                            search_columns=("name", "description"),
                            order_columns=("name", "priority"), default_order="name", quota="resource")
versions = TenantRepository(PolicyVersionRow, noun="policy_version", name_column=None,
                            order_columns=("version",), default_order="-version", quota="version")
decisions = TenantRepository(DecisionRow, noun="decision", message=pb.Decision, name_column=None,
                             order_columns=("decision_time_ms",), default_order="-created_at")
webhooks = TenantRepository(WebhookRow, noun="webhook", message=pb.Webhook, name_column=None, quota="resource")


def decision_message(row: DecisionRow) -> pb.Decision:
    decision = to_message(row, pb.Decision)
    decision.decision_time_ms = row.decision_time_us / 1000  # the column keeps whole ms
    return decision


def enabled_policies(session: Session, tenant_id: str,
                     except_name: str = "") -> list[tuple[str, str, int, str]]:
    """(id, name, version, cedar) of the tenant's enabled policies, by name: what compiles."""
    where = [PolicyRow.tenant_id == tenant_id, PolicyRow.enabled]
    if except_name:
        where.append(PolicyRow.name != except_name)
    return [(r.id, r.name, r.version, r.cedar) for r in session.exec(
        select(PolicyRow).where(*where).order_by(PolicyRow.name)).all()]


def bump_policy_set(session: Session, tenant_id: str) -> int:
    """The tenant's policy set one version further (made at its first policy), with its count of
    enabled policies; in the transaction that changed a policy."""
    row = session.exec(select(PolicySetRow).where(PolicySetRow.tenant_id == tenant_id)
                       .with_for_update()).first()
    if row is None:  # the tenant's first policy; two concurrent firsts: one insert wins
        try:
            with session.begin_nested():
                session.add(PolicySetRow(tenant_id=tenant_id, version=0, created_at=utcnow(),
                                         updated_at=utcnow()))
        except IntegrityError:
            pass
        row = session.exec(select(PolicySetRow).where(PolicySetRow.tenant_id == tenant_id)
                           .with_for_update()).one()
    row.version += 1
    row.enabled_policies = len(session.exec(select(PolicyRow.id).where(
        PolicyRow.tenant_id == tenant_id, PolicyRow.enabled)).all())
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return row.version


def version_row(row: PolicyRow, caller: Caller) -> PolicyVersionRow:
    """The policy as it is now, as its immutable version."""
    now = utcnow()
    return PolicyVersionRow(tenant_id=row.tenant_id, policy_id=row.id, version=row.version,
                            cedar=row.cedar, enabled=row.enabled, created_by=caller.user_id,
                            created_at=now, updated_at=now)
