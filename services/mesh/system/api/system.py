"""SystemService: health, status and information of the whole platform, statistics, metrics
and their history, logs, alerts, the runtime configuration and feature flags, restarts, cache
clears and backups; and the OpenAPI document and Swagger UI. See docs/system.md.

Thin: each RPC reads the request and calls the module that knows (health, info, stats,
metrics, configuration, flags, alerts, operations, docs)."""

from __future__ import annotations

import time

from google.api import httpbody_pb2

from agentmesh.common.v1 import common_pb2
from agentmesh.system.v1 import system_pb2 as pb
from agentmesh.system.v1 import system_pb2_grpc as pb_grpc
from mesh.runtime import live
from mesh.runtime.context import require_caller
from mesh.runtime.errors import Unavailable
from mesh.runtime.logs import version
from mesh.runtime.paging import PageRequest
from mesh.runtime.service import Runtime
from mesh.system import console, docs, flags, health, info, metrics, operations, stats
from mesh.system.models import PLATFORM, FeatureFlagRow
from mesh.system.state import SystemState
from mesh.system.store import alert_message, alerts_repo, flag_message, flags_repo, now_stamp, stamp


class SystemService(pb_grpc.SystemServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.settings = runtime.settings
        self.db = runtime.database
        self.peers = runtime.peers
        self.state: SystemState = runtime.state

    # ---- health, status and info -----------------------------------------------------------
    async def CheckHealth(self, request, context) -> common_pb2.HealthResponse:
        """For probes and anonymous callers: seed 002's `{status, service, timestamp,
        version}`, never the list of services (that is GetHealth, behind system:read)."""
        try:
            report = await self.state.health.report()
        except Unavailable as exc:
            raise Unavailable("not ready", reason="NOT_READY",
                              details={"status": "unhealthy"}) from exc
        return common_pb2.HealthResponse(status=report.status, service=report.service,
                                         version=report.version, timestamp=report.timestamp)

    async def GetHealth(self, request, context) -> common_pb2.HealthResponse:
        return await self.state.health.report()

    async def _statuses(self) -> list[pb.ServiceStatus]:
        return await health.statuses(self.state.health, self.state.instances, self.peers,
                                     self.state.control)

    def _uptime(self) -> float:
        return round(time.time() - self.state.started, 3)

    async def GetSystemStatus(self, request, context) -> pb.SystemStatus:
        services = await self._statuses()
        bad = [s for s in services if s.status != "healthy"]
        overall = ("healthy" if not bad else
                   "unhealthy" if len(bad) == len(services) else "degraded")
        return pb.SystemStatus(status=overall, version=version(),
                               environment=self.settings.environment,
                               started_at=stamp(self.state.started),
                               uptime_seconds=self._uptime(), services=services,
                               timestamp=now_stamp())

    async def GetSystemInfo(self, request, context) -> pb.SystemInfo:
        commit, built, envoy = await self.state.build.read()
        caller = require_caller(context)
        features = await self.state.config.flags()
        answer = pb.SystemInfo(
            name="Agent Mesh", version=version(), api_version="v1",
            environment=self.settings.environment,
            enabled_features=sorted(f.name for f in features
                                    if live.flag_on(f, caller.tenant_id)),
            uptime_seconds=self._uptime())
        if caller.has_scope(info.PLATFORM_READ):  # the platform's inside is the operator's
            info.add_inside(answer, self.settings, commit, built, envoy, await self._statuses())
        return answer

    # ---- statistics, metrics, logs and alerts ----------------------------------------------
    async def GetSystemStats(self, request, context) -> pb.SystemStats:
        caller = require_caller(context)
        return await stats.stats(self.peers, caller.tenant_id)

    async def GetSystemMetrics(self, request, context) -> pb.SystemMetrics:
        sampler = self.state.sampler
        sample = sampler.history[-1] if sampler.history else await sampler.sample()
        return metrics.metrics_message(sample)

    async def GetSystemMetricsHistory(self, request, context) -> pb.SystemMetricsHistory:
        return metrics.history(request, list(self.state.sampler.history),
                               self.settings.system_sample_seconds)

    async def ListSystemLogs(self, request, context) -> pb.ListSystemLogsResponse:
        require_caller(context)
        PageRequest.of(request)
        return await stats.logs(self.peers, request)

    async def ListSystemAlerts(self, request, context) -> pb.ListSystemAlertsResponse:
        require_caller(context)
        page = PageRequest.of(request)
        result = await self.db.read(lambda s: alerts_repo.list(
            s, PLATFORM, page, filters={
                "state": pb.AlertState.Name(request.state) if request.state else None,
                "severity": pb.AlertSeverity.Name(request.severity) if request.severity else None,
                "service": request.service}))
        return pb.ListSystemAlertsResponse(**result.fields(alert_message))

    # ---- runtime configuration and feature flags -------------------------------------------
    async def GetSystemConfig(self, request, context) -> pb.SystemConfig:
        require_caller(context)
        return self.state.config.message(*await self.state.config.current())

    async def UpdateSystemConfig(self, request, context) -> pb.SystemConfig:
        return await self.state.config.update(require_caller(context), request)

    async def ListFeatureFlags(self, request, context) -> pb.ListFeatureFlagsResponse:
        require_caller(context)
        page = PageRequest.of(request)
        where = (FeatureFlagRow.enabled == request.enabled,) if request.HasField("enabled") else ()
        result = await self.db.read(lambda s: flags_repo.list(
            s, PLATFORM, page, search=request.search, where=where))
        return pb.ListFeatureFlagsResponse(**result.fields(flag_message))

    async def UpdateFeatureFlag(self, request, context) -> pb.FeatureFlag:
        caller = require_caller(context)
        update = flags.requested_update(request)
        row = await self.db.write(lambda s: flags.apply(s, caller, request.flag_name, update,
                                                        request.allow_missing))
        return flag_message(row)

    async def GetRuntimeConfig(self, request, context) -> pb.RuntimeConfig:
        """What every running process long-polls (and how it says what it runs: while its call
        is held, it counts as running)."""
        with self.state.instances.holding(request.services):
            return await self.state.config.poll(request.known_revision, request.wait_seconds)

    # ---- restarts, caches, backups ---------------------------------------------------------
    async def RestartService(self, request, context) -> pb.RestartServiceResponse:
        return await operations.restart_service(self.db, self.settings, self.state.control,
                                                require_caller(context), request)

    async def ClearCache(self, request, context) -> pb.ClearCacheResponse:
        caller = require_caller(context)
        return await operations.clear_caches(self.db, self.settings, caller, request)

    async def CreateBackup(self, request, context) -> pb.Backup:
        return await self.state.backups.create(require_caller(context), request)

    # ---- the docs --------------------------------------------------------------------------
    async def GetOpenApiDocument(self, request, context) -> httpbody_pb2.HttpBody:
        return httpbody_pb2.HttpBody(content_type="application/json", data=self.state.openapi)

    async def GetDocsPage(self, request, context) -> httpbody_pb2.HttpBody:
        return docs.page()

    async def GetDocsAsset(self, request, context) -> httpbody_pb2.HttpBody:
        return await docs.asset(request.path)

    async def GetConsolePage(self, request, context) -> httpbody_pb2.HttpBody:
        return await console.page()

    async def GetConsoleAsset(self, request, context) -> httpbody_pb2.HttpBody:
        return await console.asset(request.path)
