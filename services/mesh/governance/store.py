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
from mesh.runtime.versions import PRODUCTION, Versions

policies = TenantRepository(PolicyRow, noun="policy", message=pb.Policy,
                            search_columns=("name", "description"),
                            order_columns=("name", "priority"), default_order="name", quota="resource")
versions = TenantRepository(PolicyVersionRow, noun="policy_version", name_column=None,
                            order_columns=("version",), default_order="-version", quota="version")
# A policy's versions follow the one rule set of mesh.runtime.versions (the row's current Cedar
# text and switch are also its current version's; a deleted policy keeps its versions).
POLICY_VERSIONS: Versions[PolicyVersionRow] = Versions(
    policies, versions, parent="policy_id", noun="policy", labels="version_labels")
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
    rows = session.exec(select(PolicyRow).where(*where).order_by(PolicyRow.name)).all()
    # A policy whose `production` label names an older version is evaluated at that version.
    pinned = {(r.id, r.version_labels[PRODUCTION]) for r in rows
              if r.version_labels.get(PRODUCTION, r.version) != r.version}
    texts = {(v.policy_id, v.version): v.cedar for v in session.exec(select(PolicyVersionRow).where(
        PolicyVersionRow.tenant_id == tenant_id,
        PolicyVersionRow.policy_id.in_([p for p, _ in pinned]))).all()
        if (v.policy_id, v.version) in pinned} if pinned else {}
    out = []
    for r in rows:
        number = r.version_labels.get(PRODUCTION, r.version)
        out.append((r.id, r.name, number, texts.get((r.id, number), r.cedar)))
    return out


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


def add_version(session: Session, row: PolicyRow, caller: Caller) -> PolicyVersionRow:
    """The policy as it is now (its `version` already set), as that immutable version."""
    return POLICY_VERSIONS.add(session, row, created_by=caller.user_id, number=row.version,
                               cedar=row.cedar, enabled=row.enabled)


def policy_message(row: PolicyRow) -> pb.Policy:
    return to_message(row, pb.Policy)


def version_message(version: PolicyVersionRow, row: PolicyRow) -> pb.PolicyVersion:
    return to_message(version, pb.PolicyVersion,
                      labels=POLICY_VERSIONS.labels_at(row, version.version))
