"""What the governance servicers of one runtime share: settings, counters, the compiled-policy
cache, the webhook sender and the decision path itself (`Decider`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from sqlmodel import Session, select

from agentmesh.governance.v1 import governance_pb2 as pb
from mesh.governance import engine
from mesh.governance.limits import GovernanceSettings, Limits, counters_for, day_window
from mesh.governance.models import DecisionRow, PolicyRow, PolicySetRow, WebhookRow
from mesh.runtime import caches
from mesh.runtime.db import Database
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.tables import new_id, utcnow
from mesh.runtime.webhooks import WebhookSender

log = logging.getLogger("mesh.governance")
DECISION_EVENT = "governance.decision"


@dataclass
class Budgets:
    """Token and cost usage per tenant and agent and UTC day, in the shared counters. Cost is
    counted in micro-dollars so that Redis INCRBY stays exact."""

    counters: Any
    limits_seen: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def _key(tenant_id: str, who: str, what: str) -> str:
        return f"agentmesh:budget:{tenant_id}:{who}:{day_window().start}:{what}"

    async def usage(self, tenant_id: str, who: str) -> tuple[int, float]:
        tokens = await self.counters.get(self._key(tenant_id, who, "tokens"))
        micros = await self.counters.get(self._key(tenant_id, who, "cost_micros"))
        return int(tokens), micros / 1e6

    async def add(self, tenant_id: str, who: str, tokens: int, cost_usd: float) -> None:
        ttl = 86400 + 3600
        if tokens:
            await self.counters.incr(self._key(tenant_id, who, "tokens"), int(tokens), ttl)
        if cost_usd:
            await self.counters.incr(self._key(tenant_id, who, "cost_micros"),
                                     int(round(cost_usd * 1e6)), ttl)

    async def message(self, tenant_id: str, who: str) -> pb.BudgetUsage:
        tokens, cost = await self.usage(tenant_id, who)
        usage = pb.BudgetUsage(name=who, tokens_today=tokens, cost_today_usd=cost,
                               max_cost_per_day=self.limits_seen.get(f"{tenant_id}:{who}", 0.0))
        usage.reset_at.FromDatetime(day_window().reset_at)
        return usage


class Decider:
    """The one decision path: compiled policies (cached per tenant and policy-set version),
    Cedar evaluation, the audit record, the webhook event."""

    def __init__(self, db: Database, shared: "Shared") -> None:
        self.db = db
        self.shared = shared

    async def compiled(self, tenant_id: str) -> engine.CompiledPolicies | None:
        cache = self.shared.cache
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

        def load(session: Session):
            return [(r.id, r.name, r.version, r.cedar) for r in session.exec(
                select(PolicyRow).where(PolicyRow.tenant_id == tenant_id, PolicyRow.enabled)
                .order_by(PolicyRow.name)).all()]

        policies = await self.db.read(load)
        return cache.put(tenant_id, engine.CompiledPolicies.build(version, policies))

    async def usage_context(self, tenant_id: str) -> dict[str, Any]:
        tokens, cost = await self.shared.budgets.usage(tenant_id, "tenant")
        return {"tokens_today": tokens, "cost_today_cents": int(cost * 100)}

    async def decide(self, tenant_id: str, request: engine.Request, *, scope_ok: bool = True,
                     correlation_id: str = "", intent: str = "",
                     context: dict[str, Any] | None = None) -> pb.Decision:
        request.validate()
        request.usage = await self.usage_context(tenant_id)
        compiled = await self.compiled(tenant_id)
        outcome = engine.evaluate(compiled, request, scope_ok)
        row = DecisionRow(
            id=new_id(), tenant_id=tenant_id, correlation_id=correlation_id,
            intent=intent or request.action, subject=request.principal_id,
            allowed=outcome.allowed, reason=outcome.reason,
            policy_id=outcome.policy_ids[0] if outcome.policy_ids else "",
            decision_time_ms=outcome.micros // 1000, decision_time_us=outcome.micros,
            context=context if context is not None else {"arguments": request.arguments},
            action=request.action,
            principal=f'{request.principal_type}::"{request.principal_id}"',
            resource=f'{request.resource_type}::"{request.resource_id}"',
            matching_policies=outcome.matching, policy_version=outcome.version)
        now = utcnow()
        row.created_at = row.updated_at = now

        def record(session: Session) -> None:
            session.add(row)

        await self.db.write(record)
        decision = decision_message(row)
        self.shared.notify(tenant_id, decision)
        return decision


def decision_message(row: DecisionRow) -> pb.Decision:
    from mesh.runtime.convert import to_message

    decision = to_message(row, pb.Decision)
    decision.decision_time_ms = row.decision_time_us / 1000  # the column keeps whole ms
    return decision


class Shared:
    def __init__(self, runtime) -> None:
        self.settings = GovernanceSettings()
        self.counters = counters_for(self.settings)
        self.limits = Limits(self.settings, self.counters)
        self.cache = engine.PolicyCache(ttl=self.settings.policy_cache_ttl_seconds)
        caches.register("policies", self.cache.clear)
        self.budgets = Budgets(self.counters)
        # Decision webhooks are tenant URLs: every delivery goes through the egress guard.
        self.egress = EgressPolicy.from_settings(runtime.settings)
        self.sender = WebhookSender(egress=self.egress)
        self._background: set = set()
        self._webhooks: dict[str, tuple[float, list[tuple[str, str, str]]]] = {}
        self.db: Database | None = runtime.db
        self.decider = Decider(runtime.db, self) if runtime.db is not None else None

    def forget_webhooks(self, tenant_id: str) -> None:
        self._webhooks.pop(tenant_id, None)

    async def webhooks(self, tenant_id: str) -> list[tuple[str, str, str]]:
        entry = self._webhooks.get(tenant_id)
        if entry is not None and time.monotonic() - entry[0] < self.settings.policy_cache_ttl_seconds:
            return entry[1]
        hooks = await self.db.read(lambda s: [(w.url, w.secret, w.events) for w in s.exec(
            select(WebhookRow).where(WebhookRow.tenant_id == tenant_id)).all()])
        self._webhooks[tenant_id] = (time.monotonic(), hooks)
        return hooks

    def notify(self, tenant_id: str, decision: pb.Decision) -> None:
        """Sends the decision to the tenant's webhooks in the background: looking them up and
        delivering both happen after the decision has been answered."""
        import asyncio

        async def fan_out() -> None:
            try:
                hooks = await self.webhooks(tenant_id)
            except Exception:  # noqa: BLE001
                log.exception("could not read webhooks of tenant %s", tenant_id)
                return
            if not hooks:
                return
            record = json_format.MessageToDict(decision, preserving_proto_field_name=True)
            # Seed 002's decision webhook: `timestamp` is when the decision was made.
            payload = {"event": DECISION_EVENT, "service": "governance",
                       "timestamp": record.get("created_at", ""), **record}
            for url, secret, events in hooks:
                if events == "all" or (events == "denied") != decision.allowed:
                    self.sender.send(url, secret, DECISION_EVENT, payload)

        task = asyncio.get_running_loop().create_task(fan_out())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        await self.sender.close()
        await self.counters.close()


def shared(runtime) -> Shared:
    state = getattr(runtime, "_governance", None)
    if state is None:
        state = Shared(runtime)
        runtime._governance = state
    return state
