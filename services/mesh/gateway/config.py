"""Generates Envoy's bootstrap from the contract: one generator for `agentmesh up` and the Helm
chart. Filter chain (order matters):

    lua (edge logic) -> cors -> buffer (body limit) -> jwt_authn -> grpc_json_transcoder
      -> ext_authz (X-API-Key requests only) -> rbac (per-RPC scope) -> local_ratelimit -> router

RBAC sits after the transcoder so that it sees the gRPC method path, which is what the per-RPC
routes match. Every route, scope and public path below comes from `mesh.contract`.
"""

from __future__ import annotations

import ipaddress
import os
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh import resources
from mesh.contract import Contract, Rpc
from mesh.gateway.bodies import SCALAR_NAMES, BodySchemas, enum_values
from mesh.runtime.context import (IDENTITY_HEADERS, SCOPES_HEADER, SESSION_HEADER, TENANT_HEADER,
                                  TOKEN_IAT_HEADER, USER_HEADER)
from mesh.runtime import scopes
from mesh.runtime.errors import ERROR_TRAILER
from mesh.runtime.internal import HEADER as INTERNAL_TOKEN_HEADER
from mesh.runtime.settings import Settings

_T = "type.googleapis.com/envoy.extensions."
_ERROR_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 408: "DEADLINE_EXCEEDED", 409: "ALREADY_EXISTS",
    413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE", 429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL", 501: "UNIMPLEMENTED",
    502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
IDENTITY_CLUSTER = "identity"
ADMIN_SOCKET_MODE = 0o600  # the admin socket: the gateway's own user only
_HIDDEN_5XX = {
    500: "internal error; quote the correlation id to support",
    502: "the service is unavailable; retry later",
    503: "the service is unavailable; retry later",
    504: "the service did not answer in time; retry later",
}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


@dataclass
class GatewayOptions:
    # service -> (host, port), or a list of them: the replicas Envoy balances over.
    backends: dict[str, tuple[str, int] | list[tuple[str, int]]]
    listen_address: str = "127.0.0.1"
    listen_port: int = 8080
    # Envoy's admin interface, on this Unix socket ("" = none). Never a TCP port: a tenant whose
    # mesh allows outbound requests to 127.0.0.1 (a local model server) could otherwise make the
    # platform call it, and `POST /quitquitquit` stops the gateway. Only processes that may open
    # the file (mode 0600, the gateway's user) reach it.
    admin_socket: str = ""
    # The descriptor set as Envoy sees it; None = the one in the installed `agentmesh` package.
    descriptor_set: Path | None = None
    # Defaults are the settings' own; `from_settings` passes the configured values.
    jwt_issuer: str = Settings.model_fields["jwt_issuer"].default
    jwt_audience: str = Settings.model_fields["jwt_audience"].default
    jwks_cache_seconds: int = 300
    max_request_bytes: int = 1024 * 1024
    request_timeout_seconds: int = 30
    rate_limit_per_minute: int = 6000  # per tenant (a JWT's `tid` or an API key's tenant)
    # Per client IP, for every request (a backstop against one address flooding). 0: 10x the
    # tenant limit. Defaults from AGENTMESH_GATEWAY_IP_RATE_LIMIT / _AUTH_RATE_LIMIT.
    ip_rate_limit_per_minute: int = field(
        default_factory=lambda: _env_int("AGENTMESH_GATEWAY_IP_RATE_LIMIT", 0))
    # Per client IP on the unauthenticated auth routes (register, login, refresh).
    auth_rate_limit_per_minute: int = field(
        default_factory=lambda: _env_int("AGENTMESH_GATEWAY_AUTH_RATE_LIMIT", 60))
    # Allowed JWT clock skew (exp/nbf), seconds. Kept small: it extends every token's life.
    jwt_clock_skew_seconds: int = 5
    cors_origins: list[str] = field(default_factory=lambda: ["*"])
    # Traces: the cluster of an OTLP/gRPC receiver ("" = no tracing) and the share of
    # requests sampled (a request with a sampled `traceparent` is always traced).
    trace_cluster: str = ""
    trace_sample_percent: float = 10.0
    # The platform's internal token (mesh.runtime.internal), sent with every span export to
    # trace_cluster: the receiver refuses exports without it.
    trace_token: str = field(default="", repr=False)
    # Or an OTLP/gRPC collector outside the mesh (OTEL_EXPORTER_OTLP_ENDPOINT, a URL: http://
    # plaintext, https:// TLS), with its headers (OTEL_EXPORTER_OTLP_HEADERS) and never the
    # token. Set, it wins over trace_cluster, so the gateway's spans go where the services' do.
    trace_collector: str = ""
    trace_collector_headers: dict[str, str] = field(default_factory=dict, repr=False)
    # Envoy's global rate-limit filter asking governance's RateLimitService (off by default;
    # `global_rate_limit()` and docs/governance.md).
    global_rate_limit: bool = False
    global_rate_limit_domain: str = "agentmesh"
    global_rate_limit_timeout_ms: int = 50
    global_rate_limit_fail_open: bool = True
    # A listener on listen_address:metrics_port that serves only Envoy's Prometheus stats
    # (GET /stats/prometheus, proxied to the admin socket). 0 = none; needs admin_socket. The
    # Helm chart's ServiceMonitor scrapes it.
    metrics_port: int = 0
    # The live service's WebSocket listener(s): /ws/... is routed there with the upgrade
    # enabled (docs/live-events.md). None: no WebSocket routes.
    live_websocket: tuple[str, int] | list[tuple[str, int]] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, backends: dict[str, tuple[str, int]],
                      **overrides: Any) -> "GatewayOptions":
        """The gateway options for the settings the services read (`AGENTMESH_*`), so that
        what the identity service signs (issuer, audience) is what the gateway verifies."""
        return cls(**{"backends": backends, "jwt_issuer": settings.jwt_issuer,
                      "jwt_audience": settings.jwt_audience,
                      "trace_sample_percent": settings.trace_sample_percent, **overrides})


def _lua_literal(value: Any) -> str:
    """A Lua literal for strings, numbers, booleans, lists and string-keyed tables."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)  # JSON's escapes of ASCII text are Lua's
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "{" + ", ".join(_lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua_literal(k)}] = {_lua_literal(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"no Lua literal for {value!r}")


def _lua_pattern(template: str) -> str:
    """A Lua pattern matching a REST path template: `{var}` one segment, `{var=**}` the rest."""
    parts = []
    for segment in template.strip("/").split("/"):
        if segment.startswith("{") and "**" in segment:
            parts.append(".+")
        elif segment.startswith("{"):
            parts.append("[^/]+")
        else:
            parts.append(re.sub(r"([^A-Za-z0-9])", r"%\1", segment))
    return "^/" + "/".join(parts) + "$"


def _lua_routes(contract: Contract, schemas: BodySchemas) -> tuple[dict[str, list], list]:
    """The REST routes for the Lua 405 check and body check: templates with their methods and
    the shape of each method's JSON body (mesh.gateway.bodies), grouped by the key
    `gateway.lua`'s `route_key` computes (segment count and the first three segments)."""
    methods: dict[str, set[str]] = {}
    bodies: dict[str, dict[str, list]] = {}
    for rpc in contract.rpcs:
        for binding in rpc.bindings:
            methods.setdefault(binding.template, set()).add(binding.method)
            body = schemas.route_body(rpc, binding) if rpc.exposed else None
            if body is not None:
                bodies.setdefault(binding.template, {})[binding.method] = list(body)
    grouped: dict[str, list] = {}
    wildcard: list = []
    for template, allowed in sorted(methods.items()):
        segments = template.strip("/").split("/")
        # Literal segments: as in the transcoder, the routes with the most of them win
        # (`/tools/categories` over `/tools/{tool_id}`).
        literals = sum(1 for s in segments if not s.startswith("{"))
        entry = [_lua_pattern(template), sorted(allowed), literals, bodies.get(template, {})]
        if "**" in template or any(s.startswith("{") for s in segments[:3]):
            wildcard.append(entry)
        else:
            grouped.setdefault(f"{len(segments)}:{'/'.join(segments[:3])}", []).append(entry)
    return grouped, wildcard


def lua_source(contract: Contract) -> str:
    """`gateway.lua` with the names it shares with Python and the contract's routes filled in."""
    schemas = BodySchemas(contract)
    routes, wildcard = _lua_routes(contract, schemas)
    values = {
        "IDENTITY_HEADERS": [*IDENTITY_HEADERS, INTERNAL_TOKEN_HEADER],
        "ERROR_TRAILER": ERROR_TRAILER,
        "UNDECLARED_METHOD_HEADER": UNDECLARED_METHOD_HEADER,
        "ROUTES": routes,
        "WILDCARD_ROUTES": wildcard,
        "BODY_TYPES": schemas.types,
        "SCALAR_NAMES": SCALAR_NAMES,
        "ENUM_VALUES": enum_values(contract),
    }
    source = resources.gateway_lua()
    for name, value in values.items():
        marker = f"__AGENTMESH_{name}__"
        if marker not in source:
            raise ValueError(f"gateway.lua has no {marker}")
        source = source.replace(marker, _lua_literal(value))
    left = re.findall(r"__AGENTMESH_[A-Z_]+__", source)
    if left:
        raise ValueError(f"gateway.lua: nothing fills in {', '.join(sorted(set(left)))}")
    return source


def _duration(seconds: float) -> str:
    return f"{seconds}s"


def _template_regex(template: str) -> str:
    parts = []
    for segment in template.strip("/").split("/"):
        if segment.startswith("{") and "**" in segment:
            parts.append(".+")
        elif segment.startswith("{"):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(segment))
    return "^/" + "/".join(parts) + "$"


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
    per_route: dict[str, Any] = {"@type": f"{_T}filters.http.rbac.v3.RBACPerRoute"}
    if rpc.scope and not rpc.public:
        per_route["rbac"] = {"rules": {"action": "ALLOW", "policies": {rpc.scope: {
            "permissions": [{"any": True}], "principals": _scope_principals(rpc.scope)}}}}
    return per_route  # without `rbac`: the filter is off for this route


def _route(rpc: Rpc, options: GatewayOptions) -> dict[str, Any]:
    return {
        "name": rpc.grpc_path,
        "match": {"path": rpc.grpc_path},
        "route": {
            "cluster": rpc.backend,
            "retry_policy": _RETRY_UNSENT,
            # Streams (Server-Sent Events) stay open; unary calls get the request timeout.
            "timeout": "0s" if rpc.server_streaming else _duration(options.request_timeout_seconds),
        },
        "metadata": {"filter_metadata": {"agentmesh": {
            "scope": rpc.scope, "public": rpc.public, "method": rpc.grpc_path,
            **_rate_class_metadata(rpc)}}},
        "typed_per_filter_config": {"envoy.filters.http.rbac": _rbac_per_route(rpc),
                                    **_rate_limit_per_route(rpc)},
    }


# ---- rate limits (docs/rate-limits.md) --------------------------------------------------------
# One descriptor scheme for the local limits here and, later, governance's global rate-limit
# service (envoy.service.ratelimit.v3, domain "agentmesh"): the same `rate_limits` actions would
# feed envoy.filters.http.ratelimit, whose service keeps the counters in Redis.
RATE_LIMIT_DOMAIN = "agentmesh"
_AUTH_RPCS = {"Register", "Login", "Refresh"}  # unauthenticated routes, limited per client IP
_UNLIMITED_RPCS = {"/agentmesh.system.v1.SystemService/CheckHealth"}  # probes: never limited


def _rate_class_metadata(rpc: Rpc) -> dict[str, Any]:
    if rpc.public and rpc.name in _AUTH_RPCS and rpc.backend == "identity":
        return {"rate_class": "auth"}
    return {}


def _bucket(per_minute: int) -> dict[str, Any]:
    """A bucket that holds a minute's worth and refills every second: a client over its
    limit waits about a second (Retry-After: 1), not a minute."""
    per_minute = min(max(1, per_minute), _UINT32_MAX)  # Envoy's fields are uint32
    return {"max_tokens": per_minute, "tokens_per_fill": max(1, -(-per_minute // 60)),
            "fill_interval": "1s"}


_UINT32_MAX = 2**32 - 1


def _rate_limit_per_route(rpc: Rpc) -> dict[str, Any]:
    if rpc.grpc_path not in _UNLIMITED_RPCS:
        return {}
    return {"envoy.filters.http.local_ratelimit": {
        "@type": f"{_T}filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "gateway_rate_limit_off",
        "token_bucket": _bucket(60),  # required by Envoy; unused while the filter is off
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


def _rate_limit_filter(options: GatewayOptions) -> dict[str, Any]:
    per_ip = options.ip_rate_limit_per_minute or options.rate_limit_per_minute * 10
    return {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
        "@type": f"{_T}filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "gateway_rate_limit",
        # Only for requests no descriptor matches (none today): a gateway-wide backstop.
        "token_bucket": _bucket(per_ip * 10),
        "always_consume_default_token_bucket": False,
        # An empty value is a wildcard: one bucket per distinct value (LRU, bounded).
        "descriptors": [
            {"entries": [{"key": "rate_class", "value": "auth"}, {"key": "remote_address"}],
             "token_bucket": _bucket(options.auth_rate_limit_per_minute)},
            {"entries": [{"key": "tenant"}], "token_bucket": _bucket(options.rate_limit_per_minute)},
            {"entries": [{"key": "remote_address"}], "token_bucket": _bucket(per_ip)},
        ],
        "max_dynamic_descriptors": 100000,
        "rate_limits": rate_limit_actions(),
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"},
                           "runtime_key": "agentmesh.rate_limit.enabled"},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"},
                            "runtime_key": "agentmesh.rate_limit.enforced"},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03"}}


def _jwt_rules(contract: Contract) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for rpc in contract.rpcs:
        if not rpc.public or not rpc.exposed:
            continue
        rules.append({"match": {"path": rpc.grpc_path}})
        for binding in rpc.bindings:
            rules.append({"match": {
                "safe_regex": {"regex": _template_regex(binding.template)},
                "headers": [{"name": ":method", "string_match": {"exact": binding.method}}]}})
    # A WebSocket upgrade from a browser carries a single-use ticket (POST /api/v1/live/tickets)
    # instead of a token, which the live service redeems before it accepts the upgrade; a bearer
    # token, if sent, must still be valid.
    rules.append({"match": {"prefix": WS_PREFIX, "query_parameters": [
        {"name": "ticket", "present_match": True}]},
        "requires": {"requires_any": {"requirements": [
            {"provider_name": "identity"}, {"allow_missing": {}}]}}})
    # An X-API-Key request is authenticated by ext_authz; a bearer token, if sent, must be valid.
    rules.append({"match": {"prefix": "/", "headers": [{"name": "x-api-key", "present_match": True}]},
                  "requires": {"requires_any": {"requirements": [
                      {"provider_name": "identity"}, {"allow_missing": {}}]}}})
    rules.append({"match": {"prefix": "/"}, "requires": {"provider_name": "identity"}})
    return rules


UNDECLARED_METHOD_HEADER = "x-agentmesh-undeclared-method"

# ---- WebSockets (the live service) ------------------------------------------------------------
WS_PREFIX = "/ws/"
LIVE_WS_CLUSTER = "live_ws"
# Which scope each socket needs: the same as reading the resource over REST.
WS_ROUTES = [("^/ws/calls(/[A-Za-z0-9_-]+)?$", "calls:read"),
             ("^/ws/[A-Za-z0-9_-]+$", "workflows:read")]


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
    routes = []
    for regex, scope in WS_ROUTES:
        principals = [*_scope_principals(scope), ticket]
        routes.append({
            "name": f"websocket {scope}",
            "match": {"safe_regex": {"regex": regex},
                      "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
            "route": {"cluster": LIVE_WS_CLUSTER, "timeout": "0s",
                      "upgrade_configs": [{"upgrade_type": "websocket"}],
                      "idle_timeout": "3600s"},
            "metadata": {"filter_metadata": {"agentmesh": {"scope": scope, "public": False,
                                                           "method": "websocket"}}},
            "typed_per_filter_config": {
                "envoy.filters.http.rbac": {
                    "@type": f"{_T}filters.http.rbac.v3.RBACPerRoute",
                    "rbac": {"rules": {"action": "ALLOW", "policies": {scope: {
                        "permissions": [{"any": True}], "principals": principals}}}}},
                "envoy.filters.http.buffer": {
                    "@type": f"{_T}filters.http.buffer.v3.BufferPerRoute", "disabled": True},
                "envoy.filters.http.grpc_json_transcoder": {
                    "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                    "disabled": True},
            },
        })
    return routes


def _query_method_mapper(body, status_is) -> dict[str, Any]:
    """Envoy answers a QUERY request without Content-Type with 400 before any filter runs (RFC
    10008 asks servers to fail it). No route accepts QUERY, so it becomes the 405 every other
    undeclared method gets; the Lua filter adds `Allow` for the path passed in this header."""
    return {
        "filter": {"and_filter": {"filters": [status_is(400), {"header_filter": {"header": {
            "name": ":method", "string_match": {"exact": "QUERY"}}}}]}},
        "status_code": 405,
        "headers_to_add": [{"header": {"key": UNDECLARED_METHOD_HEADER, "value": "%REQ(:PATH)%"},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        "body_format_override": body("METHOD_NOT_ALLOWED", "method QUERY is not allowed here"),
    }


def _local_reply_config() -> dict[str, Any]:
    def body(error: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"json_format": {
            "error": error,
            "message": message,
            "details": details or {},
            "correlation_id": "%REQ(X-CORRELATION-ID)%",
            "request_id": "%REQ(X-CORRELATION-ID)%",  # seed 000's name for it
            # Second precision, as gateway.lua writes it for service errors.
            "timestamp": "%START_TIME(%Y-%m-%dT%H:%M:%SZ)%",
        }, "content_type": "application/json"}

    def status_is(code: int) -> dict[str, Any]:
        return {"status_code_filter": {"comparison": {
            "op": "EQ", "value": {"default_value": code, "runtime_key": f"agentmesh.reply.{code}"}}}}

    mappers = [_query_method_mapper(body, status_is), {
        "filter": status_is(403),
        "body_format_override": body(
            "PERMISSION_DENIED", "this operation needs scope %METADATA(ROUTE:agentmesh:scope)%",
            {"required_scope": "%METADATA(ROUTE:agentmesh:scope)%",
             "method": "%METADATA(ROUTE:agentmesh:method)%"}),
    }]
    for code, name in _ERROR_NAMES.items():
        if code == 403:
            continue
        # Envoy's own 5xx texts ("upstream connect error or disconnect/reset before headers.
        # reset reason: ...") describe the inside of the gateway: never shown to clients.
        message = _HIDDEN_5XX.get(code, "%LOCAL_REPLY_BODY%")
        mappers.append({"filter": status_is(code), "body_format_override": body(name, message)})
    return {"mappers": mappers, "body_format": body("ERROR", "%LOCAL_REPLY_BODY%")}


def _lua_source(contract: Contract, options: GatewayOptions) -> str:
    """gateway.lua with the contract's names and the gateway's own numbers filled in."""
    return f"local MAX_REQUEST_BYTES = {int(options.max_request_bytes)}\n" + lua_source(contract)


# A request that never reached a replica (connection refused or reset before it was sent: the
# replica died or is restarting) is safe to send to another one, whatever the method. A request
# already sent is never retried here: the client decides (a create could happen twice).
_RETRY_UNSENT = {
    "retry_on": "connect-failure,refused-stream,reset-before-request",
    "num_retries": 2,
    # ...to another replica than the one that just failed, when there is one.
    "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                              "typed_config": {"@type": f"{_T}retry.host.previous_hosts.v3."
                                                        "PreviousHostsPredicate"}}],
    "host_selection_retry_max_attempts": "3",
}


def endpoints(address: tuple[str, int] | list[tuple[str, int]]) -> list[tuple[str, int]]:
    """One backend's addresses: a (host, port) pair or a list of them (replicas)."""
    if isinstance(address, tuple) and len(address) == 2 and isinstance(address[1], int):
        return [address]
    return [(host, int(port)) for host, port in address]


def _replicated_cluster(name: str, address: tuple[str, int] | list[tuple[str, int]]
                        ) -> dict[str, Any]:
    """A service's cluster: every replica an endpoint, round robin; a replica that fails
    connections is ejected for a while (outlier detection) instead of taking every Nth call."""
    addresses = endpoints(address)
    cluster = _cluster(name, *addresses[0])
    if len(addresses) > 1:
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
            for host, port in addresses]
    cluster["outlier_detection"] = {"consecutive_gateway_failure": 2,
                                    "consecutive_local_origin_failure": 2,
                                    "split_external_local_origin_errors": True,
                                    "interval": "2s", "base_ejection_time": "5s",
                                    "max_ejection_percent": 100}
    return cluster


def _cluster(name: str, host: str, port: int, http2: bool = True) -> dict[str, Any]:
    try:
        ipaddress.ip_address(host)
        kind = "STATIC"
    except ValueError:
        kind = "STRICT_DNS"
    cluster: dict[str, Any] = {
        "name": name,
        "type": kind,
        "connect_timeout": "2s",
        # The transcoder buffers a whole message; Swagger UI's bundle is ~1.5 MB.
        "per_connection_buffer_limit_bytes": 8 * 1024 * 1024,
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": host, "port_value": port}}}}]}]},
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{_T}upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}}
    return cluster


TRACE_COLLECTOR_CLUSTER = "otlp_collector"


def _trace_collector_cluster(options: GatewayOptions) -> dict[str, Any]:
    """The cluster of an OTLP collector outside the mesh, TLS when its URL says so (verified
    against OTEL_EXPORTER_OTLP_CERTIFICATE, else the system's CA bundle)."""
    from mesh.runtime.telemetry import parse_endpoint

    host, port, tls = parse_endpoint(options.trace_collector)
    cluster = _cluster(TRACE_COLLECTOR_CLUSTER, host, port)
    if tls:
        ca = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
              or os.environ.get("OTEL_EXPORTER_OTLP_CERTIFICATE")
              or next((p for p in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/"
                                   "ca-bundle.crt", "/etc/ssl/cert.pem") if Path(p).exists()), ""))
        context: dict[str, Any] = {"sni": host, "common_tls_context": {
            "alpn_protocols": ["h2"]}}
        if ca:
            context["common_tls_context"]["validation_context"] = {
                "trusted_ca": {"filename": ca}}
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": f"{_T}transport_sockets.tls.v3.UpstreamTlsContext", **context}}
    return cluster


def _tracing(options: GatewayOptions) -> dict[str, Any]:
    """Envoy's OpenTelemetry tracer: spans to the OTLP receiver (or the collector the user
    named), with the caller's tenant. Its `service.name` is `agentmesh-gateway`, beside the
    services' `agentmesh-<service>` (mesh.runtime.telemetry)."""
    if options.trace_collector:
        cluster = TRACE_COLLECTOR_CLUSTER
        metadata = [{"key": k, "value": v} for k, v in options.trace_collector_headers.items()]
    else:
        cluster = options.trace_cluster
        metadata = ([{"key": INTERNAL_TOKEN_HEADER, "value": options.trace_token}]
                    if options.trace_token else [])
    return {
        "random_sampling": {"value": options.trace_sample_percent},
        "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": cluster}, "timeout": "1s",
                             **({"initial_metadata": metadata} if metadata else {})},
            "service_name": "agentmesh-gateway"}},
        "custom_tags": [{"tag": "tenant_id",
                         "request_header": {"name": "x-agentmesh-tenant-id"}}],
    }
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
        "@type": f"{_T}filters.http.ratelimit.v3.RateLimit",
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


def build(contract: Contract, options: GatewayOptions) -> dict[str, Any]:
    missing = set(contract.backends) - set(options.backends)
    if missing:
        raise ValueError(f"no address for services: {', '.join(sorted(missing))}")
    # Internal RPCs (and any without a REST binding) get no route: a native gRPC call to one
    # through the gateway falls to the catch-all route and is answered UNIMPLEMENTED.
    routes = [_route(rpc, options) for rpc in contract.rpcs if rpc.exposed]
    if options.live_websocket is not None:
        routes.extend(_ws_routes())
    # REST paths match no route until the transcoder rewrites them to gRPC paths. This
    # catch-all lets the CORS filter find the virtual host's policy before that (preflights and
    # response headers; it ignores direct-response routes). Unknown REST paths never get past
    # the transcoder (404); an unknown gRPC method reaches the system service, which answers
    # UNIMPLEMENTED as any gRPC server would.
    routes.append({
        "name": "fallback",
        "match": {"prefix": "/"},
        "route": {"cluster": "system", "timeout": _duration(options.request_timeout_seconds)},
        "typed_per_filter_config": {"envoy.filters.http.rbac": {
            "@type": f"{_T}filters.http.rbac.v3.RBACPerRoute"}},
    })
    self_uri = f"http://127.0.0.1:{options.listen_port}/api/v1/auth/jwks"
    filters = [
        {"name": "envoy.filters.http.lua", "typed_config": {
            "@type": f"{_T}filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": _lua_source(contract, options)}}},
        {"name": "envoy.filters.http.cors", "typed_config": {
            "@type": f"{_T}filters.http.cors.v3.Cors"}},
        {"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": f"{_T}filters.http.buffer.v3.Buffer",
            "max_request_bytes": options.max_request_bytes}},
        {"name": "envoy.filters.http.jwt_authn", "typed_config": {
            "@type": f"{_T}filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"identity": {
                "issuer": options.jwt_issuer,
                "audiences": [options.jwt_audience],
                "require_expiration": True,
                "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
                "remote_jwks": {
                    "http_uri": {"uri": self_uri, "cluster": "gateway_self", "timeout": "5s"},
                    "cache_duration": _duration(options.jwks_cache_seconds),
                    "async_fetch": {"fast_listener": True, "failed_refetch_duration": "1s"},
                },
                "payload_in_metadata": "jwt_payload",
                "claim_to_headers": [
                    {"header_name": TENANT_HEADER, "claim_name": "tid"},
                    {"header_name": USER_HEADER, "claim_name": "sub"},
                    {"header_name": SCOPES_HEADER, "claim_name": "scope"},
                    # For the runtime's revocation check (mesh/runtime/revocation.py).
                    {"header_name": SESSION_HEADER, "claim_name": "sid"},
                    {"header_name": TOKEN_IAT_HEADER, "claim_name": "iat"},
                ],
                "clock_skew_seconds": options.jwt_clock_skew_seconds,
            }},
            "rules": _jwt_rules(contract),
        }},
        {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": {
            "@type": f"{_T}filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            "proto_descriptor": str(options.descriptor_set or resources.descriptor_set()),
            "services": contract.services,
            "convert_grpc_status": True,
            # A `+` in a query value is a space, as every HTTP library and HTML form encodes it
            # (`?search=alpha+beta`); a literal plus is sent as %2B.
            "query_param_unescape_plus": True,
            "print_options": {"always_print_primitive_fields": True,
                              "always_print_enums_as_ints": False,
                              "preserve_proto_field_names": True,
                              "stream_sse_style_delimited": True},
            "request_validation_options": {"reject_unknown_method": True,
                                           "reject_unknown_query_parameters": True,
                                           "reject_binding_body_field_collisions": True},
        }},
        {"name": "envoy.filters.http.ext_authz", "typed_config": {
            "@type": f"{_T}filters.http.ext_authz.v3.ExtAuthz",
            "grpc_service": {"envoy_grpc": {"cluster_name": IDENTITY_CLUSTER}, "timeout": "2s"},
            "transport_api_version": "V3",
            "failure_mode_allow": False,  # fail closed
            "filter_enabled_metadata": {"filter": "agentmesh", "path": [{"key": "api_key"}],
                                        "value": {"bool_match": True}},
            "status_on_error": {"code": 503},
        }},
        {"name": "envoy.filters.http.rbac", "typed_config": {
            "@type": f"{_T}filters.http.rbac.v3.RBAC",
            # Routes carry their own policy; anything without one is denied.
            "rules": {"action": "ALLOW", "policies": {}}}},
        _rate_limit_filter(options),
        {"name": "envoy.filters.http.router", "typed_config": {
            "@type": f"{_T}filters.http.router.v3.Router"}},
    ]
    virtual_host_limits: list[dict[str, Any]] = []
    if options.global_rate_limit:
        limit_filter, virtual_host_limits = global_rate_limit(options)
        filters.insert(len(filters) - 1, limit_filter)  # just before the router
        # X-RateLimit-* then report the shared limits; the local bucket stays a silent backstop
        # (two filters each adding the headers would answer "4, 99999").
        for item in filters:
            if item["name"] == "envoy.filters.http.local_ratelimit":
                item["typed_config"].pop("enable_x_ratelimit_headers", None)
    hcm = {
        "@type": f"{_T}filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "codec_type": "AUTO",
        "use_remote_address": True,
        "common_http_protocol_options": {"idle_timeout": "300s"},
        # Only routes that name it (/ws/...) accept the upgrade.
        "upgrade_configs": [{"upgrade_type": "websocket", "enabled": False}],
        "local_reply_config": _local_reply_config(),
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
                "routes": routes,
                "typed_per_filter_config": {"envoy.filters.http.cors": {
                    "@type": f"{_T}filters.http.cors.v3.CorsPolicy",
                    "allow_origin_string_match": [
                        {"exact": o} if o != "*" else {"safe_regex": {"regex": ".*"}}
                        for o in options.cors_origins],
                    "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
                    "allow_headers": "authorization, content-type, x-api-key, x-correlation-id, "
                                     "idempotency-key, last-event-id",
                    "expose_headers": "x-correlation-id, x-request-id, x-ratelimit-limit, "
                                      "x-ratelimit-remaining, x-ratelimit-reset, retry-after, "
                                      "idempotency-replayed",
                    "max_age": "600"}},
                **({"rate_limits": virtual_host_limits} if virtual_host_limits else {}),
            }],
        },
        "http_filters": filters,
    }
    if options.trace_cluster or options.trace_collector:
        hcm["tracing"] = _tracing(options)
    clusters = [_replicated_cluster(name, address)
                for name, address in sorted(options.backends.items()) if name in contract.backends]
    if options.trace_collector:
        clusters.append(_trace_collector_cluster(options))
    clusters.append(_cluster("gateway_self", "127.0.0.1", options.listen_port, http2=False))
    if options.live_websocket is not None:
        websocket = _replicated_cluster(LIVE_WS_CLUSTER, options.live_websocket)
        websocket.pop("typed_extension_protocol_options", None)  # HTTP/1.1: the upgrade
        websocket["per_connection_buffer_limit_bytes"] = 256 * 1024
        clusters.append(websocket)
    bootstrap: dict[str, Any] = {
        "node": {"id": "agentmesh-gateway", "cluster": "agentmesh"},
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "per_connection_buffer_limit_bytes": 8 * 1024 * 1024,
                "address": {"socket_address": {"address": options.listen_address,
                                               "port_value": options.listen_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm}]}],
            }],
            "clusters": clusters,
        },
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": f"{_T}resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": 10000}}]},
    }
    if options.admin_socket:
        bootstrap["admin"] = {"address": {"pipe": {"path": options.admin_socket,
                                                   "mode": ADMIN_SOCKET_MODE}}}
    if options.metrics_port and options.admin_socket:
        _add_metrics_listener(bootstrap, options)
    return bootstrap


def _add_metrics_listener(bootstrap: dict[str, Any], options: GatewayOptions) -> None:
    """GET /stats/prometheus on the metrics port, proxied to the admin socket; nothing else
    of the admin interface (which can stop Envoy) is reachable from outside."""
    resources = bootstrap["static_resources"]
    resources["clusters"].append({
        "name": "gateway_admin", "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": "gateway_admin", "endpoints": [{"lb_endpoints": [{
            "endpoint": {"address": {"pipe": {"path": options.admin_socket}}}}]}]}})
    resources["listeners"].append({
        "name": "metrics",
        "address": {"socket_address": {"address": options.listen_address,
                                       "port_value": options.metrics_port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": f"{_T}filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "metrics",
                "route_config": {"name": "metrics", "virtual_hosts": [{
                    "name": "metrics", "domains": ["*"],
                    "routes": [{"match": {"path": "/stats/prometheus",
                                          "headers": [{"name": ":method",
                                                       "string_match": {"exact": "GET"}}]},
                                "route": {"cluster": "gateway_admin"}},
                               {"match": {"prefix": "/"},
                                "direct_response": {"status": 404}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": f"{_T}filters.http.router.v3.Router"}}]}}]}],
    })
