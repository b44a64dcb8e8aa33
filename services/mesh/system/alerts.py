"""Alerts the platform raises about itself (GET /api/v1/system/alerts): after each sample, a
service not answering its health check as SERVING (unless it is restarting), memory or disk use
over the thresholds of the runtime configuration; and the outcome of each backup."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, select

from agentmesh.common.v1 import common_pb2
from mesh.runtime.db import Database
from mesh.runtime.tables import utcnow
from mesh.system import restart
from mesh.system.models import PLATFORM, AlertRow
from mesh.system.sampler import Sample
from mesh.system.store import alerts_repo

FIRING, RESOLVED = "ALERT_STATE_FIRING", "ALERT_STATE_RESOLVED"


class SystemAlerts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def fire(self, key: str, title: str, message: str, severity: str,
                   service: str = "", resolved: bool = False) -> None:
        """Fires (or refreshes) the alert of condition `key`; `resolved` records an event
        that needs no action (a finished backup)."""
        def apply(session: Session) -> None:
            row = session.exec(select(AlertRow).where(
                AlertRow.tenant_id == PLATFORM, AlertRow.key == key,
                AlertRow.state == FIRING)).first()
            fresh = row is None
            if fresh:
                row = AlertRow(tenant_id=PLATFORM, key=key, service=service)
            row.title, row.message, row.severity = title, message, severity
            if resolved:
                row.state, row.resolved_at = RESOLVED, utcnow()
            if fresh:
                alerts_repo.add(session, row)
            else:
                alerts_repo.save(session, row)
        await self.db.write(apply)

    async def resolve(self, key: str) -> None:
        def apply(session: Session) -> None:
            for row in session.exec(select(AlertRow).where(
                    AlertRow.tenant_id == PLATFORM, AlertRow.key == key,
                    AlertRow.state == FIRING)).all():
                row.state, row.resolved_at = RESOLVED, utcnow()
                alerts_repo.save(session, row)
        await self.db.write(apply)

    async def firing(self) -> set[str]:
        rows = await self.db.fetch((
            f"SELECT key FROM system_alerts WHERE tenant_id = {self.db.placeholder} "
            f"AND state = {self.db.placeholder}", (PLATFORM, FIRING)))
        return {r[0] for r in rows[0]}

    async def evaluate(self, sample: Sample, thresholds: dict, health: dict[
            str, common_pb2.ServiceHealth], control: Path | None) -> None:
        """The rules, after each sample: `health` is each service's last check,
        `thresholds` the `alerts` section of the runtime configuration."""
        firing = await self.firing()
        for name, check in health.items():
            key = f"unhealthy:{name}"
            if check.status != "healthy" and not (control and restart.in_progress(control, name)):
                await self.fire(key, f"{name}: unhealthy",
                                f"service {name} does not answer health checks as "
                                f"SERVING ({check.message})", "ALERT_SEVERITY_CRITICAL", name)
            elif key in firing:
                await self.resolve(key)
        for key, value, limit, what in (
                ("memory", sample.memory_percent, thresholds["memory_percent"], "memory"),
                ("disk", sample.disk_percent, thresholds["disk_percent"], "disk")):
            if value > limit:
                await self.fire(key, f"{what} use high",
                                f"{what} use is {value:.1f}%, over {limit:g}%",
                                "ALERT_SEVERITY_WARNING")
            elif key in firing:
                await self.resolve(key)
