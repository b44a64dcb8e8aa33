"""Envoy's spellings the gateway's modules share."""

from __future__ import annotations

# The type URL prefix of Envoy's extensions (`@type` of every filter and extension config).
EXTENSIONS = "type.googleapis.com/envoy.extensions."
HCM_TYPE = f"{EXTENSIONS}filters.network.http_connection_manager.v3.HttpConnectionManager"


def duration(seconds: float) -> str:
    return f"{seconds}s"


def router_filter() -> dict:
    """The last filter of a chain: forwards to the route's cluster."""
    return {"name": "envoy.filters.http.router", "typed_config": {
        "@type": f"{EXTENSIONS}filters.http.router.v3.Router"}}
