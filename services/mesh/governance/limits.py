"""Rate limits: which limit applies to a descriptor, counted in fixed windows over counters that
live in memory or, when `AGENTMESH_REDIS_URL` is set, in Redis so that every gateway replica and
every governance replica share one count (the budgets count there too, mesh.governance.usage).
The gateway's global rate-limit filter asks about every request through Envoy's
`RateLimitService` (mesh.governance.api.rate_limit_service).

Descriptors the gateway sends (mesh.gateway.ratelimits.global_rate_limit), and the limit of each:

    [generic_key=global]                 AGENTMESH_RATE_LIMIT_GLOBAL_PER_MINUTE      (1000)
    [remote_address=<client ip>]         AGENTMESH_RATE_LIMIT_PER_IP_PER_MINUTE      (100)
    [tenant=<tenant id>]                 AGENTMESH_RATE_LIMIT_PER_TENANT_PER_MINUTE  (600)
    [tenant=<tenant id>, route=<rpc>]    AGENTMESH_RATE_LIMIT_PER_ROUTE_PER_MINUTE   (0: none),
                                         or the route's own limit in
                                         AGENTMESH_RATE_LIMIT_ROUTES (JSON: {"<rpc>": n})

A limit of 0 is no limit. Windows are aligned to the clock (a minute starts at :00), so every
replica agrees on when a window ends without talking to the others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from agentmesh.thirdparty.envoy.service.ratelimit.v3 import rls_pb2 as rls
from mesh.governance.settings import GovernanceSettings

OK = rls.RateLimitResponse.OK
OVER_LIMIT = rls.RateLimitResponse.OVER_LIMIT


class MemoryCounters:
    """Counters of one process."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[float, float]] = {}  # key -> (expires_at, value)

    async def incr(self, key: str, amount: float, ttl: int) -> float:
        now = time.time()
        expires, value = self._values.get(key, (0.0, 0.0))
        if expires <= now:
            expires, value = now + ttl, 0.0
        value += amount
        self._values[key] = (expires, value)
        if len(self._values) > 100000:
            self._values = {k: v for k, v in self._values.items() if v[0] > now}
        return value

    async def get(self, key: str) -> float:
        expires, value = self._values.get(key, (0.0, 0.0))
        return value if expires > time.time() else 0.0

    async def close(self) -> None:
        pass


class RedisCounters:
    """Counters in Redis: INCRBY(FLOAT) and EXPIRE in one round trip."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self.client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    async def incr(self, key: str, amount: float, ttl: int) -> float:
        async with self.client.pipeline(transaction=False) as pipe:
            if float(amount).is_integer():
                pipe.incrby(key, int(amount))
            else:
                pipe.incrbyfloat(key, amount)
            pipe.expire(key, ttl, nx=True)
            value, _ = await pipe.execute()
        return float(value)

    async def get(self, key: str) -> float:
        value = await self.client.get(key)
        return float(value) if value is not None else 0.0

    async def close(self) -> None:
        await self.client.aclose()


def counters_for(settings: GovernanceSettings):
    return RedisCounters(settings.redis_url) if settings.redis_url else MemoryCounters()


@dataclass(frozen=True)
class Window:
    start: int
    seconds: int

    @classmethod
    def now(cls, seconds: int) -> "Window":
        return cls(int(time.time()) // seconds * seconds, seconds)

    @property
    def reset_in(self) -> int:
        return max(1, self.start + self.seconds - int(time.time()))

    @property
    def reset_at(self) -> datetime:
        return datetime.fromtimestamp(self.start + self.seconds, UTC)


class Limits:
    """Which limit applies to a descriptor, and the counting itself."""

    def __init__(self, settings: GovernanceSettings, counters) -> None:
        self.settings = settings
        self.counters = counters
        self.window = settings.rate_limit_window_seconds

    def limit_for(self, entries: list[tuple[str, str]]) -> tuple[str, int]:
        keys = [k for k, _ in entries]
        s = self.settings
        if keys == ["generic_key"] and entries[0][1] == "global":
            return "global", s.rate_limit_global_per_minute
        if keys == ["remote_address"]:
            return "per_ip", s.rate_limit_per_ip_per_minute
        if keys == ["tenant"]:
            return "per_tenant", s.rate_limit_per_tenant_per_minute
        if keys == ["tenant", "route"]:
            return "per_route", s.rate_limit_routes.get(entries[1][1],
                                                        s.rate_limit_per_route_per_minute)
        return "", 0

    def key(self, domain: str, entries: list[tuple[str, str]], window: Window) -> str:
        flat = "|".join(f"{k}={v}" for k, v in entries)
        return f"agentmesh:rl:{domain}:{flat}:{window.start}"

    async def hit(self, domain: str, entries: list[tuple[str, str]], hits: int):
        """(code, limit, remaining, reset_in) for one descriptor; limit 0 = unlimited."""
        _, limit = self.limit_for(entries)
        if limit <= 0:
            return OK, 0, 0, 0
        window = Window.now(self.window)
        used = int(await self.counters.incr(self.key(domain, entries, window), hits,
                                            self.window + 5))
        code = OVER_LIMIT if used > limit else OK
        return code, limit, max(0, limit - used), window.reset_in

    async def usage(self, domain: str, entries: list[tuple[str, str]]):
        """(limit, used, window) without counting a hit."""
        _, limit = self.limit_for(entries)
        window = Window.now(self.window)
        used = int(await self.counters.get(self.key(domain, entries, window)))
        return limit, used, window


def day_window() -> Window:
    return Window.now(86400)
