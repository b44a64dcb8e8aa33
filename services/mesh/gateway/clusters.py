"""The upstream clusters: each service's replicas (HTTP/2, round robin, outlier detection),
the gateway itself (for its JWKS) and the live service's WebSocket listener (HTTP/1.1)."""

from __future__ import annotations

import ipaddress
from typing import Any

from mesh.contract import Contract
from mesh.gateway.envoy import EXTENSIONS
from mesh.gateway.options import GatewayOptions
from mesh.gateway.routes import LIVE_WS_CLUSTER, MCP_CLUSTER


def endpoints(address: tuple[str, int] | list[tuple[str, int]]) -> list[tuple[str, int]]:
    """One backend's addresses: a (host, port) pair or a list of them (replicas)."""
    if isinstance(address, tuple) and len(address) == 2 and isinstance(address[1], int):
        return [address]
    return [(host, int(port)) for host, port in address]


def service_clusters(contract: Contract, options: GatewayOptions) -> list[dict[str, Any]]:
    """A cluster per service of the contract, by name (TLS when the options have a CA)."""
    clusters = [replicated_cluster(name, address)
                for name, address in sorted(options.backends.items()) if name in contract.backends]
    if options.upstream_tls_ca_file:
        for found in clusters:
            found["transport_socket"] = upstream_tls(options)
    return clusters


def upstream_tls(options: GatewayOptions) -> dict[str, Any]:
    """TLS to a service's gRPC listener (mesh.runtime.tls): its certificate checked against the
    CA (and its name, when one is set), HTTP/2 by ALPN, a client certificate when configured."""
    validation: dict[str, Any] = {"trusted_ca": {"filename": options.upstream_tls_ca_file}}
    context: dict[str, Any] = {"alpn_protocols": ["h2"], "validation_context": validation}
    if options.upstream_tls_server_name:
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "DNS", "matcher": {"exact": options.upstream_tls_server_name}}]
    if options.upstream_tls_cert_file:
        context["tls_certificates"] = [{
            "certificate_chain": {"filename": options.upstream_tls_cert_file},
            "private_key": {"filename": options.upstream_tls_key_file}}]
    tls: dict[str, Any] = {"@type": f"{EXTENSIONS}transport_sockets.tls.v3.UpstreamTlsContext",
                           "common_tls_context": context}
    if options.upstream_tls_server_name:
        tls["sni"] = options.upstream_tls_server_name
    return {"name": "envoy.transport_sockets.tls", "typed_config": tls}


def self_cluster(options: GatewayOptions) -> dict[str, Any]:
    """The gateway's own listener, where jwt_authn fetches the JWKS (identity's public route)."""
    return cluster("gateway_self", "127.0.0.1", options.listen_port, http2=False)


# Every open WebSocket (and MCP stream) holds one HTTP/1.1 connection to its upstream. Envoy's
# default circuit breaker allows 1,024 connections (and requests) per cluster: the 1,025th
# socket hung in its handshake, never refused (bench/scale.py found it). What bounds sockets is
# the live service's per-tenant quota (AGENTMESH_LIVE_MAX_SOCKETS_PER_TENANT), not the gateway.
LONG_LIVED_CONNECTIONS = 100_000


def _long_lived(found: dict[str, Any]) -> dict[str, Any]:
    found.pop("typed_extension_protocol_options", None)  # HTTP/1.1: the upgrade, SSE
    found["circuit_breakers"]["thresholds"][0].update(
        max_connections=LONG_LIVED_CONNECTIONS, max_pending_requests=LONG_LIVED_CONNECTIONS,
        max_requests=LONG_LIVED_CONNECTIONS)
    return found


def websocket_cluster(address: tuple[str, int] | list[tuple[str, int]]) -> dict[str, Any]:
    websocket = _long_lived(replicated_cluster(LIVE_WS_CLUSTER, address, grpc_health=False))
    websocket["per_connection_buffer_limit_bytes"] = 256 * 1024
    return websocket


# Envoy's default allows 3 retries in flight per cluster: when a replica dies under load, more
# calls than that are refused by it at once, and the ones past the third were answered 503
# instead of going to the live replica. A budget scales with the traffic instead.
RETRY_BUDGET = {"budget_percent": {"value": 25.0}, "min_retry_concurrency": 16}

# Each replica's gRPC health (mesh.runtime.server: NOT_SERVING until started and while it
# drains), asked every second while calls flow: a killed replica leaves the rotation within a
# second and for as long as it is down, and a restarted one joins it only once it serves.
# Outlier detection alone put a dead replica back after each ejection (base_ejection_time) and
# sent it calls again.
REPLICA_HEALTH_CHECK = {"timeout": "1s", "interval": "1s", "no_traffic_interval": "5s",
                        "unhealthy_threshold": 1, "healthy_threshold": 1,
                        "grpc_health_check": {}}


def mcp_cluster(address: tuple[str, int] | list[tuple[str, int]]) -> dict[str, Any]:
    """The integration service's MCP listener (uvicorn: HTTP/1.1, no gRPC health)."""
    return _long_lived(replicated_cluster(MCP_CLUSTER, address, grpc_health=False))


def replicated_cluster(name: str, address: tuple[str, int] | list[tuple[str, int]],
                       grpc_health: bool = True) -> dict[str, Any]:
    """A service's cluster: every replica an endpoint, round robin; a replica that fails
    connections is ejected for a while (outlier detection) instead of taking every Nth call,
    and, when there are several, one that is not SERVING takes none (active health checks)."""
    addresses = endpoints(address)
    found = cluster(name, *addresses[0])
    if len(addresses) > 1:
        found["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
            for host, port in addresses]
    found["outlier_detection"] = {"consecutive_gateway_failure": 2,
                                  "consecutive_local_origin_failure": 2,
                                  "split_external_local_origin_errors": True,
                                  "interval": "2s", "base_ejection_time": "5s",
                                  "max_ejection_percent": 100}
    if len(addresses) > 1 and grpc_health:
        found["health_checks"] = [dict(REPLICA_HEALTH_CHECK)]
        # Envoy counts a timeout as a local-origin failure too: the global rate limit's 50 ms
        # calls timing out on a busy governance replica ejected it for longer each time, and
        # its peer took all the traffic. A dead replica is the health check's to find.
        found["outlier_detection"]["enforcing_consecutive_local_origin_failure"] = 0
    found["circuit_breakers"] = {"thresholds": [{"retry_budget": RETRY_BUDGET}]}
    return found


def cluster(name: str, host: str, port: int, http2: bool = True) -> dict[str, Any]:
    try:
        ipaddress.ip_address(host)
        kind = "STATIC"
    except ValueError:
        kind = "STRICT_DNS"
    found: dict[str, Any] = {
        "name": name,
        "type": kind,
        "connect_timeout": "2s",
        # The transcoder buffers a whole message; Swagger UI's bundle is ~1.5 MB.
        "per_connection_buffer_limit_bytes": 8 * 1024 * 1024,
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": host, "port_value": port}}}}]}]},
    }
    if http2:
        found["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{EXTENSIONS}upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}}
    return found
