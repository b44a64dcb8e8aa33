"""What the governance servicers share (`DEFINITION.state`): settings, the counters (in memory
or Redis) with the rate limits and budgets over them, the compiled-policy cache, the egress
guard, the decision webhooks and the decision path itself (`Decider`)."""

from __future__ import annotations

from mesh.governance import engine
from mesh.governance.budgets import alert
from mesh.governance.decisions import Decider
from mesh.governance.limits import Limits, counters_for
from mesh.governance.metrics import GovernanceMetrics
from mesh.governance.settings import GovernanceSettings
from mesh.governance.usage import Budgets
from mesh.governance.webhooks import DecisionWebhooks
from mesh.runtime import caches
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.service import Runtime


class GovernanceState:
    def __init__(self, runtime: Runtime) -> None:
        self.settings = GovernanceSettings()
        # The gateway's global rate limit asks with this domain (one setting for both).
        self.rate_limit_domain = runtime.settings.rate_limit_domain
        self.counters = counters_for(self.settings)
        self.limits = Limits(self.settings, self.counters)
        self.cache = engine.PolicyCache(ttl=self.settings.policy_cache_ttl_seconds)
        caches.register("policies", self.cache.clear)
        self.budgets = Budgets(self.counters, runtime.database,
                               ttl=self.settings.policy_cache_ttl_seconds,
                               on_exhausted=alert(runtime.peers))
        self.metrics = GovernanceMetrics()
        # Decision webhooks are tenant URLs: every delivery goes through the egress guard.
        self.egress = EgressPolicy.from_settings(runtime.settings)
        self.webhooks = DecisionWebhooks(runtime.database, self.egress,
                                         ttl=self.settings.policy_cache_ttl_seconds)
        self.decider = Decider(runtime.database, self.cache, self.budgets, self.webhooks,
                               self.metrics)

    async def start(self) -> None:
        self.webhooks.start()

    async def close(self) -> None:
        await self.decider.close()
        await self.webhooks.close()
        await self.counters.close()
