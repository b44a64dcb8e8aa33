"""What a tenant has used: its token and cost budgets per UTC day (tenant-wide and per agent,
checked before a model call and recorded after it), and its rate-limit windows as
GetRateLimits shows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentmesh.governance.v1 import governance_pb2 as pb
from mesh.governance.limits import Limits, day_window


@dataclass
class Budgets:
    """Token and cost usage per tenant and agent and UTC day, in the shared counters. Cost is
    counted in micro-dollars so that Redis INCRBY stays exact."""

    counters: Any
    # The daily cost limits callers last checked against ("<tenant>:<who>" -> dollars), shown
    # with the usage.
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

    async def check(self, tenant_id: str, request: pb.CheckBudgetRequest) -> pb.BudgetCheck:
        """Whether a call may go ahead: its estimated tokens within the per-call limit, the
        agent's and the tenant's cost today under their daily limits."""
        agent = f"agent:{request.agent_id}" if request.agent_id else ""
        if agent:
            self.limits_seen[f"{tenant_id}:{agent}"] = request.max_cost_per_day
        if request.tenant_max_cost_per_day:
            self.limits_seen[f"{tenant_id}:tenant"] = request.tenant_max_cost_per_day
        check = pb.BudgetCheck(allowed=True, reason="within budget",
                               tenant=await self.message(tenant_id, "tenant"))
        if agent:
            check.agent.CopyFrom(await self.message(tenant_id, agent))
        if request.max_tokens_per_call and request.estimated_tokens > request.max_tokens_per_call:
            check.allowed = False
            check.reason = (f"max_tokens_per_call exceeded: {request.estimated_tokens} > "
                            f"{request.max_tokens_per_call}")
        elif agent and request.max_cost_per_day and \
                check.agent.cost_today_usd >= request.max_cost_per_day:
            check.allowed = False
            check.reason = (f"agent max_cost_per_day reached: ${check.agent.cost_today_usd:.4f} "
                            f"of ${request.max_cost_per_day:.4f}")
        elif request.tenant_max_cost_per_day and \
                check.tenant.cost_today_usd >= request.tenant_max_cost_per_day:
            check.allowed = False
            check.reason = (f"tenant max_cost_per_day reached: ${check.tenant.cost_today_usd:.4f} "
                            f"of ${request.tenant_max_cost_per_day:.4f}")
        return check

    async def record(self, tenant_id: str, agent_id: str, tokens: int,
                     cost_usd: float) -> pb.BudgetUsage:
        """A call's tokens and cost, counted for the tenant and its agent; the agent's usage
        (the tenant's without an agent)."""
        await self.add(tenant_id, "tenant", tokens, cost_usd)
        if agent_id:
            who = f"agent:{agent_id}"
            await self.add(tenant_id, who, tokens, cost_usd)
            self.limits_seen.setdefault(f"{tenant_id}:{who}", 0.0)
            return await self.message(tenant_id, who)
        return await self.message(tenant_id, "tenant")


async def rate_limits(limits: Limits, budgets: Budgets, domain: str, tenant_id: str,
                      client_address: str) -> pb.RateLimits:
    """The tenant's rate-limit windows (global, per IP when the address is known, per tenant)
    and its budgets, without counting a hit."""
    answer = pb.RateLimits(tenant_id=tenant_id)
    answer.timestamp.GetCurrentTime()
    descriptors = [("global", [("generic_key", "global")]),
                   ("per_tenant", [("tenant", tenant_id)])]
    if client_address:
        descriptors.insert(1, ("per_ip", [("remote_address", client_address)]))
    for name, entries in descriptors:
        limit, used, window = await limits.usage(domain, entries)
        usage = answer.limits.add(name=name, limit=limit, used=used,
                                  remaining=max(0, limit - used) if limit else 0)
        usage.window.FromSeconds(window.seconds)
        usage.reset_at.FromDatetime(window.reset_at)
    answer.budgets.append(await budgets.message(tenant_id, "tenant"))
    prefix = f"{tenant_id}:agent:"
    for key in sorted(budgets.limits_seen):
        if key.startswith(prefix):
            answer.budgets.append(await budgets.message(tenant_id, key[len(tenant_id) + 1:]))
    return answer
