"""Retention: every `AGENTMESH_RETENTION_PRUNE_SECONDS`, spans, logs, events and ended alert
notifications older than `retention.days` of the runtime configuration (by default
`AGENTMESH_RETENTION_DAYS`) go, and audit events older than `AGENTMESH_AUDIT_RETENTION_DAYS`
(365), so storage does not grow without bound."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from mesh.observability import audit_log
from mesh.observability.models import AlertNotificationRow, EventRow, LogRow, SpanRow
from mesh.runtime import live
from mesh.runtime.db import Database
from mesh.runtime.settings import Settings
from mesh.runtime.tables import utcnow

log = logging.getLogger("mesh.observability")


def prune(session: Session, before: datetime) -> int:
    """Deletes spans, logs, events and ended alert notifications older than `before`; how
    many rows went."""
    removed = 0
    for table, column in ((SpanRow, SpanRow.created_at), (LogRow, LogRow.timestamp),
                          (EventRow, EventRow.created_at)):
        removed += session.execute(sa.delete(table).where(column < before)).rowcount
    removed += session.execute(sa.delete(AlertNotificationRow).where(
        AlertNotificationRow.created_at < before,
        AlertNotificationRow.status != "pending")).rowcount
    return removed


@dataclass
class Retention:
    """The pruning loop and what its health check reports."""

    db: Database
    settings: Settings
    last_run_at: datetime | None = None
    removed: int = 0
    error: str = ""

    async def run_once(self) -> None:
        try:
            # The runtime configuration (PUT /api/v1/system/config, `retention.days`) wins
            # over the setting the process started with.
            days = float(live.value("retention", "days", self.settings.retention_days))
            before = utcnow() - timedelta(days=days)
            removed = await self.db.write(lambda s: prune(s, before))
            removed += await self.db.write(
                lambda s: audit_log.prune(s, self.settings.audit_retention_days))
            self.last_run_at, self.error = utcnow(), ""
            self.removed += removed
            if removed:
                log.info("retention: removed %d spans, logs and events older than %s",
                         removed, before.isoformat())
        except Exception as exc:  # noqa: BLE001 - retried at the next round
            self.error = f"{type(exc).__name__}: {exc}"[:500]
            log.exception("retention round failed")

    async def run(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.settings.retention_prune_seconds)
