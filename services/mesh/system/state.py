"""What the system service keeps between calls, built once per process: the health of the
services and the instances that report, the sampler and its history, the runtime
configuration's revision, the platform alerts, the backups in progress; and the loop that
samples and evaluates the alert rules while the service runs."""

from __future__ import annotations

import asyncio
import logging
import time

from mesh import resources
from mesh.runtime.service import Runtime
from mesh.system import restart
from mesh.system.alerts import SystemAlerts
from mesh.system.configuration import RuntimeConfiguration
from mesh.system.health import Health, Instances
from mesh.system.info import Build
from mesh.system.operations import Backups
from mesh.system.sampler import Sampler

log = logging.getLogger("mesh.system")


class SystemState:
    def __init__(self, runtime: Runtime) -> None:
        self.settings = runtime.settings
        self.started = time.time()
        self.openapi = resources.openapi_document()
        self.control = restart.control_dir(self.settings)
        self.health = Health(runtime.peers)
        self.instances = Instances()
        self.sampler = Sampler(self.settings)
        self.config = RuntimeConfiguration(runtime)
        self.alerts = SystemAlerts(runtime.database)
        self.backups = Backups(runtime.database, self.settings, self.alerts)
        self.build = Build()
        self._watch: asyncio.Task | None = None

    async def start(self) -> None:
        self._watch = asyncio.get_running_loop().create_task(self._sample_forever())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self.backups.close()

    async def _sample_forever(self) -> None:
        await asyncio.sleep(1)
        while True:
            try:
                sample = await self.sampler.sample()
                thresholds = (await self.config.current())[1]["alerts"]
                await self.health.checks()
                await self.alerts.evaluate(sample, thresholds, self.health.last, self.control)
            except Exception:  # noqa: BLE001 - retried at the next round
                log.exception("system sampling round failed")
            await asyncio.sleep(self.settings.system_sample_seconds)
