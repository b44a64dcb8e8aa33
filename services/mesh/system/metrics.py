"""The host's and the services' metrics as the sampler (mesh/system/sampler.py) keeps them:
the latest sample, and the history averaged into buckets."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from agentmesh.system.v1 import system_pb2 as pb
from mesh import catalog
from mesh.runtime.errors import invalid_field
from mesh.system.sampler import Sample
from mesh.system.store import stamp

METRICS = {  # name -> unit
    "cpu_percent": "percent", "memory_percent": "percent", "memory_used_mb": "MB",
    "disk_percent": "percent", "request_rate": "requests/s", "error_rate": "ratio",
    "p95_latency_ms": "ms", "memory_mb": "MB",
}
SERVICE_METRICS = {"cpu_percent", "memory_mb", "request_rate", "error_rate", "p95_latency_ms"}
MAX_BUCKETS = 1000


def metrics_message(sample: Sample) -> pb.SystemMetrics:
    return pb.SystemMetrics(
        timestamp=stamp(sample.at), cpu_percent=sample.cpu_percent,
        memory_percent=sample.memory_percent, memory_used_mb=sample.memory_used_mb,
        disk_percent=sample.disk_percent, request_rate=sample.request_rate,
        error_rate=sample.error_rate, p95_latency_ms=sample.p95_latency_ms,
        active_connections=sample.active_connections,
        services=[pb.ServiceMetrics(name=name, **vars(point))
                  for name, point in sorted(sample.services.items())])


def history(request: pb.GetSystemMetricsHistoryRequest, samples: Iterable[Sample],
            sample_seconds: float) -> pb.SystemMetricsHistory:
    """The series asked for over `[start_time, end_time]` (the last hour by default), each
    point the mean of the samples in its bucket; per service too, with a `service` label."""
    unknown = [n for n in request.names if n not in METRICS]
    if unknown:
        raise invalid_field("names", f"unknown metrics {', '.join(unknown)}; known: "
                            + ", ".join(sorted(METRICS)))
    end = (request.end_time.ToDatetime(UTC) if request.HasField("end_time")
           else datetime.now(UTC))
    start = (request.start_time.ToDatetime(UTC) if request.HasField("start_time")
             else end - timedelta(hours=1))
    if end < start:
        raise invalid_field("end_time", "must not precede start_time")
    span = (end - start).total_seconds()
    if request.HasField("interval"):
        interval = request.interval.ToTimedelta().total_seconds()
        if interval <= 0:
            raise invalid_field("interval", "must be positive")
    else:
        interval = max(sample_seconds, span / 100) if span else sample_seconds
    if span / interval > MAX_BUCKETS:
        raise invalid_field("interval", f"yields more than {MAX_BUCKETS} buckets; widen it")
    if request.service and request.service not in catalog.names():
        raise invalid_field("service", f"unknown service {request.service!r}")
    names = list(request.names) or sorted(METRICS)
    low, high = start.timestamp(), end.timestamp()
    series: dict[tuple[str, str], dict[float, list[float]]] = {}
    for s in (s for s in samples if low <= s.at <= high):
        bucket = low + math.floor((s.at - low) / interval) * interval
        for name in names:
            if not request.service and name in METRICS and name != "memory_mb":
                series.setdefault((name, ""), {}).setdefault(bucket, []).append(
                    getattr(s, name))
            if name in SERVICE_METRICS:
                for service, point in s.services.items():
                    if request.service and service != request.service:
                        continue
                    series.setdefault((name, service), {}).setdefault(bucket, []).append(
                        getattr(point, name))
    out = pb.SystemMetricsHistory(start_time=stamp(start), end_time=stamp(end))
    out.interval.FromTimedelta(timedelta(seconds=interval))
    for (name, service), buckets in sorted(series.items()):
        item = out.series.add(name=name, unit=METRICS[name])
        if service:
            item.labels["service"] = service
        for bucket, values in sorted(buckets.items()):
            item.points.add(timestamp=stamp(bucket), value=round(sum(values) / len(values), 4))
    return out
