"""Traces: Envoy's OpenTelemetry tracer, exporting to the mesh's own OTLP receiver (the
observability service, with the internal token) or to a collector the user named."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mesh.gateway.clusters import cluster
from mesh.gateway.envoy import EXTENSIONS
from mesh.gateway.options import GatewayOptions
from mesh.runtime.internal import HEADER as INTERNAL_TOKEN_HEADER

TRACE_COLLECTOR_CLUSTER = "otlp_collector"


def trace_collector_cluster(options: GatewayOptions) -> dict[str, Any]:
    """The cluster of an OTLP collector outside the mesh, TLS when its URL says so (verified
    against OTEL_EXPORTER_OTLP_CERTIFICATE, else the system's CA bundle)."""
    from mesh.runtime.telemetry import parse_endpoint

    host, port, tls = parse_endpoint(options.trace_collector)
    found = cluster(TRACE_COLLECTOR_CLUSTER, host, port)
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
        found["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": f"{EXTENSIONS}transport_sockets.tls.v3.UpstreamTlsContext", **context}}
    return found


def tracing(options: GatewayOptions) -> dict[str, Any]:
    """Envoy's OpenTelemetry tracer: spans to the OTLP receiver (or the collector the user
    named), with the caller's tenant. Its `service.name` is `agentmesh-gateway`, beside the
    services' `agentmesh-<service>` (mesh.runtime.telemetry)."""
    if options.trace_collector:
        target = TRACE_COLLECTOR_CLUSTER
        metadata = [{"key": k, "value": v} for k, v in options.trace_collector_headers.items()]
    else:
        target = options.trace_cluster
        metadata = ([{"key": INTERNAL_TOKEN_HEADER, "value": options.trace_token}]
                    if options.trace_token else [])
    return {
        "random_sampling": {"value": options.trace_sample_percent},
        "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": target}, "timeout": "1s",
                             **({"initial_metadata": metadata} if metadata else {})},
            "service_name": "agentmesh-gateway"}},
        "custom_tags": [{"tag": "tenant_id",
                         "request_header": {"name": "x-agentmesh-tenant-id"}}],
    }
