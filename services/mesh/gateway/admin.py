"""Envoy's admin interface, only on a Unix socket of the gateway's own user, and the metrics
listener that exposes nothing of it but GET /stats/prometheus."""

from __future__ import annotations

from typing import Any

from mesh.gateway.envoy import HCM_TYPE, router_filter
from mesh.gateway.options import GatewayOptions

ADMIN_SOCKET_MODE = 0o600  # the admin socket: the gateway's own user only


def admin(options: GatewayOptions) -> dict[str, Any]:
    return {"address": {"pipe": {"path": options.admin_socket, "mode": ADMIN_SOCKET_MODE}}}


def metrics_cluster(options: GatewayOptions) -> dict[str, Any]:
    return {
        "name": "gateway_admin", "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": "gateway_admin", "endpoints": [{"lb_endpoints": [{
            "endpoint": {"address": {"pipe": {"path": options.admin_socket}}}}]}]}}


def metrics_listener(options: GatewayOptions) -> dict[str, Any]:
    """GET /stats/prometheus on the metrics port, proxied to the admin socket; nothing else
    of the admin interface (which can stop Envoy) is reachable from outside."""
    return {
        "name": "metrics",
        "address": {"socket_address": {"address": options.listen_address,
                                       "port_value": options.metrics_port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM_TYPE,
                "stat_prefix": "metrics",
                "route_config": {"name": "metrics", "virtual_hosts": [{
                    "name": "metrics", "domains": ["*"],
                    "routes": [{"match": {"path": "/stats/prometheus",
                                          "headers": [{"name": ":method",
                                                       "string_match": {"exact": "GET"}}]},
                                "route": {"cluster": "gateway_admin"}},
                               {"match": {"prefix": "/"},
                                "direct_response": {"status": 404}}]}]},
                "http_filters": [router_filter()]}}]}],
    }
