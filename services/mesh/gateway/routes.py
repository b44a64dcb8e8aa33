"""The routes of the gateway's virtual host: one per exposed RPC (matched on its gRPC path,
which the transcoder has rewritten a REST request to), the live service's WebSockets, and the
catch-all. Each route carries its scope check (RBAC per route) and the metadata the other
filters read (scope, public, method, rate class)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mesh.contract import Contract, Rpc
from mesh.gateway.envoy import EXTENSIONS, duration
from mesh.gateway.options import GatewayOptions
from mesh.gateway.ratelimits import rate_class_metadata, rate_limit_per_route
from mesh.runtime import scopes, sockets
from mesh.runtime.context import TENANT_HEADER

# ---- WebSockets (the live service) ------------------------------------------------------------
WS_PREFIX = sockets.PREFIX
LIVE_WS_CLUSTER = "live_ws"
# ---- MCP (the integration service's Streamable HTTP listener, docs/mcp.md) --------------------
MCP_PATH = "/api/v1/mcp"
MCP_CLUSTER = "mcp_http"
# Any of these lets a caller reach the MCP server, which lists and runs only what the caller's
# scopes allow (mesh/integration/mcp_server.py; its SCOPES, kept equal by a test).
MCP_SCOPES = ("agents:execute", "workflows:execute", "tools:execute", "masterdata:read")

# A request that never reached a replica (connection refused or reset before it was sent: the
# replica died or is restarting) is safe to send to another one, whatever the method. A request
# already sent is never retried here: the client decides (a create could happen twice).
_RETRY_UNSENT = {
    "retry_on": "connect-failure,refused-stream,reset-before-request",
    "num_retries": 2,
    # ...to another replica than the one that just failed, when there is one.
    "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                              "typed_config": {"@type": f"{EXTENSIONS}retry.host.previous_hosts.v3."
                                                        "PreviousHostsPredicate"}}],
    "host_selection_retry_max_attempts": "3",
}


def template_pattern(template: str, literal: Callable[[str], str]) -> str:
    """A pattern matching a REST path template, `{var}` one segment and `{var=**}` the rest, each
    literal segment written by `literal` (`re.escape` for a regex, Lua's `%` escapes for a Lua
    pattern: both read `.+` and `[^/]+` alike)."""
    parts = []
    for segment in template.strip("/").split("/"):
        if segment.startswith("{") and "**" in segment:
            parts.append(".+")
        elif segment.startswith("{"):
            parts.append("[^/]+")
        else:
            parts.append(literal(segment))
    return "^/" + "/".join(parts) + "$"


def routes(contract: Contract, options: GatewayOptions) -> list[dict[str, Any]]:
    # Internal RPCs (and any without a REST binding) get no route: a native gRPC call to one
    # through the gateway falls to the catch-all route and is answered UNIMPLEMENTED.
    found = [_route(rpc, options) for rpc in contract.rpcs if rpc.exposed]
    if options.live_websocket is not None:
        found.extend(_ws_routes())
    if options.mcp_http is not None:
        found.append(_mcp_route())
    # REST paths match no route until the transcoder rewrites them to gRPC paths. This
    # catch-all lets the CORS filter find the virtual host's policy before that (preflights and
    # response headers; it ignores direct-response routes). Unknown REST paths never get past
    # the transcoder (404); an unknown gRPC method reaches the system service, which answers
    # UNIMPLEMENTED as any gRPC server would.
    # Actions are always traced, reads at the configured ratio (options.trace_sample_percent).
    # Envoy decides when the request's headers arrive, on the route they match then: a REST
    # path matches no RPC's route before the transcoder rewrites it, so this route matches
    # every REST request that acts (it is left for the RPC's route once the path is rewritten).
    # A REST request whose `traceparent` says "sampled" (flags with the low bit set): traced,
    # as its caller decided (Envoy's random sampling would otherwise decide again).
    found.append({
        "name": "sampled-by-caller",
        "match": {"prefix": "/api/", "headers": [{"name": "traceparent", "string_match": {
            "safe_regex": {"regex": ".*-[0-9a-f][13579bdf]"}}}]},
        "route": {"cluster": "system", "timeout": duration(options.request_timeout_seconds)},
        "tracing": ALWAYS_TRACED,
        "typed_per_filter_config": {"envoy.filters.http.rbac": {
            "@type": f"{EXTENSIONS}filters.http.rbac.v3.RBACPerRoute"}},
    })
    found.append({
        "name": "actions",
        "match": {"prefix": "/api/", "headers": [{"name": ":method", "string_match": {
            "safe_regex": {"regex": "POST|PUT|PATCH|DELETE"}}}]},
        "route": {"cluster": "system", "timeout": duration(options.request_timeout_seconds)},
        "tracing": ALWAYS_TRACED,
        "typed_per_filter_config": {"envoy.filters.http.rbac": {
            "@type": f"{EXTENSIONS}filters.http.rbac.v3.RBACPerRoute"}},
    })
    found.append({
        "name": "fallback",
        "match": {"prefix": "/"},
        "route": {"cluster": "system", "timeout": duration(options.request_timeout_seconds)},
        "typed_per_filter_config": {"envoy.filters.http.rbac": {
            "@type": f"{EXTENSIONS}filters.http.rbac.v3.RBACPerRoute"}},
    })
    return found


def _scope_principals(scope: str) -> list[dict[str, Any]]:
    ids = []
    for granted in scopes.granting(scope):
        match = {"list_match": {"one_of": {"string_match": {"exact": granted}}}}
        ids.append({"sourced_metadata": {"metadata_matcher": {
            "filter": "envoy.filters.http.jwt_authn",
            "path": [{"key": "jwt_payload"}, {"key": "scopes"}], "value": match}}})
        ids.append({"sourced_metadata": {"metadata_matcher": {
            "filter": "envoy.filters.http.ext_authz",
            "path": [{"key": "scopes"}], "value": match}}})
    return [{"or_ids": {"ids": ids}}]


def _rbac_per_route(rpc: Rpc) -> dict[str, Any]:
    per_route: dict[str, Any] = {"@type": f"{EXTENSIONS}filters.http.rbac.v3.RBACPerRoute"}
    if rpc.scope and not rpc.public:
        per_route["rbac"] = {"rules": {"action": "ALLOW", "policies": {rpc.scope: {
            "permissions": [{"any": True}], "principals": _scope_principals(rpc.scope)}}}}
    return per_route  # without `rbac`: the filter is off for this route


# Every request of the route traced, whatever the gateway's random sampling.
ALWAYS_TRACED = {"random_sampling": {"numerator": 100, "denominator": "HUNDRED"}}


def _acts(rpc: Rpc) -> bool:
    return any(binding.method != "GET" for binding in rpc.bindings)


def _route(rpc: Rpc, options: GatewayOptions) -> dict[str, Any]:
    return {
        "name": rpc.grpc_path,
        "match": {"path": rpc.grpc_path},
        "route": {
            "cluster": rpc.backend,
            "retry_policy": _RETRY_UNSENT,
            # Streams (Server-Sent Events) stay open; unary calls get the request timeout.
            "timeout": "0s" if rpc.server_streaming else duration(options.request_timeout_seconds),
        },
        "metadata": {"filter_metadata": {"agentmesh": {
            "scope": rpc.scope, "public": rpc.public, "method": rpc.grpc_path,
            **rate_class_metadata(rpc)}}},
        "typed_per_filter_config": {"envoy.filters.http.rbac": _rbac_per_route(rpc),
                                    **rate_limit_per_route(rpc)},
        **({"tracing": ALWAYS_TRACED} if _acts(rpc) else {}),
    }


def _ws_routes() -> list[dict[str, Any]]:
    """GET /ws/... to the live service with the WebSocket upgrade, after jwt_authn (or ext_authz
    for an API key) and the scope check. A request that carries a `ticket` and no identity is
    let through to the live service, which redeems the ticket (single use, 30 s) and checks its
    scopes before it accepts the upgrade. No body filter or transcoder touches these routes."""
    ticket = {"and_ids": {"ids": [
        {"not_id": {"header": {"name": TENANT_HEADER, "present_match": True}}},
        {"url_path": {"path": {"safe_regex": {"regex": "^/ws/.*"}}}},
        {"header": {"name": ":path", "string_match": {
            "safe_regex": {"regex": ".*[?&]ticket=wst_[A-Za-z0-9_-]+.*"}}}}]}}
    found = []
    for socket in sockets.SOCKETS:
        scope = socket.scope
        principals = [*_scope_principals(scope), ticket]
        found.append({
            "name": f"websocket {socket.path}",
            "match": {"safe_regex": {"regex": socket.regex},
                      "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
            "route": {"cluster": LIVE_WS_CLUSTER, "timeout": "0s",
                      "upgrade_configs": [{"upgrade_type": "websocket"}],
                      "idle_timeout": "3600s"},
            "metadata": {"filter_metadata": {"agentmesh": {"scope": scope, "public": False,
                                                           "method": "websocket"}}},
            "typed_per_filter_config": {
                "envoy.filters.http.rbac": {
                    "@type": f"{EXTENSIONS}filters.http.rbac.v3.RBACPerRoute",
                    "rbac": {"rules": {"action": "ALLOW", "policies": {scope: {
                        "permissions": [{"any": True}], "principals": principals}}}}},
                "envoy.filters.http.buffer": {
                    "@type": f"{EXTENSIONS}filters.http.buffer.v3.BufferPerRoute",
                    "disabled": True},
                "envoy.filters.http.grpc_json_transcoder": {
                    "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                    "disabled": True},
            },
        })
    return found


def _mcp_route() -> dict[str, Any]:
    """POST/GET/DELETE /api/v1/mcp to the MCP listener, after jwt_authn (or ext_authz for an API
    key) and a scope check (any scope that shows something over MCP). Responses stream (Server-
    Sent Events while a workflow runs), so no request timeout; the transcoder stays off."""
    principals = [principal for scope in MCP_SCOPES for principal in _scope_principals(scope)]
    return {
        "name": "mcp",
        "match": {"path": MCP_PATH},
        "route": {"cluster": MCP_CLUSTER, "timeout": "0s", "idle_timeout": "3600s",
                  "retry_policy": _RETRY_UNSENT},
        "metadata": {"filter_metadata": {"agentmesh": {"scope": " | ".join(MCP_SCOPES),
                                                       "public": False, "method": "mcp"}}},
        "tracing": ALWAYS_TRACED,
        "typed_per_filter_config": {
            "envoy.filters.http.rbac": {
                "@type": f"{EXTENSIONS}filters.http.rbac.v3.RBACPerRoute",
                "rbac": {"rules": {"action": "ALLOW", "policies": {"mcp": {
                    "permissions": [{"any": True}], "principals": principals}}}}},
            "envoy.filters.http.grpc_json_transcoder": {
                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                "disabled": True},
        },
    }
