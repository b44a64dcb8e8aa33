"""The observability service's own health: its database (one round trip), the OTLP receiver,
the log ingest, retention and the alert evaluator, with their figures."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from sqlmodel import select

from agentmesh.common.v1 import common_pb2 as common
from mesh.observability.alerts import Evaluator
from mesh.observability.retention import Retention
from mesh.runtime.db import Database
from mesh.runtime.errors import Unavailable
from mesh.runtime.settings import Settings
from mesh.runtime.tables import utcnow


def _stamp(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _component(name: str, problem: str = "", **details) -> common.ServiceHealth:
    check = common.ServiceHealth(name=name, status="unhealthy" if problem else "healthy",
                                 message=problem)
    if details:
        check.details.update(details)
    return check


async def report(db: Database, settings: Settings, intake, retention: Retention,
                 evaluator: Evaluator, loops: list[asyncio.Task]) -> common.HealthResponse:
    """Degraded when a component fails, UNAVAILABLE when the database does. `intake` counts
    what arrived; `loops` are the background tasks (none before the service started)."""
    started = time.perf_counter()
    try:
        # A probe answers in the time of one round trip, however much is stored (what was
        # taken in is in the receiver's and ingest's figures below).
        await db.read(lambda s: s.exec(select(1)).one())
        database = _component("database")
    except Exception as exc:  # noqa: BLE001 - the report names it
        database = _component("database", f"{type(exc).__name__}: {exc}"[:500])
    database.latency_ms = (time.perf_counter() - started) * 1000
    components = [
        database,
        _component("otlp-receiver", spans_received=intake.spans_received,
                   exports_refused=intake.spans_refused,
                   last_export_at=_stamp(intake.last_export_at)),
        _component("log-ingest", records_received=intake.logs_received,
                   last_ingest_at=_stamp(intake.last_ingest_at)),
        _component("retention", retention.error, retention_days=settings.retention_days,
                   interval_seconds=settings.retention_prune_seconds,
                   last_run_at=_stamp(retention.last_run_at), rows_removed=retention.removed),
    ]
    if loops:  # once started
        running = not any(t.done() for t in loops)  # they stop only by an error
        components.append(_component(
            "alert-evaluator",
            evaluator.last_error or ("" if running else "background tasks stopped"),
            interval_seconds=settings.alert_evaluation_seconds, rounds=evaluator.rounds,
            last_round_at=_stamp(evaluator.last_round_at),
            notifications_pending=await evaluator.outbox.pending()))
    failing = [c.name for c in components if c.status != "healthy"]
    try:
        release = version("agentmesh")
    except PackageNotFoundError:
        release = ""
    if "database" in failing:
        raise Unavailable("the observability service is unhealthy", reason="UNHEALTHY",
                          details={"status": "unhealthy", "failing": ",".join(failing)})
    out = common.HealthResponse(status="degraded" if failing else "healthy",
                                service="observability", version=release, services=components)
    out.timestamp.FromDatetime(utcnow())
    return out
