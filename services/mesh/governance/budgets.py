"""A tenant's budgets (docs/governance.md "Budgets"): token and cost limits per UTC day and
month for the tenant, an agent (`agent:<name>`) or an API key (`api_key:<id>`), set, listed
with their usage and what remains, and removed. The counting is mesh.governance.usage."""

from __future__ import annotations

import logging

from sqlmodel import Session, select

from agentmesh.governance.v1 import governance_pb2 as pb
from mesh.governance.models import BudgetRow
from mesh.governance.usage import Budgets
from mesh.runtime import audit, platform_events
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.errors import NotFound, invalid_field
from mesh.runtime.tables import utcnow

log = logging.getLogger("mesh.governance.budgets")
LIMITS = ("tokens_per_day", "tokens_per_month", "cents_per_day", "cents_per_month")


def _find(session: Session, tenant_id: str, name: str) -> BudgetRow | None:
    return session.exec(select(BudgetRow).where(BudgetRow.tenant_id == tenant_id,
                                                BudgetRow.name == name)).first()


async def set_budget(db: Database, budgets: Budgets, caller: Caller, name: str,
                     budget: pb.Budget, mask: list[str] | None = None) -> pb.Budget:
    """Sets the holder's limits: those `mask` names, or all four without one."""
    for path in mask or ():
        if path not in LIMITS:
            raise invalid_field("update_mask", f"{path!r} is not one of {', '.join(LIMITS)}")
    values = {key: getattr(budget, key) for key in (mask or LIMITS)}
    for key, value in values.items():
        if value < 0:
            raise invalid_field(f"budget.{key}", "must not be negative")

    def write(session: Session) -> BudgetRow:
        row = _find(session, caller.tenant_id, name)
        before = {key: getattr(row, key) for key in LIMITS} if row else None
        now = utcnow()
        if row is None:
            row = BudgetRow(tenant_id=caller.tenant_id, name=name, created_at=now)
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at = now
        session.add(row)
        session.flush()
        audit.record(session, caller, "budget.set", "budget", name, before=before, after=values)
        return row

    row = await db.write(write)
    budgets.forget(caller.tenant_id)
    return await budgets.budget(caller.tenant_id, row, name)


async def list_budgets(budgets: Budgets, tenant_id: str) -> pb.ListBudgetsResponse:
    budgets.forget(tenant_id)
    rows = await budgets.limits(tenant_id)
    names = ["tenant", *sorted(n for n in rows if n != "tenant")]
    return pb.ListBudgetsResponse(items=[await budgets.budget(tenant_id, rows.get(n), n)
                                         for n in names])


async def delete_budget(db: Database, budgets: Budgets, caller: Caller, name: str) -> None:
    def remove(session: Session) -> None:
        row = _find(session, caller.tenant_id, name)
        if row is None:
            raise NotFound(f"budget {name!r} not found", reason="BUDGET_NOT_FOUND",
                           details={"budget": name})
        audit.record(session, caller, "budget.delete", "budget", name,
                     before={key: getattr(row, key) for key in LIMITS})
        session.delete(row)

    await db.write(remove)
    budgets.forget(caller.tenant_id)


def alert(peers):
    """What is told when a budget runs out: a warning in the log and the tenant's
    `budget.exceeded` platform event (its webhooks)."""
    def exhausted(tenant_id: str, check: pb.BudgetCheck) -> None:
        log.warning("budget exhausted: tenant %s, %s (%s); refused for %ss", tenant_id,
                    check.budget, check.reason, check.retry_after_seconds)
        if "integration" in peers.addresses:
            platform_events.emit(peers, tenant_id, "budget.exceeded", {
                "budget": check.budget, "window": check.window, "reason": check.reason,
                "retry_after_seconds": check.retry_after_seconds})
    return exhausted
