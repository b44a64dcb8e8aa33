"""Runtime settings that change without a restart: every service process long-polls the system
service (`GetRuntimeConfig`, internal): it calls with the revision it applied and
`wait_seconds` (HOLD_SECONDS), the system service answers when the revision changes or the wait
ends (mesh/runtime/watch.py), and the process applies what changed: log levels (at once, for
every logger of the process), retention, feature flags, and cache clears. A change reaches it
at once when the system process that committed it holds its call, and within
`AGENTMESH_LIVE_POLL_SECONDS` (how often the system service looks for other processes' changes)
when another replica does; an idle process makes one call every HOLD_SECONDS. The same call
reports what the process runs (service, version, start time, database, migration revisions,
the revision it applied), so the system service knows every running instance without reaching
into another service's data; while the call is held, the process counts as running.

    from mesh.runtime import live
    days = live.value("retention", "days", settings.retention_days)
    if live.flag_enabled("workflow_streaming", caller.tenant_id): ...

A process that cannot reach the system service keeps what it applied last (or the settings it
started with) and tries again every `AGENTMESH_LIVE_POLL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from mesh.runtime import caches, logs

log = logging.getLogger("mesh.live")
HOLD_SECONDS = 30  # how long the system service may hold a call while the revision is the same
DEADLINE_MARGIN_SECONDS = 10.0  # the call's deadline is the hold plus this


def flag_on(flag: Any, tenant_id: str) -> bool:
    """A flag (message or dict with enabled, rollout_percentage, tenant_ids) for one tenant:
    listed tenants always; otherwise on while enabled for a stable share of tenants."""
    get = flag.get if isinstance(flag, dict) else (lambda k, d=None: getattr(flag, k))
    if tenant_id and tenant_id in list(get("tenant_ids", []) or []):
        return True
    if not get("enabled", False):
        return False
    percentage = get("rollout_percentage", 100)
    percentage = 100 if percentage is None else int(percentage)
    if percentage >= 100:
        return True
    bucket = int.from_bytes(hashlib.sha256(tenant_id.encode()).digest()[:4], "big") % 100
    return bucket < percentage


class Live:
    def __init__(self, settings, peers, reports) -> None:
        self.settings = settings
        self.peers = peers
        self.reports = reports  # callable -> list of ServiceReport messages
        self.revision = ""
        self.config: dict[str, Any] = {}
        self.flags: dict[str, Any] = {}
        self.cache_generation: int | None = None
        self._task: asyncio.Task | None = None

    async def poll(self, wait_seconds: float = 0) -> bool:
        """One call, held by the system service up to `wait_seconds` while the revision is
        the one applied; whether something new was applied."""
        from agentmesh.system.v1 import system_pb2 as pb
        from agentmesh.system.v1 import system_pb2_grpc as pb_grpc

        wait = int(wait_seconds)
        request = pb.GetRuntimeConfigRequest(known_revision=self.revision,
                                             services=self.reports(self.revision),
                                             wait_seconds=wait)
        reply = await self.peers.stub(pb_grpc.SystemServiceStub).GetRuntimeConfig(
            request, timeout=wait + DEADLINE_MARGIN_SECONDS)
        if reply.unchanged:
            return False
        self.apply(json_format.MessageToDict(reply.config),
                   {f.name: f for f in reply.feature_flags},
                   reply.cache_generation, list(reply.clear_caches))
        self.revision = reply.revision
        return True

    def apply(self, config: dict[str, Any], flags: dict[str, Any], generation: int,
              clear_caches: list[str]) -> None:
        logging_section = config.get("logging") or {}
        logs.apply_levels(logging_section.get("level") or self.settings.log_level,
                          logging_section.get("services") or {})
        self.config, self.flags = config, flags
        if self.cache_generation is not None and generation != self.cache_generation:
            removed = caches.clear(clear_caches)
            log.info("caches cleared: %s", ", ".join(f"{k}={v}" for k, v in removed.items()))
        self.cache_generation = generation

    async def _run(self) -> None:
        pause = self.settings.live_poll_seconds
        while True:
            began = time.monotonic()
            try:
                new = await self.poll(HOLD_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the system service may be restarting
                log.debug("runtime config poll failed: %s", exc)
                await asyncio.sleep(pause)
                continue
            # Nothing new, answered at once (a system service draining, or one that does not
            # hold calls): ask again after the poll interval, not in a tight loop.
            quick = time.monotonic() - began
            if not new and quick < pause:
                await asyncio.sleep(pause - quick)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="runtime-config")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def forget(self, _pattern: str = "") -> int:
        """The "config" cache: fetched again with the next call."""
        self.revision = ""
        return 1


LIVE: Live | None = None


def value(section: str, key: str, default: Any) -> Any:
    """A setting of the runtime configuration, or `default` when it is not set there."""
    if LIVE is None:
        return default
    found = (LIVE.config.get(section) or {}).get(key)
    return default if found is None else found


def flag_enabled(name: str, tenant_id: str, default: bool = False) -> bool:
    if LIVE is None or name not in LIVE.flags:
        return default
    return flag_on(LIVE.flags[name], tenant_id)


def start(settings, peers, running) -> Live | None:
    """The process's poller, when the system service has an address."""
    global LIVE
    if "system" not in peers.addresses:
        return None
    from agentmesh.system.v1 import system_pb2 as pb

    host, pid = socket.gethostname(), os.getpid()

    def reports(revision: str) -> list:
        out = []
        for service in running:
            report = pb.ServiceReport(name=service.definition.name, version=logs.version(),
                                      database=service.database_kind,
                                      migration_revisions=service.revisions,
                                      config_revision=revision, pid=pid, host=host[:255])
            report.started_at.FromDatetime(datetime.fromtimestamp(service.started_at, UTC))
            out.append(report)
        return out

    LIVE = Live(settings, peers, reports)
    caches.register("config", LIVE.forget)
    LIVE.start()
    return LIVE
