"""Generates Envoy's bootstrap from the contract: one generator for `agentmesh up` and the Helm
chart. Filter chain (order matters):

    lua (edge logic) -> cors -> buffer (body limit) -> jwt_authn -> grpc_json_transcoder
      -> ext_authz (X-API-Key requests only) -> rbac (per-RPC scope) -> local_ratelimit -> router

RBAC sits after the transcoder so that it sees the gRPC method path, which is what the per-RPC
routes match. Every route, scope and public path below comes from `mesh.contract`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh import resources
from mesh.contract import Contract, Rpc
from mesh.runtime.context import IDENTITY_HEADERS, SCOPES_HEADER, TENANT_HEADER, USER_HEADER
from mesh.runtime.errors import ERROR_TRAILER
from mesh.runtime.settings import Settings

_T = "type.googleapis.com/envoy.extensions."
_ERROR_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 408: "DEADLINE_EXCEEDED", 409: "ALREADY_EXISTS",
    413: "PAYLOAD_TOO_LARGE", 429: "RATE_LIMIT_EXCEEDED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
    502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
IDENTITY_CLUSTER = "identity"


@dataclass
class GatewayOptions:
    backends: dict[str, tuple[str, int]]  # service -> (host, port)
    listen_address: str = "127.0.0.1"
    listen_port: int = 8080
    admin_port: int = 0  # 0 = no admin listener
    # The descriptor set as Envoy sees it; None = the one in the installed `agentmesh` package.
    descriptor_set: Path | None = None
    # Defaults are the settings' own; `from_settings` passes the configured values.
    jwt_issuer: str = Settings.model_fields["jwt_issuer"].default
    jwt_audience: str = Settings.model_fields["jwt_audience"].default
    jwks_cache_seconds: int = 300
    max_request_bytes: int = 1024 * 1024
    request_timeout_seconds: int = 30
    rate_limit_per_minute: int = 6000
    cors_origins: list[str] = field(default_factory=lambda: ["*"])

    @classmethod
    def from_settings(cls, settings: Settings, backends: dict[str, tuple[str, int]],
                      **overrides: Any) -> "GatewayOptions":
        """The gateway options for the settings the services read (`AGENTMESH_*`), so that
        what the identity service signs (issuer, audience) is what the gateway verifies."""
        return cls(backends=backends, jwt_issuer=settings.jwt_issuer,
                   jwt_audience=settings.jwt_audience, **overrides)


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


def _lua_routes(contract: Contract) -> tuple[dict[str, list], list]:
    """The REST routes for the Lua 405 check: templates with their methods, grouped by the key
    `gateway.lua`'s `route_key` computes (segment count and the first three segments)."""
    methods: dict[str, set[str]] = {}
    for rpc in contract.rpcs:
        for binding in rpc.bindings:
            methods.setdefault(binding.template, set()).add(binding.method)
    grouped: dict[str, list] = {}
    wildcard: list = []
    for template, allowed in sorted(methods.items()):
        segments = template.strip("/").split("/")
        entry = [_lua_pattern(template), sorted(allowed)]
        if "**" in template or any(s.startswith("{") for s in segments[:3]):
            wildcard.append(entry)
        else:
            grouped.setdefault(f"{len(segments)}:{'/'.join(segments[:3])}", []).append(entry)
    return grouped, wildcard


def lua_source(contract: Contract) -> str:
    """`gateway.lua` with the names it shares with Python and the contract's routes filled in."""
    routes, wildcard = _lua_routes(contract)
    values = {
        "IDENTITY_HEADERS": list(IDENTITY_HEADERS),
        "ERROR_TRAILER": ERROR_TRAILER,
        "UNDECLARED_METHOD_HEADER": UNDECLARED_METHOD_HEADER,
        "ROUTES": routes,
        "WILDCARD_ROUTES": wildcard,
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
    area = scope.split(":", 1)[0]
    ids = []
    for granted in dict.fromkeys([scope, f"{area}:*", "*"]):
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
            # Streams (Server-Sent Events) stay open; unary calls get the request timeout.
            "timeout": "0s" if rpc.server_streaming else _duration(options.request_timeout_seconds),
        },
        "metadata": {"filter_metadata": {"agentmesh": {
            "scope": rpc.scope, "public": rpc.public, "method": rpc.grpc_path}}},
        "typed_per_filter_config": {"envoy.filters.http.rbac": _rbac_per_route(rpc)},
    }


def _jwt_rules(contract: Contract) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for rpc in contract.rpcs:
        if not rpc.public:
            continue
        rules.append({"match": {"path": rpc.grpc_path}})
        for binding in rpc.bindings:
            rules.append({"match": {
                "safe_regex": {"regex": _template_regex(binding.template)},
                "headers": [{"name": ":method", "string_match": {"exact": binding.method}}]}})
    # An X-API-Key request is authenticated by ext_authz; a bearer token, if sent, must be valid.
    rules.append({"match": {"prefix": "/", "headers": [{"name": "x-api-key", "present_match": True}]},
                  "requires": {"requires_any": {"requirements": [
                      {"provider_name": "identity"}, {"allow_missing": {}}]}}})
    rules.append({"match": {"prefix": "/"}, "requires": {"provider_name": "identity"}})
    return rules


UNDECLARED_METHOD_HEADER = "x-agentmesh-undeclared-method"


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
            "timestamp": "%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%",
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
        if code != 403:
            mappers.append({"filter": status_is(code),
                            "body_format_override": body(name, "%LOCAL_REPLY_BODY%")})
    return {"mappers": mappers, "body_format": body("ERROR", "%LOCAL_REPLY_BODY%")}


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


def build(contract: Contract, options: GatewayOptions) -> dict[str, Any]:
    missing = set(contract.backends) - set(options.backends)
    if missing:
        raise ValueError(f"no address for services: {', '.join(sorted(missing))}")
    routes = [_route(rpc, options) for rpc in contract.rpcs]
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
            "default_source_code": {"inline_string": lua_source(contract)}}},
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
                ],
                "clock_skew_seconds": 30,
            }},
            "rules": _jwt_rules(contract),
        }},
        {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": {
            "@type": f"{_T}filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            "proto_descriptor": str(options.descriptor_set or resources.descriptor_set()),
            "services": contract.services,
            "convert_grpc_status": True,
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
        {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
            "@type": f"{_T}filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "gateway_rate_limit",
            "token_bucket": {"max_tokens": options.rate_limit_per_minute,
                             "tokens_per_fill": options.rate_limit_per_minute,
                             "fill_interval": "60s"},
            "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"},
                               "runtime_key": "agentmesh.rate_limit.enabled"},
            "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"},
                                "runtime_key": "agentmesh.rate_limit.enforced"},
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03"}},
        {"name": "envoy.filters.http.router", "typed_config": {
            "@type": f"{_T}filters.http.router.v3.Router"}},
    ]
    hcm = {
        "@type": f"{_T}filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "codec_type": "AUTO",
        "use_remote_address": True,
        "common_http_protocol_options": {"idle_timeout": "300s"},
        "local_reply_config": _local_reply_config(),
        "route_config": {
            "name": "agentmesh",
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
                    "allow_headers": "authorization, content-type, x-api-key, x-correlation-id",
                    "expose_headers": "x-correlation-id, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset",
                    "max_age": "600"}},
            }],
        },
        "http_filters": filters,
    }
    clusters = [_cluster(name, *address) for name, address in sorted(options.backends.items())
                if name in contract.backends]
    clusters.append(_cluster("gateway_self", "127.0.0.1", options.listen_port, http2=False))
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
    if options.admin_port:
        bootstrap["admin"] = {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": options.admin_port}}}
    return bootstrap
