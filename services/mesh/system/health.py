"""The platform's health: every service's gRPC health as this one reaches it, the instances
that report to it (each process's GetRuntimeConfig long poll says what it runs), and from both
the status of each service of the catalog."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmesh.common.v1 import common_pb2
from agentmesh.system.v1 import system_pb2 as pb
from mesh import catalog
from mesh.runtime.errors import Unavailable
from mesh.runtime.logs import version
from mesh.runtime.peers import Peers
from mesh.system import restart
from mesh.system.store import now_stamp

# A process whose GetRuntimeConfig call is held counts as running; one with no call held is
# counted for this long after its last call ended (its next call comes at once, or after a back-off
# of a few seconds when the system service was unreachable).
_REPORT_TTL = 30.0


class Health:
    """The services' health checks; the last answers are kept for the alert rules."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers
        self.last: dict[str, common_pb2.ServiceHealth] = {}

    def _channels(self) -> dict[str, grpc.aio.Channel]:
        return {name: self.peers.channel(name) for name in self.peers.addresses
                if name != "system"}

    @staticmethod
    async def _check(name: str, channel: grpc.aio.Channel) -> common_pb2.ServiceHealth:
        started = time.perf_counter()
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2)
            ok = reply.status == health_pb2.HealthCheckResponse.SERVING
            message = "" if ok else health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.aio.AioRpcError as exc:
            ok, message = False, exc.code().name
        return common_pb2.ServiceHealth(
            name=name, status="healthy" if ok else "unhealthy", message=message,
            latency_ms=round((time.perf_counter() - started) * 1000, 2))

    async def checks(self) -> list[common_pb2.ServiceHealth]:
        checks = await asyncio.gather(*(self._check(n, c)
                                        for n, c in sorted(self._channels().items())))
        self.last = {c.name: c for c in checks}
        return [common_pb2.ServiceHealth(name="system", status="healthy"), *checks]

    async def report(self) -> common_pb2.HealthResponse:
        """Every service's health; UNAVAILABLE (NOT_READY) when one is not serving."""
        checks = await self.checks()
        unhealthy = [c.name for c in checks if c.status != "healthy"]
        report = common_pb2.HealthResponse(status="unhealthy" if unhealthy else "healthy",
                                           service="agentmesh", version=version(),
                                           timestamp=now_stamp(), services=checks)
        if unhealthy:
            raise Unavailable(f"not ready: {', '.join(unhealthy)}", reason="NOT_READY",
                              details={"status": "unhealthy", "unhealthy": ",".join(unhealthy)})
        return report


class Instances:
    """The service processes running now, from what each reports with its long poll of the
    runtime configuration: alive while its call is held, and for `_REPORT_TTL` after."""

    def __init__(self) -> None:
        # name -> {(host, pid): (received monotonic, ServiceReport)}
        self.reports: dict[str, dict[tuple[str, int], tuple[float, pb.ServiceReport]]] = {}
        # (name, host, pid) -> calls of that instance held now
        self.held: dict[tuple[str, str, int], int] = {}

    def record(self, reports) -> None:
        now = time.monotonic()
        for report in reports:
            self.reports.setdefault(report.name, {})[(report.host, report.pid)] = (now, report)

    @contextlib.contextmanager
    def holding(self, reports) -> Iterator[None]:
        """While a call that carries these reports is held (a heartbeat that lasts); recorded
        when it starts and when it ends."""
        self.record(reports)
        keys = [(r.name, r.host, r.pid) for r in reports]
        for key in keys:
            self.held[key] = self.held.get(key, 0) + 1
        try:
            yield
        finally:
            for key in keys:
                left = self.held.get(key, 0) - 1
                if left > 0:
                    self.held[key] = left
                else:
                    self.held.pop(key, None)
            self.record(reports)

    def of(self, name: str) -> list[pb.ServiceReport]:
        now = time.monotonic()
        found = self.reports.get(name, {})
        return [report for (host, pid), (seen, report) in found.items()
                if now - seen < _REPORT_TTL or (name, host, pid) in self.held]


async def statuses(health: Health, instances: Instances, peers: Peers,
                   control: Path | None) -> list[pb.ServiceStatus]:
    """Each service of the catalog: healthy, unhealthy or restarting, with its instances."""
    checks = {c.name: c for c in await health.checks()}
    found = []
    for name in catalog.names():
        check = checks.get(name)
        running = instances.of(name)
        restarting = control is not None and restart.in_progress(control, name)
        status = ("restarting" if restarting else
                  check.status if check is not None else "unhealthy")
        latest = max(running, key=lambda r: r.started_at.seconds, default=None)
        item = pb.ServiceStatus(
            name=name, status=status,
            version=latest.version if latest else "",
            ready_instances=len(running) if status == "healthy" else 0,
            message=check.message if check is not None else "no address configured",
            address=peers.addresses.get(name, ""),
            database=latest.database if latest else "",
            migration_revisions=list(latest.migration_revisions) if latest else [],
            config_revision=latest.config_revision if latest else "")
        if running:
            item.started_at.CopyFrom(min((r.started_at for r in running),
                                         key=lambda s: (s.seconds, s.nanos)))
        if name == "system" and not check:
            item.status, item.message = "healthy", ""
        found.append(item)
    return found
