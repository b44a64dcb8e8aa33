"""SystemService: health, status and information of the whole platform, statistics, metrics
and their history, logs, alerts, the runtime configuration and feature flags, restarts, cache
clears and backups; and the OpenAPI document and Swagger UI. See docs/system.md."""

from __future__ import annotations

import asyncio
import logging
import math
import mimetypes
import platform
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
import swagger_ui_bundle
from google.api import httpbody_pb2
from google.protobuf import json_format, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlmodel import Session, func, select

from agentmesh.common.v1 import common_pb2
from agentmesh.system.v1 import system_pb2 as pb
from agentmesh.system.v1 import system_pb2_grpc as pb_grpc
from mesh import catalog, resources
from mesh.runtime import audit, caches, live
from mesh.runtime.context import Caller, require_caller
from mesh.runtime.convert import to_message
from mesh.runtime.errors import (FailedPrecondition, InvalidArgument, NotFound, Unavailable,
                                 invalid_field)
from mesh.runtime.logs import version as _version
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.repository import TenantRepository
from mesh.runtime.service import Runtime, ServiceDefinition
from mesh.runtime.tables import aware, utcnow
from mesh.system import backup, config, restart
from mesh.system.models import (PLATFORM, AlertRow, CacheClearRow, ConfigVersionRow,
                                FeatureFlagRow)
from mesh.system.sampler import Sample, Sampler

log = logging.getLogger("mesh.system")

_SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)
_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Agent Mesh API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-ui-standalone-preset.js"></script>
<script src="/docs/init.js"></script>
</body></html>
"""
# Served as a file, not inline, so a strict Content-Security-Policy can forbid inline scripts.
_DOCS_INIT = """window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"});
"""
_METRICS = {  # name -> (unit, how to read it from a sample, from a service point)
    "cpu_percent": "percent", "memory_percent": "percent", "memory_used_mb": "MB",
    "disk_percent": "percent", "request_rate": "requests/s", "error_rate": "ratio",
    "p95_latency_ms": "ms", "memory_mb": "MB",
}
_HOST_ONLY = {"memory_percent", "memory_used_mb", "disk_percent"}
_SERVICE_METRICS = {"cpu_percent", "memory_mb", "request_rate", "error_rate", "p95_latency_ms"}
# The scope of the platform's internals (mesh/identity/roles.py): only operator tenants' admins.
PLATFORM_READ = "platform:read"
_REPORT_TTL = 30.0  # a process that has not polled for this long is not counted as running

alerts_repo = TenantRepository(AlertRow, noun="alert", message=pb.SystemAlert, name_column=None,
                               order_columns=("severity",))
flags_repo = TenantRepository(FeatureFlagRow, noun="feature_flag", message=pb.FeatureFlag,
                              search_columns=("name", "description"), order_columns=("name",),
                              default_order="name", quota="resource")


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _stamp(moment: datetime | float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment if isinstance(moment, datetime)
                       else datetime.fromtimestamp(moment, UTC))
    return stamp


def _build() -> tuple[str, datetime | None]:
    """The source commit and build time: from AGENTMESH_BUILD_COMMIT / _TIME (an image sets
    them), else from git when run from a checkout."""
    import os

    commit, built = os.environ.get("AGENTMESH_BUILD_COMMIT", ""), None
    if os.environ.get("AGENTMESH_BUILD_TIME"):
        try:
            built = datetime.fromisoformat(os.environ["AGENTMESH_BUILD_TIME"])
        except ValueError:
            built = None
    if not commit:
        try:
            here = Path(__file__).resolve().parent
            commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"],
                                    capture_output=True, text=True, timeout=2).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = ""
    return commit, built


def _envoy_version() -> str:
    try:
        from mesh.supervisor import envoy_binary

        out = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True,
                             timeout=5).stdout
        for token in out.split():
            if "/" in token and token[0].isdigit():
                return token.split("/")[0]
        return out.strip().split("version:")[-1].strip()[:64]
    except (OSError, SystemExit, subprocess.SubprocessError):
        return ""


def _flag_message(row: FeatureFlagRow) -> pb.FeatureFlag:
    return to_message(row, pb.FeatureFlag)


class SystemService(pb_grpc.SystemServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.db = runtime.database
        self.peers = runtime.peers
        self.openapi = resources.openapi_document()
        self.started = time.time()
        self.sampler = Sampler(self.settings)
        # name -> {(host, pid): (received monotonic, ServiceReport)}
        self.reports: dict[str, dict[tuple[str, int], tuple[float, pb.ServiceReport]]] = {}
        self.health: dict[str, pb.ServiceHealth] = {}
        self.backup_running: str = ""
        self._build: tuple[str, datetime | None] | None = None
        self._envoy: str | None = None
        self._tasks: set[asyncio.Task] = set()
        self._revision_cache: tuple[float, str, Any] | None = None
        SERVICES.append(self)

    # ---- health ---------------------------------------------------------------------------
    def _channels(self) -> dict[str, grpc.aio.Channel]:
        return {name: self.peers.channel(name) for name in self.peers.addresses
                if name != "system"}

    async def _check(self, name: str, channel: grpc.aio.Channel) -> common_pb2.ServiceHealth:
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

    async def _checks(self) -> list[common_pb2.ServiceHealth]:
        checks = await asyncio.gather(*(self._check(n, c)
                                        for n, c in sorted(self._channels().items())))
        self.health = {c.name: c for c in checks}
        return [common_pb2.ServiceHealth(name="system", status="healthy"), *checks]

    async def _report(self) -> common_pb2.HealthResponse:
        checks = await self._checks()
        unhealthy = [c.name for c in checks if c.status != "healthy"]
        report = common_pb2.HealthResponse(status="unhealthy" if unhealthy else "healthy",
                                           service="agentmesh", version=_version(),
                                           timestamp=_now(), services=checks)
        if unhealthy:
            raise Unavailable(f"not ready: {', '.join(unhealthy)}", reason="NOT_READY",
                              details={"status": "unhealthy", "unhealthy": ",".join(unhealthy)})
        return report

    async def CheckHealth(self, request, context) -> common_pb2.HealthResponse:
        """For probes and anonymous callers: seed 002's `{status, service, timestamp,
        version}`, never the list of services (that is GetHealth, behind system:read)."""
        try:
            report = await self._report()
        except Unavailable as exc:
            raise Unavailable("not ready", reason="NOT_READY",
                              details={"status": "unhealthy"}) from exc
        return common_pb2.HealthResponse(status=report.status, service=report.service,
                                         version=report.version, timestamp=report.timestamp)

    async def GetHealth(self, request, context) -> common_pb2.HealthResponse:
        return await self._report()

    # ---- status and info -------------------------------------------------------------------
    def _instances(self, name: str) -> list[pb.ServiceReport]:
        now = time.monotonic()
        found = self.reports.get(name, {})
        return [report for seen, report in found.values() if now - seen < _REPORT_TTL]

    async def _statuses(self) -> list[pb.ServiceStatus]:
        checks = {c.name: c for c in await self._checks()}
        control = self._control()
        statuses = []
        for name in catalog.names():
            check = checks.get(name)
            instances = self._instances(name)
            restarting = control is not None and restart.in_progress(control, name)
            status = ("restarting" if restarting else
                      check.status if check is not None else "unhealthy")
            latest = max(instances, key=lambda r: r.started_at.seconds, default=None)
            item = pb.ServiceStatus(
                name=name, status=status,
                version=latest.version if latest else "",
                ready_instances=len(instances) if status == "healthy" else 0,
                message=check.message if check is not None else "no address configured",
                address=self.peers.addresses.get(name, ""),
                database=latest.database if latest else "",
                migration_revisions=list(latest.migration_revisions) if latest else [],
                config_revision=latest.config_revision if latest else "")
            if instances:
                item.started_at.CopyFrom(min((r.started_at for r in instances),
                                             key=lambda s: (s.seconds, s.nanos)))
            if name == "system" and not check:
                item.status, item.message = "healthy", ""
            statuses.append(item)
        return statuses

    async def GetSystemStatus(self, request, context) -> pb.SystemStatus:
        services = await self._statuses()
        bad = [s for s in services if s.status != "healthy"]
        overall = ("healthy" if not bad else
                   "unhealthy" if len(bad) == len(services) else "degraded")
        return pb.SystemStatus(status=overall, version=_version(),
                               environment=self.settings.environment,
                               started_at=_stamp(self.started),
                               uptime_seconds=round(time.time() - self.started, 3),
                               services=services, timestamp=_now())

    async def GetSystemInfo(self, request, context) -> pb.SystemInfo:
        if self._build is None:
            self._build = await asyncio.to_thread(_build)
        if self._envoy is None:
            self._envoy = await asyncio.to_thread(_envoy_version)
        commit, built = self._build
        caller = require_caller(context)
        flags = await self._all_flags()
        info = pb.SystemInfo(
            name="Agent Mesh", version=_version(), api_version="v1",
            environment=self.settings.environment,
            enabled_features=sorted(f.name for f in flags if live.flag_on(f, caller.tenant_id)),
            uptime_seconds=round(time.time() - self.started, 3))
        if not caller.has_scope(PLATFORM_READ):
            return info  # the platform's inside (build, runtimes, addresses) is the operator's
        info.build_commit, info.python_version = commit, platform.python_version()
        info.gateway_version = self._envoy
        info.database = "postgresql" if self.settings.database_url else "sqlite"
        info.services.extend(await self._statuses())
        if built is not None:
            info.built_at.CopyFrom(_stamp(built))
        return info

    # ---- statistics ------------------------------------------------------------------------
    async def GetSystemStats(self, request, context) -> pb.SystemStats:
        from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
        from agentmesh.identity.v1 import identity_pb2, identity_pb2_grpc
        from agentmesh.templates.v1 import templates_pb2, templates_pb2_grpc
        from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc
        from agentmesh.workflows.v1 import workflows_pb2, workflows_pb2_grpc

        caller = require_caller(context)
        day_ago = _stamp(datetime.now(UTC) - timedelta(days=1))
        agents = self.peers.stub(agents_pb2_grpc.AgentServiceStub)
        calls = self.peers.stub(agents_pb2_grpc.CallServiceStub)
        workflows = self.peers.stub(workflows_pb2_grpc.WorkflowServiceStub)
        one = {"page_size": 1}
        asks = {
            "agents": agents.ListAgents(agents_pb2.ListAgentsRequest(**one)),
            "deployed_agents": agents.ListAgents(agents_pb2.ListAgentsRequest(
                status=agents_pb2.AGENT_STATUS_DEPLOYED, **one)),
            "calls_24h": calls.ListCalls(agents_pb2.ListCallsRequest(started_after=day_ago, **one)),
            "active_calls": calls.ListActiveCalls(agents_pb2.ListActiveCallsRequest(**one)),
            "workflows": workflows.ListWorkflows(workflows_pb2.ListWorkflowsRequest(**one)),
            "executions": workflows.CountExecutions(
                workflows_pb2.CountExecutionsRequest(since=day_ago)),
            "tools": self.peers.stub(tools_pb2_grpc.ToolServiceStub).ListTools(
                tools_pb2.ListToolsRequest(**one)),
            "templates": self.peers.stub(templates_pb2_grpc.TemplateServiceStub).ListTemplates(
                templates_pb2.ListTemplatesRequest(**one)),
            "users": self.peers.stub(identity_pb2_grpc.IdentityServiceStub).ListUsers(
                identity_pb2.ListUsersRequest(**one)),
        }
        answers = dict(zip(asks, await asyncio.gather(*asks.values(), return_exceptions=True)))
        failed = sorted(k for k, v in answers.items() if isinstance(v, BaseException))
        if failed:
            log.warning("stats: no answer for %s", ", ".join(failed))
            raise Unavailable(f"statistics unavailable: no answer for {', '.join(failed)}",
                              reason="STATS_UNAVAILABLE", details={"missing": ",".join(failed)})
        executions = answers.pop("executions")
        return pb.SystemStats(tenant_id=caller.tenant_id,
                              **{k: v.total for k, v in answers.items()},
                              workflow_executions_24h=executions.since,
                              running_executions=executions.running, timestamp=_now())

    # ---- metrics ---------------------------------------------------------------------------
    def _latest(self) -> Sample | None:
        return self.sampler.history[-1] if self.sampler.history else None

    async def GetSystemMetrics(self, request, context) -> pb.SystemMetrics:
        sample = self._latest()
        if sample is None:
            sample = await self.sampler.sample()
        return pb.SystemMetrics(
            timestamp=_stamp(sample.at), cpu_percent=sample.cpu_percent,
            memory_percent=sample.memory_percent, memory_used_mb=sample.memory_used_mb,
            disk_percent=sample.disk_percent, request_rate=sample.request_rate,
            error_rate=sample.error_rate, p95_latency_ms=sample.p95_latency_ms,
            active_connections=sample.active_connections,
            services=[pb.ServiceMetrics(name=name, **vars(point))
                      for name, point in sorted(sample.services.items())])

    async def GetSystemMetricsHistory(self, request, context) -> pb.SystemMetricsHistory:
        unknown = [n for n in request.names if n not in _METRICS]
        if unknown:
            raise invalid_field("names", f"unknown metrics {', '.join(unknown)}; known: "
                                + ", ".join(sorted(_METRICS)))
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
            interval = max(self.settings.system_sample_seconds, span / 100) if span else \
                self.settings.system_sample_seconds
        if span / interval > 1000:
            raise invalid_field("interval", "yields more than 1000 buckets; widen it")
        if request.service and request.service not in catalog.names():
            raise invalid_field("service", f"unknown service {request.service!r}")
        names = list(request.names) or sorted(_METRICS)
        low, high = start.timestamp(), end.timestamp()
        samples = [s for s in self.sampler.history if low <= s.at <= high]
        series: dict[tuple[str, str], dict[float, list[float]]] = {}
        for s in samples:
            bucket = low + math.floor((s.at - low) / interval) * interval
            for name in names:
                if not request.service and name in _METRICS and name != "memory_mb":
                    series.setdefault((name, ""), {}).setdefault(bucket, []).append(
                        getattr(s, name))
                if name in _SERVICE_METRICS:
                    for service, point in s.services.items():
                        if request.service and service != request.service:
                            continue
                        series.setdefault((name, service), {}).setdefault(bucket, []).append(
                            getattr(point, name))
        out = pb.SystemMetricsHistory(start_time=_stamp(start), end_time=_stamp(end))
        out.interval.FromTimedelta(timedelta(seconds=interval))
        for (name, service), buckets in sorted(series.items()):
            item = out.series.add(name=name, unit=_METRICS[name])
            if service:
                item.labels["service"] = service
            for bucket, values in sorted(buckets.items()):
                item.points.add(timestamp=_stamp(bucket),
                                value=round(sum(values) / len(values), 4))
        return out

    # ---- logs and alerts -------------------------------------------------------------------
    async def ListSystemLogs(self, request, context) -> pb.ListSystemLogsResponse:
        from agentmesh.observability.v1 import observability_pb2 as obs
        from agentmesh.observability.v1 import observability_pb2_grpc as obs_grpc

        require_caller(context)
        PageRequest.of(request)
        if request.HasField("start_time") and request.HasField("end_time") and \
                request.end_time.ToDatetime() < request.start_time.ToDatetime():
            raise invalid_field("end_time", "must not precede start_time")
        asked = obs.ListLogsRequest(
            page=request.page, page_size=request.page_size, level=request.level,
            service=request.service, correlation_id=request.correlation_id,
            search=request.search, order_by=request.order_by)
        if request.HasField("start_time"):
            asked.start_time.CopyFrom(request.start_time)
        if request.HasField("end_time"):
            asked.end_time.CopyFrom(request.end_time)
        answer = await self.peers.stub(obs_grpc.ObservabilityServiceStub).ListLogs(asked)
        items = [pb.SystemLogEntry(timestamp=e.timestamp, level=e.level, service=e.service,
                                   message=e.message, correlation_id=e.correlation_id,
                                   attributes=e.attributes) for e in answer.items]
        return pb.ListSystemLogsResponse(items=items, total=answer.total, page=answer.page,
                                         page_size=answer.page_size, pages=answer.pages)

    async def ListSystemAlerts(self, request, context) -> pb.ListSystemAlertsResponse:
        require_caller(context)
        page = PageRequest.of(request)
        result = await self.db.read(lambda s: alerts_repo.list(
            s, PLATFORM, page, filters={
                "state": pb.AlertState.Name(request.state) if request.state else None,
                "severity": pb.AlertSeverity.Name(request.severity) if request.severity else None,
                "service": request.service}))
        return pb.ListSystemAlertsResponse(**result.fields(lambda r: to_message(r, pb.SystemAlert)))

    async def _raise_alert(self, key: str, title: str, message: str, severity: str,
                           service: str = "", resolved: bool = False) -> None:
        """Fires (or refreshes) the alert of condition `key`; `resolved` records an event
        that needs no action (a finished backup)."""
        def apply(session: Session) -> None:
            row = session.exec(select(AlertRow).where(
                AlertRow.tenant_id == PLATFORM, AlertRow.key == key,
                AlertRow.state == "ALERT_STATE_FIRING")).first()
            if row is None:
                row = AlertRow(tenant_id=PLATFORM, key=key, service=service)
                fresh = True
            else:
                fresh = False
            row.title, row.message, row.severity = title, message, severity
            if resolved:
                row.state, row.resolved_at = "ALERT_STATE_RESOLVED", utcnow()
            if fresh:
                alerts_repo.add(session, row)
            else:
                alerts_repo.save(session, row)
        await self.db.write(apply)

    async def _resolve_alert(self, key: str) -> None:
        def apply(session: Session) -> None:
            for row in session.exec(select(AlertRow).where(
                    AlertRow.tenant_id == PLATFORM, AlertRow.key == key,
                    AlertRow.state == "ALERT_STATE_FIRING")).all():
                row.state, row.resolved_at = "ALERT_STATE_RESOLVED", utcnow()
                alerts_repo.save(session, row)
        await self.db.write(apply)

    async def _firing(self) -> set[str]:
        rows = await self.db.fetch((
            f"SELECT key FROM system_alerts WHERE tenant_id = {self.db.placeholder} "
            f"AND state = {self.db.placeholder}", (PLATFORM, "ALERT_STATE_FIRING")))
        return {r[0] for r in rows[0]}

    async def evaluate(self, sample: Sample) -> None:
        """The alert rules, after each sample: a service not serving, memory or disk over the
        configured thresholds."""
        thresholds = (await self._config())[1]["alerts"]
        firing = await self._firing()
        await self._checks()
        control = self._control()
        for name, check in self.health.items():
            key = f"unhealthy:{name}"
            if check.status != "healthy" and not (control and restart.in_progress(control, name)):
                await self._raise_alert(key, f"{name}: unhealthy",
                                        f"service {name} does not answer health checks as "
                                        f"SERVING ({check.message})", "ALERT_SEVERITY_CRITICAL",
                                        name)
            elif key in firing:
                await self._resolve_alert(key)
        for key, value, limit, what in (
                ("memory", sample.memory_percent, thresholds["memory_percent"], "memory"),
                ("disk", sample.disk_percent, thresholds["disk_percent"], "disk")):
            if value > limit:
                await self._raise_alert(key, f"{what} use high",
                                        f"{what} use is {value:.1f}%, over {limit:g}%",
                                        "ALERT_SEVERITY_WARNING")
            elif key in firing:
                await self._resolve_alert(key)

    async def _sample_forever(self) -> None:
        await asyncio.sleep(1)
        while True:
            try:
                sample = await self.sampler.sample()
                await self.evaluate(sample)
            except Exception:  # noqa: BLE001 - retried at the next round
                log.exception("system sampling round failed")
            await asyncio.sleep(self.settings.system_sample_seconds)

    # ---- runtime configuration -------------------------------------------------------------
    async def _config(self) -> tuple[ConfigVersionRow | None, dict[str, Any]]:
        def read(session: Session):
            return session.exec(select(ConfigVersionRow)
                                .order_by(ConfigVersionRow.version.desc())).first()
        row = await self.db.read(read)
        return row, config.effective(row.config if row else {}, self.settings)

    def _config_message(self, row: ConfigVersionRow | None, document: dict) -> pb.SystemConfig:
        message = pb.SystemConfig(version=row.version if row else 0,
                                  updated_by=row.updated_by if row else "")
        message.config.update({**document, config.READ_ONLY: config.settings_view(self.settings)})
        if row is not None:
            message.updated_at.CopyFrom(_stamp(aware(row.created_at)))
        return message

    async def GetSystemConfig(self, request, context) -> pb.SystemConfig:
        require_caller(context)
        return self._config_message(*await self._config())

    async def UpdateSystemConfig(self, request, context) -> pb.SystemConfig:
        caller = require_caller(context)
        if not request.HasField("config") or not request.config.HasField("config"):
            raise invalid_field("config.config", "is required")
        body = json_format.MessageToDict(request.config.config)
        paths = list(request.update_mask.paths)
        sections: list[str] = []
        for path in paths:
            name = path.removeprefix("config.")
            if name not in config.SECTIONS:
                raise invalid_field("update_mask", f"cannot update {path!r}; updatable: "
                                    + ", ".join(f"config.{s}" for s in config.SECTIONS))
            sections.append(name)
        if config.READ_ONLY in body and \
                config._plain(body[config.READ_ONLY]) != config._plain(
                    config.settings_view(self.settings)):
            raise invalid_field(f"config.{config.READ_ONLY}",
                                "is read-only: these settings change only with a restart")
        checked = config.validate(body, catalog.names())
        if paths:
            checked = {name: checked[name] for name in sections if name in checked}

        def apply(session: Session) -> tuple[ConfigVersionRow, dict]:
            current = session.exec(select(ConfigVersionRow)
                                   .order_by(ConfigVersionRow.version.desc())).first()
            version = current.version if current else 0
            if request.expected_version and request.expected_version != version:
                raise FailedPrecondition(
                    f"the configuration is at version {version}, not "
                    f"{request.expected_version}; read it again and retry",
                    reason="CONFIG_VERSION_MISMATCH",
                    details={"version": str(version),
                             "expected_version": str(request.expected_version)})
            stored = dict(current.config) if current else {}
            for name in sections:  # a masked section absent from the body is reset
                stored.pop(name, None)
            stored.update(checked)
            row = ConfigVersionRow(version=version + 1, config=stored,
                                   updated_by=caller.user_id, tenant_id=caller.tenant_id,
                                   created_at=utcnow())
            session.add(row)
            audit.record(session, caller, "update", "system_config", str(version + 1),
                         sections=sorted(checked) or sorted(sections), previous=version)
            return row, config.effective(stored, self.settings)

        row, document = await self.db.write(apply)
        log.info("runtime configuration version %d by %s", row.version, caller.user_id)
        self._revision_cache = None
        return self._config_message(row, document)

    # ---- feature flags ---------------------------------------------------------------------
    async def _all_flags(self) -> list[pb.FeatureFlag]:
        rows = await self.db.read(lambda s: s.exec(select(FeatureFlagRow).where(
            FeatureFlagRow.tenant_id == PLATFORM).order_by(FeatureFlagRow.name)).all())
        return [_flag_message(r) for r in rows]

    async def ListFeatureFlags(self, request, context) -> pb.ListFeatureFlagsResponse:
        require_caller(context)
        page = PageRequest.of(request)
        where = ()
        if request.HasField("enabled"):
            where = (FeatureFlagRow.enabled == request.enabled,)
        result = await self.db.read(lambda s: flags_repo.list(
            s, PLATFORM, page, search=request.search, where=where))
        return pb.ListFeatureFlagsResponse(**result.fields(_flag_message))

    async def UpdateFeatureFlag(self, request, context) -> pb.FeatureFlag:
        caller = require_caller(context)
        if not request.flag_name:
            raise invalid_field("flag_name", "is required")
        flag = request.feature_flag
        writable = {"description", "enabled", "rollout_percentage", "tenant_ids", "rules"}
        paths = [p.removeprefix("feature_flag.") for p in request.update_mask.paths]
        bad = [p for p in paths if p not in writable]
        if bad:
            raise invalid_field("update_mask", f"cannot update {', '.join(bad)}; updatable: "
                                + ", ".join(sorted(writable)))
        names = paths or [f.name for f, _ in flag.ListFields() if f.name in writable]
        if flag.HasField("rollout_percentage") and not 0 <= flag.rollout_percentage <= 100:
            raise invalid_field("feature_flag.rollout_percentage", "must be between 0 and 100")
        update = {
            "description": flag.description, "enabled": flag.enabled,
            "rollout_percentage": flag.rollout_percentage if flag.HasField(
                "rollout_percentage") else 100,
            "tenant_ids": list(flag.tenant_ids),
            "rules": json_format.MessageToDict(flag.rules) if flag.HasField("rules") else {},
        }
        update = {name: update[name] for name in names}

        def apply(session: Session) -> FeatureFlagRow:
            row = flags_repo.find(session, PLATFORM, request.flag_name, lock=True)
            if row is None:
                if not request.allow_missing:
                    raise NotFound(f"feature flag {request.flag_name!r} not found",
                                   reason="FEATURE_FLAG_NOT_FOUND",
                                   details={"feature_flag": request.flag_name})
                row = FeatureFlagRow(tenant_id=PLATFORM, name=request.flag_name,
                                     updated_by=caller.user_id, **update)
                flags_repo.add(session, row)
                audit.record(session, caller, "create", "feature_flag", row.id,
                             name=row.name, fields=sorted(update))
                return row
            update["updated_by"] = caller.user_id
            return flags_repo.change(session, row, update, caller)

        row = await self.db.write(apply)
        self._revision_cache = None
        return _flag_message(row)

    # ---- what running services poll -------------------------------------------------------
    async def _revision(self) -> tuple[str, dict, list[pb.FeatureFlag], CacheClearRow | None]:
        cached = self._revision_cache
        if cached is not None and time.monotonic() - cached[0] < 1.0:
            return cached[2]

        def read(session: Session):
            version = session.exec(select(func.max(ConfigVersionRow.version))).one() or 0
            flags = session.exec(select(func.count(), func.max(FeatureFlagRow.updated_at))
                                 .where(FeatureFlagRow.tenant_id == PLATFORM)).one()
            clear = session.exec(select(CacheClearRow)
                                 .order_by(CacheClearRow.generation.desc())).first()
            return version, flags, clear
        version, (count, changed), clear = await self.db.read(read)
        revision = f"{version}.{count}.{aware(changed).timestamp() if changed else 0}." \
                   f"{clear.generation if clear else 0}"
        value = (revision, version, clear)
        self._revision_cache = (time.monotonic(), revision, value)
        return value

    async def GetRuntimeConfig(self, request, context) -> pb.RuntimeConfig:
        now = time.monotonic()
        for report in request.services:
            self.reports.setdefault(report.name, {})[(report.host, report.pid)] = (now, report)
        revision, _, clear = await self._revision()
        if request.known_revision == revision:
            return pb.RuntimeConfig(revision=revision, unchanged=True)
        _, document = await self._config()
        answer = pb.RuntimeConfig(revision=revision, feature_flags=await self._all_flags(),
                                  cache_generation=clear.generation if clear else 0,
                                  clear_caches=list(clear.caches) if clear else [])
        answer.config.update(document)
        return answer

    # ---- restarts, caches, backups ---------------------------------------------------------
    def _control(self) -> Path | None:
        path = self.settings.supervisor_control_dir
        return Path(path) if path else None

    async def RestartService(self, request, context) -> pb.RestartServiceResponse:
        caller = require_caller(context)
        if not request.service:
            raise invalid_field("service", "is required")
        if request.service not in catalog.names():
            raise NotFound(f"no service {request.service!r}; services: "
                           + ", ".join(catalog.names()), reason="SERVICE_NOT_FOUND",
                           details={"service": request.service})
        grace = self.settings.grace_period_seconds
        if request.HasField("grace_period"):
            grace = request.grace_period.ToTimedelta().total_seconds()
            if not 0 < grace <= 300:
                raise invalid_field("grace_period", "must be between 0s and 300s")
        control = self._control()
        if control is None:
            raise FailedPrecondition(
                "no supervisor runs this platform (it was not started by `agentmesh up`); in "
                f"Kubernetes run: kubectl rollout restart deployment/<release>-{request.service}",
                reason="NO_SUPERVISOR", details={"service": request.service})
        if restart.in_progress(control, request.service):
            raise FailedPrecondition(f"a restart of {request.service!r} is already in progress",
                                     reason="RESTART_IN_PROGRESS",
                                     details={"service": request.service})

        def record(session: Session) -> None:
            audit.record(session, caller, "restart", "service", request.service,
                         reason=request.reason, grace_seconds=grace)
        await self.db.write(record)
        at = await asyncio.to_thread(restart.request, control, request.service, request.reason,
                                     grace, caller.user_id)
        together = [s for s in restart.process_of(control, request.service)
                    if s != request.service]
        message = f"service {request.service!r} is restarting"
        if together:
            message += (f" (its process also hosts {', '.join(together)}, which restart with "
                        "it; `agentmesh up --isolation process` restarts one service alone)")
        return pb.RestartServiceResponse(service=request.service, status="restarting",
                                         message=message, requested_at=_stamp(at))

    async def ClearCache(self, request, context) -> pb.ClearCacheResponse:
        caller = require_caller(context)
        unknown = [c for c in request.caches if c not in caches.KNOWN]
        if unknown:
            raise invalid_field("caches", f"unknown caches {', '.join(unknown)}; caches: "
                                + ", ".join(caches.KNOWN))
        names = list(dict.fromkeys(request.caches)) or list(caches.KNOWN)

        def publish(session: Session) -> int:
            last = session.exec(select(func.max(CacheClearRow.generation))).one() or 0
            session.add(CacheClearRow(generation=last + 1, caches=names, pattern=request.pattern,
                                      created_by=caller.user_id, tenant_id=caller.tenant_id,
                                      created_at=utcnow()))
            audit.record(session, caller, "clear", "cache", ",".join(names),
                         pattern=request.pattern)
            return last + 1
        await self.db.write(publish)
        self._revision_cache = None
        removed = caches.clear(names, request.pattern)
        return pb.ClearCacheResponse(
            success=True, cleared=names, keys_removed=sum(removed.values()),
            message=f"{len(names)} caches cleared ({', '.join(names)}); other service processes "
                    f"clear theirs within {self.settings.live_poll_seconds:g}s")

    async def CreateBackup(self, request, context) -> pb.Backup:
        caller = require_caller(context)
        wanted = list(dict.fromkeys(request.backup.services))
        known = [n for n in catalog.names()]
        backup_plan = backup.plan(self.settings, wanted, known)
        if self.backup_running:
            raise FailedPrecondition(f"backup {self.backup_running} is still running",
                                     reason="BACKUP_RUNNING",
                                     details={"backup_id": self.backup_running})
        from mesh.runtime.tables import new_id

        backup_id = new_id()
        self.backup_running = backup_id
        now = utcnow()

        def record(session: Session) -> None:
            audit.record(session, caller, "create", "backup", backup_id,
                         services=backup_plan.services, description=request.backup.description)
        try:
            await self.db.write(record)
        except BaseException:
            self.backup_running = ""
            raise
        task = asyncio.get_running_loop().create_task(
            self._backup(backup_id, backup_plan, request.backup.description))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return pb.Backup(id=backup_id, tenant_id=caller.tenant_id,
                         description=request.backup.description,
                         services=backup_plan.services, status=pb.BACKUP_STATUS_PENDING,
                         created_by=caller.user_id, created_at=_stamp(now),
                         updated_at=_stamp(now))

    async def _backup(self, backup_id: str, backup_plan, description: str) -> None:
        try:
            target, manifest = await asyncio.to_thread(backup.run, self.settings, backup_plan,
                                                       description, backup_id)
            size = sum(e["bytes"] for e in manifest["services"].values()) / 1048576
            await self._resolve_alert("backup")
            await self._raise_alert(f"backup:{backup_id}", "backup completed",
                                    f"backup {backup_id} completed: {target} ({size:.2f} MB, "
                                    f"{len(manifest['services'])} services)",
                                    "ALERT_SEVERITY_INFO", "system", resolved=True)
            log.info("backup %s written to %s", backup_id, target)
        except Exception as exc:  # noqa: BLE001 - reported as an alert
            log.exception("backup %s failed", backup_id)
            await self._raise_alert("backup", "backup failed",
                                    f"backup {backup_id} failed: {exc}", "ALERT_SEVERITY_WARNING",
                                    "system")
        finally:
            self.backup_running = ""

    # ---- the docs --------------------------------------------------------------------------
    async def GetOpenApiDocument(self, request, context) -> httpbody_pb2.HttpBody:
        return httpbody_pb2.HttpBody(content_type="application/json", data=self.openapi)

    async def GetDocsPage(self, request, context) -> httpbody_pb2.HttpBody:
        return httpbody_pb2.HttpBody(content_type="text/html; charset=utf-8",
                                     data=_DOCS_PAGE.encode())

    async def GetDocsAsset(self, request, context) -> httpbody_pb2.HttpBody:
        if request.path == "init.js":
            return httpbody_pb2.HttpBody(content_type="application/javascript",
                                         data=_DOCS_INIT.encode())
        asset = (_SWAGGER_DIR / request.path).resolve()
        if _SWAGGER_DIR.resolve() not in asset.parents or not asset.is_file():
            raise NotFound(f"no docs asset {request.path!r}", details={"path": request.path})
        content_type = mimetypes.guess_type(asset.name)[0] or "application/octet-stream"
        data = await asyncio.to_thread(asset.read_bytes)
        return httpbody_pb2.HttpBody(content_type=content_type, data=data)


SERVICES: list[SystemService] = []


async def _start(runtime: Runtime) -> None:
    for service in SERVICES:
        if service.runtime is runtime:
            task = asyncio.get_running_loop().create_task(service._sample_forever())
            service._tasks.add(task)


async def _stop(runtime: Runtime) -> None:
    for service in [s for s in SERVICES if s.runtime is runtime]:
        for task in list(service._tasks):
            task.cancel()
        SERVICES.remove(service)


DEFINITION = ServiceDefinition("system", servicers=[SystemService],
                               tables=[ConfigVersionRow, FeatureFlagRow, AlertRow, CacheClearRow],
                               on_start=_start, on_stop=_stop)
