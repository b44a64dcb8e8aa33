"""What an operator does to the running platform: restart a service (through the supervisor's
control directory, mesh/system/restart.py, or in Kubernetes by a rollout restart of its
Deployment, mesh/system/kube.py), clear caches (this process's now, the others' at
their next poll) and back up the databases (mesh/system/backup.py, in the background)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sqlmodel import Session

from agentmesh.system.v1 import system_pb2 as pb
from mesh import catalog
from mesh.runtime import audit, caches
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.errors import (FailedPrecondition, NotFound, Unavailable, Unimplemented,
                                 invalid_field)
from mesh.runtime.settings import Settings
from mesh.runtime.tables import new_id, utcnow
from mesh.runtime.wakeups import mark
from mesh.system import backup, kube, restart
from mesh.system.alerts import SystemAlerts
from mesh.system.models import CacheClearRow
from mesh.system.store import WAKE_TOPIC, next_clear_generation, stamp

log = logging.getLogger("mesh.system")
MAX_GRACE_SECONDS = 300


async def restart_service(db: Database, settings: Settings, control: Path | None,
                          caller: Caller, request: pb.RestartServiceRequest
                          ) -> pb.RestartServiceResponse:
    if not request.service:
        raise invalid_field("service", "is required")
    if request.service not in catalog.names():
        raise NotFound(f"no service {request.service!r}; services: "
                       + ", ".join(catalog.names()), reason="SERVICE_NOT_FOUND",
                       details={"service": request.service})
    grace = settings.grace_period_seconds
    if request.HasField("grace_period"):
        grace = request.grace_period.ToTimedelta().total_seconds()
        if not 0 < grace <= MAX_GRACE_SECONDS:
            raise invalid_field("grace_period", f"must be between 0s and {MAX_GRACE_SECONDS}s")
    if control is None and (kube.in_cluster() or kube.KubernetesSettings().kubernetes_restart):
        return await _rollout_restart(db, caller, request, grace)
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
    await db.write(record)
    at = await asyncio.to_thread(restart.request, control, request.service, request.reason,
                                 grace, caller.user_id)
    together = [s for s in restart.process_of(control, request.service) if s != request.service]
    message = f"service {request.service!r} is restarting"
    if together:
        message += (f" (its process also hosts {', '.join(together)}, which restart with "
                    "it; `agentmesh up --isolation process` restarts one service alone)")
    return pb.RestartServiceResponse(service=request.service, status="restarting",
                                     message=message, requested_at=stamp(at))


async def _rollout_restart(db: Database, caller: Caller, request: pb.RestartServiceRequest,
                           grace: float) -> pb.RestartServiceResponse:
    """In Kubernetes: `kubectl rollout restart` of the service's Deployment, or a 501 that says
    why it cannot be done from here."""
    try:
        name = await asyncio.to_thread(kube.rollout_restart, request.service, request.reason)
    except kube.NotPermitted as error:
        raise Unimplemented(str(error), reason="RESTART_NOT_PERMITTED",
                            details={"service": request.service}) from None
    except kube.Unreachable as error:
        raise Unavailable(str(error), reason="KUBERNETES_API_UNAVAILABLE",
                          details={"service": request.service}) from None

    def record(session: Session) -> None:
        audit.record(session, caller, "restart", "service", request.service,
                     reason=request.reason, deployment=name)
    await db.write(record)
    message = (f"deployment/{name} is restarting (a rollout restart: its pods are replaced one "
               "at a time under its rollout strategy)")
    if request.HasField("grace_period"):
        message += ("; in Kubernetes a pod's grace period is its terminationGracePeriodSeconds "
                    f"(drainSeconds in the chart), not the {grace:g}s asked for")
    return pb.RestartServiceResponse(service=request.service, status="restarting",
                                     message=message, requested_at=stamp(utcnow()))


async def clear_caches(db: Database, settings: Settings, caller: Caller,
                       request: pb.ClearCacheRequest) -> pb.ClearCacheResponse:
    """Clears this process's caches now and publishes the clear (a new generation) that the
    other processes apply when their held GetRuntimeConfig call answers: at once when it is
    held by this system process, within `live_poll_seconds` when by another replica."""
    unknown = [c for c in request.caches if c not in caches.KNOWN]
    if unknown:
        raise invalid_field("caches", f"unknown caches {', '.join(unknown)}; caches: "
                            + ", ".join(caches.KNOWN))
    names = list(dict.fromkeys(request.caches)) or list(caches.KNOWN)

    def publish(session: Session) -> None:
        session.add(CacheClearRow(generation=next_clear_generation(session), caches=names,
                                  pattern=request.pattern, created_by=caller.user_id,
                                  tenant_id=caller.tenant_id, created_at=utcnow()))
        mark(session, WAKE_TOPIC)  # answers the held GetRuntimeConfig calls at once
        audit.record(session, caller, "clear", "cache", ",".join(names), pattern=request.pattern)
    await db.write(publish)
    removed = caches.clear(names, request.pattern)
    return pb.ClearCacheResponse(
        success=True, cleared=names, keys_removed=sum(removed.values()),
        message=f"{len(names)} caches cleared ({', '.join(names)}); other service processes "
                f"clear theirs within {settings.live_poll_seconds:g}s")


class Backups:
    """One backup at a time, run in the background; its outcome is a system alert."""

    def __init__(self, db: Database, settings: Settings, alerts: SystemAlerts) -> None:
        self.db = db
        self.settings = settings
        self.alerts = alerts
        self.running = ""  # the id of the backup being written
        self.tasks: set[asyncio.Task] = set()

    async def create(self, caller: Caller, request: pb.CreateBackupRequest) -> pb.Backup:
        wanted = list(dict.fromkeys(request.backup.services))
        backup_plan = backup.plan(self.settings, wanted, list(catalog.names()))
        if self.running:
            raise FailedPrecondition(f"backup {self.running} is still running",
                                     reason="BACKUP_RUNNING", details={"backup_id": self.running})
        backup_id = new_id()
        self.running = backup_id
        now = utcnow()

        def record(session: Session) -> None:
            audit.record(session, caller, "create", "backup", backup_id,
                         services=backup_plan.services, description=request.backup.description)
        try:
            await self.db.write(record)
        except BaseException:
            self.running = ""
            raise
        task = asyncio.get_running_loop().create_task(
            self._run(backup_id, backup_plan, request.backup.description))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return pb.Backup(id=backup_id, tenant_id=caller.tenant_id,
                         description=request.backup.description,
                         services=backup_plan.services, status=pb.BACKUP_STATUS_PENDING,
                         created_by=caller.user_id, created_at=stamp(now),
                         updated_at=stamp(now))

    async def _run(self, backup_id: str, backup_plan: backup.Plan, description: str) -> None:
        try:
            target, manifest = await asyncio.to_thread(backup.run, self.settings, backup_plan,
                                                       description, backup_id)
            size = sum(e["bytes"] for e in manifest["services"].values()) / 1048576
            await self.alerts.resolve("backup")
            await self.alerts.fire(f"backup:{backup_id}", "backup completed",
                                   f"backup {backup_id} completed: {target} ({size:.2f} MB, "
                                   f"{len(manifest['services'])} services)",
                                   "ALERT_SEVERITY_INFO", "system", resolved=True)
            log.info("backup %s written to %s", backup_id, target)
        except Exception as exc:  # noqa: BLE001 - reported as an alert
            log.exception("backup %s failed", backup_id)
            await self.alerts.fire("backup", "backup failed", f"backup {backup_id} failed: {exc}",
                                   "ALERT_SEVERITY_WARNING", "system")
        finally:
            self.running = ""

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
