"""What the gateway is configured with: the services' addresses and the settings the services
read, so what identity signs (issuer, audience) is what the gateway verifies."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.runtime.settings import Settings


def _default(name: str) -> Any:
    """A setting's default: the gateway's own defaults are the settings' (`from_settings`
    passes the configured values)."""
    return Settings.model_fields[name].default


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
    jwt_issuer: str = _default("jwt_issuer")
    jwt_audience: str = _default("jwt_audience")
    jwks_cache_seconds: int = 300
    max_request_bytes: int = 1024 * 1024
    request_timeout_seconds: int = 30
    rate_limit_per_minute: int = 6000  # per tenant (a JWT's `tid` or an API key's tenant)
    # Per client IP, for every request (a backstop against one address flooding). 0: 10x the
    # tenant limit.
    ip_rate_limit_per_minute: int = _default("gateway_ip_rate_limit")
    # Per client IP on the credential routes (register, login, refresh).
    auth_rate_limit_per_minute: int = _default("gateway_auth_rate_limit")
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
    # `mesh.gateway.ratelimits.global_rate_limit()` and docs/governance.md).
    global_rate_limit: bool = _default("gateway_global_rate_limit")
    global_rate_limit_domain: str = _default("rate_limit_domain")
    global_rate_limit_timeout_ms: int = 50
    global_rate_limit_fail_open: bool = True
    # A listener on listen_address:metrics_port that serves only Envoy's Prometheus stats
    # (GET /stats/prometheus, proxied to the admin socket). 0 = none; needs admin_socket. The
    # Helm chart's ServiceMonitor scrapes it.
    metrics_port: int = 0
    # The live service's WebSocket listener(s): /ws/... is routed there with the upgrade
    # enabled (docs/live-events.md). None: no WebSocket routes.
    live_websocket: tuple[str, int] | list[tuple[str, int]] | None = None
    # The integration service's MCP listener(s) (Streamable HTTP): /api/v1/mcp is routed there
    # (docs/mcp.md). None: no MCP route.
    mcp_http: tuple[str, int] | list[tuple[str, int]] | None = None
    # TLS to the services' gRPC listeners (mesh.runtime.tls): the CA file that signed their
    # certificates ("" = plaintext), a client certificate and key to present (for listeners that
    # require one), and the name their certificates carry (checked, and sent as SNI).
    upstream_tls_ca_file: str = ""
    upstream_tls_cert_file: str = ""
    upstream_tls_key_file: str = ""
    upstream_tls_server_name: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, backends: dict[str, tuple[str, int]],
                      **overrides: Any) -> "GatewayOptions":
        """The gateway options for the settings the services read (`AGENTMESH_*`), so that
        what the identity service signs (issuer, audience) is what the gateway verifies."""
        return cls(**{"backends": backends, "jwt_issuer": settings.jwt_issuer,
                      "jwt_audience": settings.jwt_audience,
                      "trace_sample_percent": settings.trace_sample_percent,
                      "ip_rate_limit_per_minute": settings.gateway_ip_rate_limit,
                      "auth_rate_limit_per_minute": settings.gateway_auth_rate_limit,
                      "global_rate_limit": settings.gateway_global_rate_limit,
                      "global_rate_limit_domain": settings.rate_limit_domain,
                      "upstream_tls_ca_file": settings.tls_ca_file,
                      "upstream_tls_cert_file": settings.tls_cert_file,
                      "upstream_tls_key_file": settings.tls_key_file,
                      "upstream_tls_server_name": settings.tls_server_name, **overrides})
