"""What a tenant has used: its token and cost budgets per UTC day and month (tenant-wide, per
agent and per API key, checked before a model call and recorded after it with its real usage),
and its rate-limit windows as GetRateLimits shows them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import select

from agentmesh.governance.v1 import governance_pb2 as pb
from mesh.governance.limits import Limits, day_window
from mesh.governance.models import BudgetRow


def month_window() -> tuple[str, int, datetime]:
    """The current UTC month: its key, the seconds until it ends, when it ends."""
    now = datetime.now(UTC)
    following = (now.replace(year=now.year + 1, month=1, day=1) if now.month == 12 else
                 now.replace(month=now.month + 1, day=1))
    following = following.replace(hour=0, minute=0, second=0, microsecond=0)
    return f"m{now:%Y%m}", max(1, int((following - now).total_seconds())), following


HOLDERS = ("tenant", "agent:", "api_key:")


@dataclass
class Budgets:
    """Token and cost usage per tenant, agent and API key, per UTC day and month, in the shared
    counters (Redis when configured: every replica sees one count). Cost is counted in
    micro-dollars so that Redis INCRBY stays exact. The limits are rows of `budgets`, read
    through a short cache (`ttl`, as the policies are)."""

    counters: Any
    db: Any = None
    ttl: float = 2.0
    # The daily cost limits callers last checked against ("<tenant>:<who>" -> dollars), shown
    # with the usage.
    limits_seen: dict[str, float] = field(default_factory=dict)
    _limits: dict[str, tuple[float, dict[str, BudgetRow]]] = field(default_factory=dict)
    # Told once per holder and window when a budget is exhausted: (tenant, check).
    on_exhausted: Callable[[str, pb.BudgetCheck], None] | None = None

    @staticmethod
    def _key(tenant_id: str, who: str, what: str, window: str = "") -> str:
        return f"agentmesh:budget:{tenant_id}:{who}:{window or day_window().start}:{what}"

    async def usage(self, tenant_id: str, who: str, window: str = "") -> tuple[int, float]:
        tokens = await self.counters.get(self._key(tenant_id, who, "tokens", window))
        micros = await self.counters.get(self._key(tenant_id, who, "cost_micros", window))
        return int(tokens), micros / 1e6

    async def add(self, tenant_id: str, who: str, tokens: int, cost_usd: float) -> None:
        month, month_left, _ = month_window()
        for window, ttl in (("", 86400 + 3600), (month, month_left + 3600)):
            if tokens:
                await self.counters.incr(self._key(tenant_id, who, "tokens", window),
                                         int(tokens), ttl)
            if cost_usd:
                await self.counters.incr(self._key(tenant_id, who, "cost_micros", window),
                                         int(round(cost_usd * 1e6)), ttl)

    async def message(self, tenant_id: str, who: str) -> pb.BudgetUsage:
        tokens, cost = await self.usage(tenant_id, who)
        usage = pb.BudgetUsage(name=who, tokens_today=tokens, cost_today_usd=cost,
                               max_cost_per_day=self.limits_seen.get(f"{tenant_id}:{who}", 0.0))
        usage.reset_at.FromDatetime(day_window().reset_at)
        return usage

    # -- the limits ------------------------------------------------------------------------------
    async def limits(self, tenant_id: str) -> dict[str, BudgetRow]:
        hit = self._limits.get(tenant_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        rows: dict[str, BudgetRow] = {}
        if self.db is not None:
            found = await self.db.read(lambda s: list(s.exec(
                select(BudgetRow).where(BudgetRow.tenant_id == tenant_id)).all()))
            rows = {row.name: row for row in found}
        if len(self._limits) > 10000:
            self._limits.clear()
        self._limits[tenant_id] = (time.monotonic(), rows)
        return rows

    def forget(self, tenant_id: str) -> None:
        self._limits.pop(tenant_id, None)

    async def budget(self, tenant_id: str, row: BudgetRow | None, name: str) -> pb.Budget:
        """A holder's limits with its usage and what remains."""
        month, _, month_end = month_window()
        day_tokens, day_cost = await self.usage(tenant_id, name)
        month_tokens, month_cost = await self.usage(tenant_id, name, month)
        answer = pb.Budget(name=name, tokens_today=day_tokens, tokens_this_month=month_tokens,
                           usd_today=day_cost, usd_this_month=month_cost)
        if row is not None:
            answer.tokens_per_day, answer.tokens_per_month = row.tokens_per_day, row.tokens_per_month
            answer.cents_per_day, answer.cents_per_month = row.cents_per_day, row.cents_per_month
            answer.updated_at.FromDatetime(row.updated_at)
        left = [limit - used for limit, used in ((answer.tokens_per_day, day_tokens),
                                                 (answer.tokens_per_month, month_tokens)) if limit]
        answer.tokens_remaining = max(0, min(left)) if left else -1
        left_usd = [limit / 100 - used for limit, used in ((answer.cents_per_day, day_cost),
                                                           (answer.cents_per_month, month_cost))
                    if limit]
        answer.usd_remaining = max(0.0, min(left_usd)) if left_usd else -1.0
        answer.day_resets_at.FromDatetime(day_window().reset_at)
        answer.month_resets_at.FromDatetime(month_end)
        return answer

    async def _exhausted(self, tenant_id: str, who: str, row: BudgetRow
                         ) -> tuple[str, int, str] | None:
        """(window, seconds to its end, why) of the first limit `who` has used up."""
        month, month_left, _ = month_window()
        day = day_window()
        for window, key, left, tokens_limit, usd_limit in (
                ("day", "", day.reset_in, row.tokens_per_day, row.cents_per_day / 100),
                ("month", month, month_left, row.tokens_per_month, row.cents_per_month / 100)):
            if not tokens_limit and not usd_limit:
                continue
            tokens, cost = await self.usage(tenant_id, who, key)
            if tokens_limit and tokens >= tokens_limit:
                return window, left, (f"{who} used {tokens} of {tokens_limit} tokens this "
                                      f"{window}")
            if usd_limit and cost >= usd_limit:
                return window, left, f"{who} used ${cost:.4f} of ${usd_limit:.4f} this {window}"
        return None

    async def check(self, tenant_id: str, request: pb.CheckBudgetRequest) -> pb.BudgetCheck:
        """Whether a call may go ahead: its estimated tokens within the per-call limit, the
        budgets of the tenant, the agent and the API key not used up (a limit is reached when
        the usage counted so far is at or past it), the agent's and the tenant's cost today
        under the daily limits the caller names."""
        agent = f"agent:{request.agent_id}" if request.agent_id else ""
        if agent:
            self.limits_seen[f"{tenant_id}:{agent}"] = request.max_cost_per_day
        if request.tenant_max_cost_per_day:
            self.limits_seen[f"{tenant_id}:tenant"] = request.tenant_max_cost_per_day
        check = pb.BudgetCheck(allowed=True, reason="within budget",
                               tenant=await self.message(tenant_id, "tenant"))
        if agent:
            check.agent.CopyFrom(await self.message(tenant_id, agent))
        configured = await self.limits(tenant_id)
        holders = ["tenant", agent, f"api_key:{request.api_key_id}" if request.api_key_id else ""]
        for who in holders:
            row = configured.get(who) if who else None
            if row is None:
                continue
            spent = await self._exhausted(tenant_id, who, row)
            if spent is not None:
                check.allowed = False
                check.window, check.retry_after_seconds, check.reason = spent
                check.budget = who
                await self._tell(tenant_id, check)
                return check
        if request.max_tokens_per_call and request.estimated_tokens > request.max_tokens_per_call:
            check.allowed = False
            check.reason = (f"max_tokens_per_call exceeded: {request.estimated_tokens} > "
                            f"{request.max_tokens_per_call}")
        elif agent and request.max_cost_per_day and \
                check.agent.cost_today_usd >= request.max_cost_per_day:
            check.allowed = False
            check.reason = (f"agent max_cost_per_day reached: ${check.agent.cost_today_usd:.4f} "
                            f"of ${request.max_cost_per_day:.4f}")
            check.budget, check.window = agent, "day"
            check.retry_after_seconds = day_window().reset_in
        elif request.tenant_max_cost_per_day and \
                check.tenant.cost_today_usd >= request.tenant_max_cost_per_day:
            check.allowed = False
            check.reason = (f"tenant max_cost_per_day reached: ${check.tenant.cost_today_usd:.4f} "
                            f"of ${request.tenant_max_cost_per_day:.4f}")
            check.budget, check.window = "tenant", "day"
            check.retry_after_seconds = day_window().reset_in
        return check

    async def _tell(self, tenant_id: str, check: pb.BudgetCheck) -> None:
        """The alert, once per holder and window (the first replica to count it tells)."""
        if self.on_exhausted is None:
            return
        window = day_window().start if check.window == "day" else month_window()[0]
        key = f"agentmesh:budget-alert:{tenant_id}:{check.budget}:{window}"
        if await self.counters.incr(key, 1, check.retry_after_seconds + 60) == 1:
            self.on_exhausted(tenant_id, check)

    async def record(self, tenant_id: str, agent_id: str, tokens: int,
                     cost_usd: float, api_key_id: str = "") -> pb.BudgetUsage:
        """A call's tokens and cost, counted for the tenant, its agent and API key; the agent's
        usage (the tenant's without an agent)."""
        await self.add(tenant_id, "tenant", tokens, cost_usd)
        if api_key_id:
            await self.add(tenant_id, f"api_key:{api_key_id}", tokens, cost_usd)
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
