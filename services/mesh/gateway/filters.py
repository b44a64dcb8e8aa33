"""The HTTP filter chain, in order (order matters):

    lua (edge logic) -> cors -> buffer (body limit) -> jwt_authn -> grpc_json_transcoder
      -> ext_authz (X-API-Key requests only) -> rbac (per-RPC scope) -> local_ratelimit
      [-> ratelimit (global, when on)] -> router

RBAC sits after the transcoder so that it sees the gRPC method path, which is what the per-RPC
routes match.
"""

from __future__ import annotations

import re
from typing import Any

from mesh import resources
from mesh.contract import Contract
from mesh.gateway.envoy import EXTENSIONS, duration, router_filter
from mesh.gateway.lua import lua_filter
from mesh.gateway.options import GatewayOptions
from mesh.gateway.ratelimits import global_rate_limit, local_rate_limit_filter
from mesh.gateway.routes import WS_PREFIX, template_pattern
from mesh.runtime.context import (SCOPES_HEADER, SESSION_HEADER, TENANT_HEADER, TOKEN_IAT_HEADER,
                                  USER_HEADER)

IDENTITY_CLUSTER = "identity"
# Verified tokens each of Envoy's worker threads keeps (an entry is the token and its claims).
JWT_CACHE_SIZE = 1000


def http_filters(contract: Contract, options: GatewayOptions
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The filter chain, and the rate-limit actions the virtual host adds for the global rate
    limit (none when it is off)."""
    filters = [
        _compressor(),
        lua_filter(contract, options),
        {"name": "envoy.filters.http.cors", "typed_config": {
            "@type": f"{EXTENSIONS}filters.http.cors.v3.Cors"}},
        {"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": f"{EXTENSIONS}filters.http.buffer.v3.Buffer",
            "max_request_bytes": options.max_request_bytes}},
        _jwt_authn(contract, options),
        _transcoder(contract, options),
        {"name": "envoy.filters.http.ext_authz", "typed_config": {
            "@type": f"{EXTENSIONS}filters.http.ext_authz.v3.ExtAuthz",
            "grpc_service": {"envoy_grpc": {"cluster_name": IDENTITY_CLUSTER}, "timeout": "2s"},
            "transport_api_version": "V3",
            "failure_mode_allow": False,  # fail closed
            "filter_enabled_metadata": {"filter": "agentmesh", "path": [{"key": "api_key"}],
                                        "value": {"bool_match": True}},
            "status_on_error": {"code": 503},
        }},
        {"name": "envoy.filters.http.rbac", "typed_config": {
            "@type": f"{EXTENSIONS}filters.http.rbac.v3.RBAC",
            # Routes carry their own policy; anything without one is denied.
            "rules": {"action": "ALLOW", "policies": {}}}},
        local_rate_limit_filter(options),
        router_filter(),
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
    return filters, virtual_host_limits


# The static pages' files (the console, the Swagger UI) are sent gzip-compressed to a client that
# accepts it. Only these media types: JSON answers stay as they are, and a stream
# (text/event-stream) is never held back by a compressor.
COMPRESSED_TYPES = ["text/html", "text/css", "text/javascript", "image/svg+xml"]


def _compressor() -> dict[str, Any]:
    # First in the chain, so last on the way out: it sees the transcoded answer (the HttpBody's
    # own content type) and the Lua filter never sees a compressed body.
    return {"name": "envoy.filters.http.compressor", "typed_config": {
        "@type": f"{EXTENSIONS}filters.http.compressor.v3.Compressor",
        "response_direction_config": {"common_config": {
            "min_content_length": 1024, "content_type": COMPRESSED_TYPES}},
        "compressor_library": {"name": "gzip", "typed_config": {
            "@type": f"{EXTENSIONS}compression.gzip.compressor.v3.Gzip"}}}}


def _jwt_authn(contract: Contract, options: GatewayOptions) -> dict[str, Any]:
    self_uri = f"http://127.0.0.1:{options.listen_port}/api/v1/auth/jwks"
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": f"{EXTENSIONS}filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"identity": {
            "issuer": options.jwt_issuer,
            "audiences": [options.jwt_audience],
            "require_expiration": True,
            "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
            "remote_jwks": {
                "http_uri": {"uri": self_uri, "cluster": "gateway_self", "timeout": "5s"},
                "cache_duration": duration(options.jwks_cache_seconds),
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
            # A token verified once is not verified again (ES256 was an eighth of the gateway's
            # CPU per request) until it expires: Envoy checks `exp` on every hit. That rotation
            # leaves earlier tokens valid to their expiry is already the JWKS's rule.
            "jwt_cache_config": {"jwt_cache_size": JWT_CACHE_SIZE},
        }},
        "rules": _jwt_rules(contract),
    }}


def _jwt_rules(contract: Contract) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for rpc in contract.rpcs:
        if not rpc.public or not rpc.exposed:
            continue
        rules.append({"match": {"path": rpc.grpc_path}})
        for binding in rpc.bindings:
            rules.append({"match": {
                "safe_regex": {"regex": template_pattern(binding.template, re.escape)},
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


def _transcoder(contract: Contract, options: GatewayOptions) -> dict[str, Any]:
    return {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": {
        "@type": f"{EXTENSIONS}filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
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
    }}
