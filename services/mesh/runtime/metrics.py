"""Prometheus metrics of a service process (`prometheus-client`, its default registry, which also
carries the process's CPU and memory).

Every RPC is counted by service, method and gRPC code, and timed, in the method wrapper of
`mesh.runtime.server`. Services add their own domain metrics here (one place for the names).
A process exposes the registry over HTTP on `AGENTMESH_METRICS_PORT` (Kubernetes scrapes each
pod there); the observability service gathers every process's text and the gateway's for
`GET /metrics` (`scrape`, also used by the system service's sampler).
"""

from __future__ import annotations

import http.client
import socket
import urllib.request
from urllib.parse import quote, unquote, urlsplit

from prometheus_client import Counter, Histogram, start_http_server

from mesh.runtime.settings import Settings

REQUESTS = Counter("agentmesh_requests", "RPCs served, by service, method and gRPC code",
                   ["service", "method", "code"])
_RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                30)
LATENCY = Histogram("agentmesh_request_duration_seconds", "Time to serve an RPC",
                    ["service", "method"], buckets=_RPC_BUCKETS)
# The same by service only: what the system service samples (mesh.system.sampler) reads, a
# sixteenth of the lines of the histogram per RPC above, which is most of a scrape.
SERVICE_LATENCY = Histogram("agentmesh_service_request_duration_seconds",
                            "Time to serve an RPC, by service", ["service"],
                            buckets=_RPC_BUCKETS)

# Domain metrics (docs/observability.md "Metrics").
DECISIONS = Counter("agentmesh_governance_decisions", "Governance decisions, by action, outcome "
                    "(allowed, denied) and reason kind", ["action", "outcome", "reason"])
DECISION_LATENCY = Histogram("agentmesh_governance_decision_seconds", "Time to evaluate a "
                             "decision's policies", ["action"],
                             buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                      0.01, 0.05))
MODEL_TOKENS = Counter("agentmesh_model_tokens", "Model tokens used, by model", ["model"])
MODEL_COST = Counter("agentmesh_model_cost_usd", "Model cost in US dollars, by model", ["model"])
EXECUTIONS = Counter("agentmesh_workflow_executions", "Workflow executions ended, by status",
                     ["status"])
STEP_DURATION = Histogram("agentmesh_workflow_step_duration_seconds", "Time a workflow step "
                          "took, by type and status", ["type", "status"],
                          buckets=(0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600))


def reason_kind(allowed: bool, reason: str) -> str:
    """A decision's reason as a label of few values (the text names policies)."""
    text = reason.lower()
    if "default deny" in text:
        return "default_deny"
    if "missing scope" in text:
        return "scope"
    if "evaluation failed" in text:
        return "error"
    if "no polic" in text:
        return "no_policy"
    return "policy"


_started = False


class MethodMetrics:
    """The counters of one RPC, looked up once (a labels() lookup per call costs a lock)."""

    __slots__ = ("service", "method", "ok", "latency", "service_latency")

    def __init__(self, service: str, method: str) -> None:
        self.service, self.method = service, method
        self.ok = REQUESTS.labels(service, method, "OK")
        self.latency = LATENCY.labels(service, method)
        self.service_latency = SERVICE_LATENCY.labels(service)

    def observe(self, seconds: float, code: str = "OK") -> None:
        self.latency.observe(seconds)
        self.service_latency.observe(seconds)
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


# ---- the platform's own metrics targets --------------------------------------------------------
# `AGENTMESH_METRICS_TARGETS` (set by the operator or `agentmesh up`, never by a tenant): each an
# http:// URL, or `http+unix://<URL-encoded socket path>/<path>` for a Unix socket (Envoy's admin
# interface in `agentmesh up`). Not the egress guard's business: these are the platform's own
# addresses, which the guard refuses by design.
UNIX_SCHEME = "http+unix"
MAX_SCRAPE_BYTES = 8 * 1024 * 1024


def unix_target(socket_path: str, path: str) -> str:
    """The target for `path` served on the Unix socket `socket_path`."""
    return f"{UNIX_SCHEME}://{quote(str(socket_path), safe='')}{path}"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def scrape(target: str, timeout: float = 3.0, limit: int = MAX_SCRAPE_BYTES) -> str:
    """The text a metrics target serves (blocking: call it in a thread); OSError when it
    cannot be read."""
    parts = urlsplit(target)
    if parts.scheme == UNIX_SCHEME:
        connection = _UnixConnection(unquote(parts.netloc), timeout)
        try:
            connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
            reply = connection.getresponse()
            if reply.status != 200:
                raise OSError(f"{target} answered HTTP {reply.status}")
            return reply.read(limit).decode("utf-8", "replace")
        except http.client.HTTPException as exc:
            raise OSError(f"{target}: {exc}") from None
        finally:
            connection.close()
    with urllib.request.urlopen(target, timeout=timeout) as answer:  # noqa: S310 - our own
        return answer.read(limit).decode("utf-8", "replace")
