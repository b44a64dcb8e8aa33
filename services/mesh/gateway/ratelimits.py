"""The gateway's rate limits (docs/rate-limits.md): Envoy's local token buckets per tenant, per
client IP and per IP on the auth routes, and, when turned on, its global rate-limit filter
asking governance's RateLimitService.

One descriptor scheme for both: the same `rate_limits` actions feed the local buckets here and
envoy.filters.http.ratelimit, whose service (GatewayOptions.global_rate_limit_domain) keeps the
counters in Redis.
"""

from __future__ import annotations

from typing import Any

from mesh.contract import Rpc
from mesh.gateway.envoy import EXTENSIONS
from mesh.gateway.options import GatewayOptions

_UINT32_MAX = 2**32 - 1


def rate_class_metadata(rpc: Rpc) -> dict[str, Any]:
    """The route metadata that puts an RPC in a rate class of its own: the credential routes
    (`auth.rate_class` in the contract), counted per client IP in the "auth" bucket."""
    if rpc.rate_class == "credentials":
        return {"rate_class": "auth"}
    return {}


def bucket(per_minute: int) -> dict[str, Any]:
    """A bucket that holds a minute's worth and refills every second: a client over its
    limit waits about a second (Retry-After: 1), not a minute."""
    per_minute = min(max(1, per_minute), _UINT32_MAX)  # Envoy's fields are uint32
    return {"max_tokens": per_minute, "tokens_per_fill": max(1, -(-per_minute // 60)),
            "fill_interval": "1s"}


def rate_limit_per_route(rpc: Rpc) -> dict[str, Any]:
    """The per-route config that turns the local limit off (the contract's unlimited routes:
    health probes), else nothing."""
    if rpc.rate_class != "unlimited":
        return {}
    return {"envoy.filters.http.local_ratelimit": {
        "@type": f"{EXTENSIONS}filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "gateway_rate_limit_off",
        "token_bucket": bucket(60),  # required by Envoy; unused while the filter is off
        "filter_enabled": {"default_value": {"numerator": 0, "denominator": "HUNDRED"},
                           "runtime_key": "agentmesh.rate_limit.health_enabled"}}}


def rate_limit_actions() -> list[dict[str, Any]]:
    """The descriptors each request produces (an action list yields nothing when a header or
    metadata it needs is absent):
      [rate_class=auth, remote_address=<ip>]  register/login/refresh, per client IP
      [tenant=<tenant id>]                    every authenticated request (JWT or API key)
      [remote_address=<ip>]                   every request, per client IP
    """
    return [
        {"actions": [
            {"metadata": {"descriptor_key": "rate_class", "source": "ROUTE_ENTRY",
                          "metadata_key": {"key": "agentmesh", "path": [{"key": "rate_class"}]},
                          "skip_if_absent": True}},
            {"remote_address": {}}]},
        {"actions": [{"request_headers": {"header_name": "x-agentmesh-tenant-id",
                                          "descriptor_key": "tenant", "skip_if_absent": True}}]},
        {"actions": [{"remote_address": {}}]},
    ]


def local_rate_limit_filter(options: GatewayOptions) -> dict[str, Any]:
    per_ip = options.ip_rate_limit_per_minute or options.rate_limit_per_minute * 10
    return {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
        "@type": f"{EXTENSIONS}filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "gateway_rate_limit",
        # Only for requests no descriptor matches (none today): a gateway-wide backstop.
        "token_bucket": bucket(per_ip * 10),
        "always_consume_default_token_bucket": False,
        # An empty value is a wildcard: one bucket per distinct value (LRU, bounded).
        "descriptors": [
            {"entries": [{"key": "rate_class", "value": "auth"}, {"key": "remote_address"}],
             "token_bucket": bucket(options.auth_rate_limit_per_minute)},
            {"entries": [{"key": "tenant"}], "token_bucket": bucket(options.rate_limit_per_minute)},
            {"entries": [{"key": "remote_address"}], "token_bucket": bucket(per_ip)},
        ],
        "max_dynamic_descriptors": 100000,
        "rate_limits": rate_limit_actions(),
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"},
                           "runtime_key": "agentmesh.rate_limit.enabled"},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"},
                            "runtime_key": "agentmesh.rate_limit.enforced"},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03"}}


def global_rate_limit(options: GatewayOptions) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Envoy's global rate-limit filter and the rate-limit actions of the virtual host.

    Every request is described to governance's `RateLimitService` (cluster `governance`) by
    four descriptors, each counted against its own limit there (mesh.governance.limits):
    [generic_key=global], [remote_address=<client ip>], [tenant=<tenant id>] and
    [tenant, route=<gRPC method path>]. The filter sits after the transcoder and jwt_authn /
    ext_authz, so the tenant header is the verified one and `:path` is the RPC.
    Timeout and failure mode are deliberate (docs/governance.md): 50 ms, then fail open, because
    the gateway's local limits stay in force as a backstop and an outage of the limit service
    should not become an outage of the API. `global_rate_limit_fail_open=False` turns it into
    fail closed (503 in the envelope).
    """
    tenant = {"request_headers": {"header_name": "x-agentmesh-tenant-id", "descriptor_key": "tenant",
                                  "skip_if_absent": True}}
    actions = [
        {"actions": [{"generic_key": {"descriptor_value": "global"}}]},
        {"actions": [{"remote_address": {}}]},
        {"actions": [tenant]},
        {"actions": [tenant, {"request_headers": {"header_name": ":path",
                                                  "descriptor_key": "route"}}]},
    ]
    config: dict[str, Any] = {
        "@type": f"{EXTENSIONS}filters.http.ratelimit.v3.RateLimit",
        "domain": options.global_rate_limit_domain,
        "request_type": "both",
        "timeout": f"{options.global_rate_limit_timeout_ms / 1000:g}s",
        "failure_mode_deny": not options.global_rate_limit_fail_open,
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "rate_limit_service": {"grpc_service": {"envoy_grpc": {"cluster_name": "governance"}},
                               "transport_api_version": "V3"},
    }
    if not options.global_rate_limit_fail_open:
        config["status_on_error"] = {"code": 503}
    return {"name": "envoy.filters.http.ratelimit", "typed_config": config}, actions
