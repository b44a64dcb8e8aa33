"""The one decision path (docs/governance.md): the tenant's policies, compiled once per
policy-set version and cached, decide a request in Cedar (mesh.governance.engine) with the
tenant's usage today in its context; every decision is recorded, then sent to the tenant's
webhooks. Decide, Dispatch and DryRunPolicy all come through here."""

from __future__ import annotations

import asyncio
from datetime import UTC
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from google.protobuf import json_format
from sqlmodel import Session

from agentmesh.governance.v1 import governance_pb2 as pb
from mesh.governance import engine
from mesh.governance.models import DecisionRow
from mesh.governance.store import decision_message, decisions, enabled_policies
from mesh.governance.usage import Budgets
from mesh.runtime.audit import WAKE_TOPIC, AuditEvent
from mesh.runtime.context import Caller
from mesh.runtime.db import INLINE_ROWS, Database, in_turns
from mesh.runtime.errors import invalid_field
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.tables import is_uuid, new_id, utcnow
from mesh.runtime.wakeups import mark


class Decider:
    """Decides and records. A denial is written before it is answered; an allowed decision is
    answered at once and written with the others of the next FLUSH_SECONDS in one transaction
    (a write per decision was most of a decision's cost: every action of the platform now
    asks). Reading decisions flushes first, so a replica lists what it decided; a crash loses at
    most the allowed decisions of the last FLUSH_SECONDS (docs/governance.md)."""

    FLUSH_SECONDS = 0.05
    FLUSH_ROWS = 500

    def __init__(self, db: Database, cache: engine.PolicyCache, budgets: Budgets,
                 webhooks, metrics=None) -> None:
        self.db = db
        self.cache = cache
        self.budgets = budgets
        # The tenant's decision webhooks: their deliveries are written with each decision.
        self.webhooks = webhooks
        self.metrics = metrics
        self.pending: list[dict[str, Any]] = []  # decisions table rows, as values
        self.pending_deliveries: list = []
        self._flusher: asyncio.Task | None = None
        self._flushing = asyncio.Lock()

    async def flush(self) -> None:
        """Writes the allowed decisions not yet written; returns once those a flush already
        under way took are written too (a read that flushes first must see them)."""
        async with self._flushing:
            rows, self.pending = self.pending, []
            deliveries, self.pending_deliveries = self.pending_deliveries, []
            if rows:  # two rows each (the decision, its audit event): half a slice
                with_part = deliveries  # written with the first slice
                async for part in in_turns(rows, INLINE_ROWS // 2):
                    await self.db.write(lambda session: _record(session, part, with_part),
                                        inline=True)
                    with_part = []
                if deliveries:
                    self.webhooks.outbox.wake()

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(self.FLUSH_SECONDS)
        finally:
            self._flusher = None
        await self.flush()

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.flush()

    async def compiled(self, tenant_id: str) -> engine.CompiledPolicies | None:
        cache = self.cache
        hit = cache.fresh(tenant_id)
        if hit is not None:
            return hit
        p = self.db.placeholder
        (rows,) = await self.db.fetch((f'SELECT "version" FROM "policy_sets" WHERE "tenant_id" = {p}',
                                       (tenant_id,)), inline=True)
        version = int(rows[0][0]) if rows else 0
        current = cache.current(tenant_id, version)
        if current is not None:
            return current
        policies = await self.db.read(lambda s: enabled_policies(s, tenant_id))
        return cache.put(tenant_id, engine.CompiledPolicies.build(version, policies))

    async def usage_context(self, tenant_id: str) -> dict[str, Any]:
        tokens, cost = await self.budgets.usage(tenant_id, "tenant")
        return {"tokens_today": tokens, "cost_today_cents": int(cost * 100)}

    async def decide(self, tenant_id: str, request: engine.Request, *, scope_ok: bool = True,
                     correlation_id: str = "", intent: str = "",
                     context: dict[str, Any] | None = None) -> pb.Decision:
        request.validate()
        request.usage = await self.usage_context(tenant_id)
        compiled = await self.compiled(tenant_id)
        outcome = engine.evaluate(compiled, request, scope_ok)
        now = utcnow()
        row = dict(
            id=new_id(), tenant_id=tenant_id, correlation_id=correlation_id,
            intent=intent or request.action, subject=request.principal_id,
            allowed=outcome.allowed, reason=outcome.reason,
            policy_id=outcome.policy_ids[0] if outcome.policy_ids else "",
            decision_time_ms=outcome.micros // 1000, decision_time_us=outcome.micros,
            context=context if context is not None else {"arguments": request.arguments},
            action=request.action,
            principal=f'{request.principal_type}::"{request.principal_id}"',
            resource=f'{request.resource_type}::"{request.resource_id}"',
            matching_policies=list(outcome.matching), policy_version=outcome.version,
            created_at=now, updated_at=now)
        decision = decision_message(SimpleNamespace(**row))
        hooks = await self.webhooks.of(tenant_id)
        deliveries = self.webhooks.deliveries(hooks, decision) if hooks else []

        if outcome.allowed:
            self.pending.append(row)
            self.pending_deliveries.extend(deliveries)
            if len(self.pending) >= self.FLUSH_ROWS:
                await self.flush()
            elif self._flusher is None:
                self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())
        else:
            await self.db.write(lambda session: _record(session, [row], deliveries))
            if deliveries:
                self.webhooks.outbox.wake()
        if self.metrics is not None:
            self.metrics.decided(request.action, outcome.allowed, outcome.reason, outcome.micros)
        return decision


def _record(session: Session, rows: list[dict[str, Any]], deliveries: list) -> None:
    """Decisions, their audit events and their webhook deliveries, in one transaction. Rows of
    values inserted as such (one statement per table): every action of the platform asks, and
    building and flushing ORM objects was most of the cost of keeping the record."""
    session.execute(sa.insert(DecisionRow.__table__), rows)
    session.execute(sa.insert(AuditEvent.__table__), [audit_event(row) for row in rows])
    session.add_all(deliveries)
    mark(session, WAKE_TOPIC)  # the audit forwarder sends them on


def audit_event(row: dict[str, Any]) -> dict[str, Any]:
    """The decision in the audit trail (mesh.runtime.audit), as the values of its row."""
    kind = row["principal"].split("::", 1)[0]
    return dict(
        id=new_id(), tenant_id=row["tenant_id"],
        actor=row["subject"] if kind in ("User", "ApiKey") else "",
        api_key_id=row["subject"] if kind == "ApiKey" else "", service="governance",
        action="decision.allowed" if row["allowed"] else "decision.denied",
        resource_type="decision", resource_id=row["id"], correlation_id=row["correlation_id"],
        details={"action": row["action"], "principal": row["principal"],
                 "resource": row["resource"], "reason": row["reason"],
                 "policies": list(row["matching_policies"]),
                 "policy_version": row["policy_version"],
                 "decision_time_us": row["decision_time_us"]},
        created_at=row["created_at"], before=None, after=None, forwarded_at=None,
        next_forward_at=None)


def decision_request(message: pb.DecisionRequest, caller: Caller) -> engine.Request:
    """A DecisionRequest as the engine takes it: the caller as principal unless one is named."""
    return engine.Request(
        principal_type=message.principal_type or ("ApiKey" if caller.api_key_id else "User"),
        principal_id=message.principal_id or caller.api_key_id or caller.user_id,
        action=message.action, resource_type=message.resource_type,
        resource_id=message.resource_id,
        arguments=json_format.MessageToDict(message.arguments),
        scopes=caller.scopes)


# ---- the record ------------------------------------------------------------------------------

LIST_ORDERS = ("-created_at", "created_at", "-decision_time_ms")


async def list_decisions(db: Database, tenant_id: str, request: pb.ListDecisionsRequest) -> Page:
    page = PageRequest.of(request)
    order = page.order_by or "-created_at"
    if order not in LIST_ORDERS:
        raise invalid_field("order_by", "use -created_at, created_at or -decision_time_ms")
    start = request.start_time.ToDatetime(UTC) if request.HasField("start_time") else None
    end = request.end_time.ToDatetime(UTC) if request.HasField("end_time") else None
    if start and end and end < start:
        raise invalid_field("end_time", "precedes start_time")
    where = []
    if request.HasField("allowed"):
        where.append(DecisionRow.allowed == request.allowed)
    if start:
        where.append(DecisionRow.created_at >= start)
    if end:
        where.append(DecisionRow.created_at < end)
    return await db.read(lambda s: decisions.list(
        s, tenant_id, PageRequest(page.page, page.page_size, order),
        filters={"intent": request.intent, "policy_id": request.policy_id,
                 "subject": request.subject, "correlation_id": request.correlation_id},
        where=tuple(where)))


async def get_decision(db: Database, tenant_id: str, decision_id: str) -> pb.Decision:
    if decision_id and not is_uuid(decision_id):
        raise decisions.not_found(decision_id)
    decision = await decisions.fetch(db, tenant_id, decision_id)
    decision.decision_time_ms = decision.decision_time_us / 1000  # the column: whole ms
    return decision
