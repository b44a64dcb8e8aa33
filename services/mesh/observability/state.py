"""What the observability service keeps between calls: what the receiver and the log ingest
took in (for GetHealth), the retention loop and the alert evaluator with its notification
outbox, started before the service serves and stopped after it drains."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from mesh.observability.alerts import Evaluator
from mesh.observability.retention import Retention
from mesh.runtime.service import Runtime


@dataclass
class Intake:
    """What arrived: spans over OTLP, log records over IngestLogs."""

    spans_received: int = 0
    spans_refused: int = 0  # Exports without the platform's internal token
    last_export_at: datetime | None = None
    logs_received: int = 0
    last_ingest_at: datetime | None = None


@dataclass
class ObservabilityState:
    runtime: Runtime
    intake: Intake = field(default_factory=Intake)
    retention: Retention = field(init=False)
    evaluator: Evaluator = field(init=False)
    tasks: list[asyncio.Task] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.retention = Retention(self.runtime.database, self.runtime.settings)
        self.evaluator = Evaluator(self.runtime)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self.retention.run()),
                      loop.create_task(self.evaluator.run())]
        self.evaluator.outbox.start()  # also sends what was queued before a restart

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.evaluator.close()
