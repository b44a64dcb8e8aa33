"""Tables of the governance service. A change here needs a migration:
`agentmesh db revision governance -m "..."`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mesh.runtime.outbox import OutboxFields
from mesh.runtime.tables import TenantTable, json_field, timestamp_field


class PolicyRow(TenantTable, table=True):
    """A policy's current state; its history is in `policy_versions`."""

    __tablename__ = "policies"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_policies_tenant_name"),)

    name: str
    description: str = ""
    effect: str = "POLICY_EFFECT_UNSPECIFIED"
    priority: int = 0
    match: dict[str, Any] = json_field(dict)
    cedar: str = ""
    enabled: bool = True
    version: int = 1
    created_by: str = ""
    # Version labels (`production`, ...) -> version number (mesh.runtime.versions): decisions
    # evaluate the `production` version when it is set, else the current one.
    version_labels: dict[str, int] = json_field(dict)


class PolicyVersionRow(TenantTable, table=True):
    """One immutable version of a policy: written on create and on every update, never changed."""

    __tablename__ = "policy_versions"
    __audit__ = False  # a record itself, not a change to audit
    __table_args__ = (sa.UniqueConstraint("tenant_id", "policy_id", "version",
                                          name="uq_policy_versions_policy_version"),)

    policy_id: str
    version: int
    cedar: str
    enabled: bool = True
    created_by: str = ""


class PolicySetRow(TenantTable, table=True):
    """The version of a tenant's whole policy set: one more on every policy change, so replicas
    know from one small read whether their compiled copy is current."""

    __tablename__ = "policy_sets"
    __audit__ = False  # a record itself, not a change to audit
    __table_args__ = (sa.UniqueConstraint("tenant_id", name="uq_policy_sets_tenant"),)

    version: int = 0
    enabled_policies: int = 0


class DecisionRow(TenantTable, table=True):
    """The audit record of one decision. Never updated."""

    __tablename__ = "decisions"
    __audit__ = False  # a record itself, not a change to audit

    correlation_id: str = Field(default="", index=True)
    intent: str = ""
    subject: str = ""
    allowed: bool = True
    reason: str = ""
    policy_id: str = ""
    decision_time_ms: int = 0
    decision_time_us: int = 0
    context: dict[str, Any] = json_field(dict)
    action: str = ""
    principal: str = ""
    resource: str = ""
    matching_policies: list[str] = json_field(list)
    policy_version: int = 0


class WebhookRow(TenantTable, table=True):
    """A URL that receives the tenant's decision events."""

    __tablename__ = "governance_webhooks"

    url: str
    events: str = "all"
    secret: str = ""
    created_by: str = ""
    last_delivery_at: datetime | None = timestamp_field()


class BudgetRow(TenantTable, table=True):
    """The token and cost limits of one budget holder (`tenant`, `agent:<name>`,
    `api_key:<id>`) per UTC day and month; the usage is counted in the shared counters."""

    __tablename__ = "budgets"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_budgets_tenant_name"),)

    name: str
    tokens_per_day: int = Field(default=0, sa_type=sa.BigInteger)
    tokens_per_month: int = Field(default=0, sa_type=sa.BigInteger)
    cents_per_day: int = 0
    cents_per_month: int = 0


class DecisionDeliveryRow(TenantTable, OutboxFields, table=True):
    """One decision to one decision webhook: written with the decision, sent from the outbox
    (mesh.runtime.outbox), at least once."""

    __tablename__ = "governance_webhook_deliveries"
    __audit__ = False  # a record itself, not a change to audit
    __table_args__ = (sa.Index("ix_governance_webhook_deliveries_due", "status",
                               "next_attempt_at"),)

    webhook_id: str = Field(index=True)
