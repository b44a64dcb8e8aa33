"""The governance service's own settings (`AGENTMESH_*`): the rate limits, where their counters
live, and how long a replica trusts its compiled policies."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class GovernanceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTMESH_", extra="ignore")

    # redis://127.0.0.1:6379/0 shares counters between replicas; empty keeps them in memory.
    redis_url: str = ""
    rate_limit_window_seconds: int = 60
    rate_limit_global_per_minute: int = 1000
    rate_limit_per_ip_per_minute: int = 100
    rate_limit_per_tenant_per_minute: int = 600
    rate_limit_per_route_per_minute: int = 0
    # Per-route limits that differ from the one above, by gRPC method path, for example
    # {"/agentmesh.agents.v1.AgentService/InteractWithAgent": 60}: an expensive route limited
    # tighter than reads. Counted per tenant, like the per-route limit.
    rate_limit_routes: dict[str, int] = {}
    # How long a replica trusts its compiled copy of a tenant's policies before it rereads the
    # policy-set version (replicas converge on a change within this time).
    policy_cache_ttl_seconds: float = 2.0
