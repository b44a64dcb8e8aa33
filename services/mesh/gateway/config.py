"""Generates Envoy's bootstrap from the contract: one generator for `agentmesh up` and the Helm
chart. Every route, scope and public path comes from `mesh.contract`; this module only
composes the parts, each in a module of its own:

    options.py     GatewayOptions: the backends and the settings the services read
    listener.py    the public listener: connection manager, virtual host, CORS
    filters.py     the HTTP filter chain (lua, cors, buffer, jwt_authn, transcoder, ext_authz,
                   rbac, rate limits, router) and its order
    routes.py      a route per exposed RPC with its scope check, the WebSockets, MCP, the catch-all
    ratelimits.py  the local buckets and the global rate-limit filter
    replies.py     Envoy's own replies in the error envelope
    lua.py         gateway.lua with the contract's routes and body shapes filled in
    clusters.py    the services' replicas, the gateway itself, the WebSocket and MCP listeners
    tracing.py     the OpenTelemetry tracer and an outside collector's cluster
    admin.py       the admin socket and the metrics listener
"""

from __future__ import annotations

from typing import Any

from mesh.contract import Contract
from mesh.gateway.admin import admin, metrics_cluster, metrics_listener
from mesh.gateway.clusters import (mcp_cluster, self_cluster, service_clusters,
                                   websocket_cluster)
from mesh.gateway.envoy import EXTENSIONS
from mesh.gateway.listener import gateway_listener
from mesh.gateway.options import GatewayOptions
from mesh.gateway.tracing import trace_collector_cluster

__all__ = ["GatewayOptions", "build"]

# Envoy's watchdog counts an event loop that did not come round in time (`watchdog_miss`; it
# kills nothing unless told to). Every thread touches it at half the shortest timeout: at the
# default 200 ms that woke each thread ten times a second, a third of the idle gateway's CPU.
# A loop stuck for a second is what is worth counting here.
WATCHDOG = {"miss_timeout": "1s", "megamiss_timeout": "5s"}


def build(contract: Contract, options: GatewayOptions) -> dict[str, Any]:
    missing = set(contract.backends) - set(options.backends)
    if missing:
        raise ValueError(f"no address for services: {', '.join(sorted(missing))}")
    clusters = service_clusters(contract, options)
    if options.trace_collector:
        clusters.append(trace_collector_cluster(options))
    clusters.append(self_cluster(options))
    if options.live_websocket is not None:
        clusters.append(websocket_cluster(options.live_websocket))
    if options.mcp_http is not None:
        clusters.append(mcp_cluster(options.mcp_http))
    listeners = [gateway_listener(contract, options)]
    bootstrap: dict[str, Any] = {
        "node": {"id": "agentmesh-gateway", "cluster": "agentmesh"},
        "static_resources": {"listeners": listeners, "clusters": clusters},
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": f"{EXTENSIONS}resource_monitors.downstream_connections.v3."
                         "DownstreamConnectionsConfig",
                "max_active_downstream_connections": 10000}}]},
        "watchdogs": {"main_thread_watchdog": WATCHDOG, "worker_watchdog": WATCHDOG},
    }
    if options.admin_socket:
        bootstrap["admin"] = admin(options)
        if options.metrics_port:
            clusters.append(metrics_cluster(options))
            listeners.append(metrics_listener(options))
    return bootstrap
