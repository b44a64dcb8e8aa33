"""The public listener: its HTTP connection manager (the filter chain, Envoy's own replies in
the envelope, tracing) and the one virtual host with the routes and the CORS policy."""

from __future__ import annotations

from typing import Any

from mesh.contract import Contract
from mesh.gateway.envoy import EXTENSIONS, HCM_TYPE
from mesh.gateway.filters import http_filters
from mesh.gateway.options import GatewayOptions
from mesh.gateway.replies import local_reply_config
from mesh.gateway.routes import routes
from mesh.gateway.tracing import tracing


def gateway_listener(contract: Contract, options: GatewayOptions) -> dict[str, Any]:
    return {
        "name": "gateway",
        "per_connection_buffer_limit_bytes": 8 * 1024 * 1024,
        "address": {"socket_address": {"address": options.listen_address,
                                       "port_value": options.listen_port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": _connection_manager(contract, options)}]}],
    }


def _connection_manager(contract: Contract, options: GatewayOptions) -> dict[str, Any]:
    filters, virtual_host_limits = http_filters(contract, options)
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "gateway",
        "codec_type": "AUTO",
        "use_remote_address": True,
        "common_http_protocol_options": {"idle_timeout": "300s"},
        # Only routes that name it (/ws/...) accept the upgrade.
        "upgrade_configs": [{"upgrade_type": "websocket", "enabled": False}],
        "local_reply_config": local_reply_config(),
        "route_config": {
            "name": "agentmesh",
            # Services trust the identity headers the gateway sets; the credentials themselves
            # and Envoy's bookkeeping headers would only cost every service HPACK and metadata
            # work on every call. Removed by the router, after authentication has read them.
            # The trace id of a sampled request, so a user can look its trace up.
            "response_headers_to_add": [{"header": {"key": "x-trace-id", "value": "%TRACE_ID%"},
                                         "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                         "keep_empty_value": False}],
            "request_headers_to_remove": ["authorization", "x-api-key", "cookie",
                                          "x-envoy-expected-rq-timeout-ms", "x-envoy-original-path",
                                          "x-envoy-original-method", "x-envoy-external-address",
                                          "x-forwarded-proto", "user-agent",
                                          # the Lua filter copied it to x-correlation-id
                                          "x-request-id"],
            "virtual_hosts": [{
                "name": "agentmesh",
                "domains": ["*"],
                "routes": routes(contract, options),
                "typed_per_filter_config": {"envoy.filters.http.cors": _cors_policy(options)},
                **({"rate_limits": virtual_host_limits} if virtual_host_limits else {}),
            }],
        },
        "http_filters": filters,
    }
    if options.trace_cluster or options.trace_collector:
        hcm["tracing"] = tracing(options)
    return hcm


def _cors_policy(options: GatewayOptions) -> dict[str, Any]:
    return {
        "@type": f"{EXTENSIONS}filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [
            {"exact": o} if o != "*" else {"safe_regex": {"regex": ".*"}}
            for o in options.cors_origins],
        "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        "allow_headers": "authorization, content-type, x-api-key, x-correlation-id, "
                         "idempotency-key, last-event-id",
        "expose_headers": "x-correlation-id, x-request-id, x-ratelimit-limit, "
                          "x-ratelimit-remaining, x-ratelimit-reset, retry-after, "
                          "idempotency-replayed",
        "max_age": "600"}
