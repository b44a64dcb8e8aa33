"""Prometheus metrics of a service process (`prometheus-client`, its default registry, which also
carries the process's CPU and memory).

Every RPC is counted by service, method and gRPC code, and timed, in the method wrapper of
`mesh.runtime.server`. Services add their own domain metrics here (one place for the names).
A process exposes the registry over HTTP on `AGENTMESH_METRICS_PORT` (Kubernetes scrapes each
pod there); the observability service gathers every process's text and the gateway's for
`GET /metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

from mesh.runtime.settings import Settings

REQUESTS = Counter("agentmesh_requests", "RPCs served, by service, method and gRPC code",
                   ["service", "method", "code"])
LATENCY = Histogram("agentmesh_request_duration_seconds", "Time to serve an RPC",
                    ["service", "method"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                             1, 2.5, 5, 10, 30))

_started = False


class MethodMetrics:
    """The counters of one RPC, looked up once (a labels() lookup per call costs a lock)."""

    __slots__ = ("service", "method", "ok", "latency")

    def __init__(self, service: str, method: str) -> None:
        self.service, self.method = service, method
        self.ok = REQUESTS.labels(service, method, "OK")
        self.latency = LATENCY.labels(service, method)

    def observe(self, seconds: float, code: str = "OK") -> None:
        self.latency.observe(seconds)
        if code == "OK":
            self.ok.inc()
        else:
            REQUESTS.labels(self.service, self.method, code).inc()


def expose(settings: Settings) -> None:
    """Serves this process's metrics over HTTP when a port is configured (once per process)."""
    global _started
    if settings.metrics_port and not _started:
        start_http_server(settings.metrics_port, addr=settings.host)
        _started = True
