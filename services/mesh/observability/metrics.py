"""The platform's metrics: every process's Prometheus text and the gateway's (the
`AGENTMESH_METRICS_TARGETS`), or this process's own registry when no targets are set (one
process serving every service); and the same numbers as JSON, one point (now) per series."""

from __future__ import annotations

import asyncio
import logging

from agentmesh.observability.v1 import observability_pb2 as pb
from mesh.runtime.metrics import scrape
from mesh.runtime.tables import utcnow

log = logging.getLogger("mesh.observability")


def _scrape(url: str) -> str:
    try:
        return scrape(url, timeout=2)
    except OSError as exc:
        log.warning("metrics target %s unreachable: %s", url, exc)
        return ""


async def prometheus_text(targets: list[str]) -> str:
    if not targets:
        from prometheus_client import REGISTRY, generate_latest

        return generate_latest(REGISTRY).decode()
    texts = await asyncio.gather(*(asyncio.to_thread(_scrape, t) for t in targets))
    return "\n".join(t.strip() for t in texts if t.strip()) + "\n"


def as_json(text: str, request: pb.GetMetricsRequest) -> pb.Metrics:
    from prometheus_client.parser import text_string_to_metric_families

    now = utcnow()
    wanted = set(request.names)
    metrics = pb.Metrics()
    metrics.start_time.FromDatetime(now)
    metrics.end_time.FromDatetime(now)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if wanted and sample.name not in wanted and family.name not in wanted:
                continue
            if request.service and sample.labels.get("service") != request.service:
                continue
            series = metrics.series.add(name=sample.name, labels=sample.labels,
                                        unit=family.unit or "")
            point = series.points.add(value=float(sample.value))
            point.timestamp.FromDatetime(now)
    return metrics
