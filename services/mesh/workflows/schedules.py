"""Schedules: a cron that starts a workflow as its creator. Checked and saved here; DBOS fires
them (mesh.workflows.state registers the firing workflow) and each fire makes one execution
here, once, whatever replica or replay fires it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from google.protobuf import json_format
from sqlmodel import Session, select

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.errors import NotFound, PermissionDenied, invalid_field
from mesh.runtime.settings import Settings
from mesh.runtime.tables import utcnow
from mesh.workflows import limits
from mesh.workflows.models import ExecutionRow, ScheduleRow, WorkflowRow
from mesh.workflows.store import (executions, new_execution, priority_name, running,
                                  schedules, timeout_of, workflows)

log = logging.getLogger("mesh.workflows.schedules")


def _scope_of(rpc: str) -> str:
    """The scope the contract gives one of this service's RPCs."""
    from mesh import contract

    return contract.default().rpc(f"/agentmesh.workflows.v1.WorkflowService/{rpc}").scope


async def check(spec: pb.Schedule, caller: Caller, settings: Settings) -> str:
    """A schedule the caller may save: a cron of 5 fields (or 6, seconds first) that fires no
    more often than the floor, an IANA time zone (its name returned, UTC by default), and a
    creator who may run the workflow, since its executions will act as them."""
    from croniter import croniter

    if not spec.cron or len(spec.cron.split()) not in (5, 6) or \
            not croniter.is_valid(spec.cron, second_at_beginning=True):
        raise invalid_field("cron", "is not a cron expression of 5 fields (or 6, seconds "
                            "first)")
    timezone = spec.timezone or "UTC"
    try:
        ZoneInfo(timezone)
    except Exception:  # noqa: BLE001
        raise invalid_field("timezone", f"{timezone!r} is not an IANA time zone") from None
    await asyncio.to_thread(limits.check_cron_interval, spec.cron, timezone, settings)

    # Its executions will act as the caller: who may not run the workflow may not have it run.
    needed = _scope_of("ExecuteWorkflow")
    if not caller.has_scope(needed):
        raise PermissionDenied(f"a schedule runs the workflow as its creator, which needs "
                               f"scope {needed}", reason="SCOPE_NOT_HELD",
                               details={"required_scope": needed})
    return timezone


async def create(db: Database, settings: Settings, caller: Caller, workflow_key: str,
                 spec: pb.Schedule, timezone: str) -> ScheduleRow:
    def add(session: Session) -> ScheduleRow:
        workflow = workflows.get(session, caller.tenant_id, workflow_key)
        if spec.version or spec.label:   # what it names must exist now
            running(session, workflow, spec.version, spec.label)
        limits.check_schedule_quota(session, caller.tenant_id, settings)
        row = ScheduleRow(tenant_id=caller.tenant_id, workflow_id=workflow.id,
                          cron=spec.cron, timezone=timezone,
                          inputs=json_format.MessageToDict(spec.inputs),
                          priority=priority_name(spec.priority), created_by=caller.user_id,
                          api_key_id=caller.api_key_id, scopes=sorted(caller.scopes),
                          label=spec.label, version=spec.version)
        return schedules.add(session, row)
    return await db.write(add)


async def forget(db: Database, schedule_id: str) -> None:
    """A schedule DBOS refused (its cron): the row goes again."""
    await db.write(lambda s: schedules.delete(s, s.get(ScheduleRow, schedule_id)))


async def delete(db: Database, caller: Caller, workflow_key: str, schedule_id: str) -> str:
    def remove(session: Session) -> str:
        workflow = workflows.get(session, caller.tenant_id, workflow_key)
        row = schedules.get(session, caller.tenant_id, schedule_id)
        if row.workflow_id != workflow.id:
            raise schedules.not_found(schedule_id)
        schedules.delete(session, row)
        return row.id
    return await db.write(remove)


async def of_workflow(db: Database, tenant_id: str, workflow_key: str) -> list[str]:
    """The ids of a workflow's schedules (by its id or slug)."""
    return await db.read(lambda s: [r.id for r in s.exec(
        select(ScheduleRow).join(WorkflowRow, WorkflowRow.id == ScheduleRow.workflow_id)
        .where(ScheduleRow.tenant_id == tenant_id,
               (WorkflowRow.id == workflow_key) | (WorkflowRow.slug == workflow_key))).all()])


# ---- a fire ----------------------------------------------------------------------------------

async def make_execution(db: Database, settings: Settings, schedule_id: str, execution_id: str,
                         scheduled_at: datetime) -> dict | None:
    """The execution of one fire ({tenant_id, priority, timeout} to queue it), or None when the
    fire starts nothing: the schedule or its workflow is gone or inactive, or
    `limits.schedule_may_fire` says no. Made once: a second call finds it."""
    def make(session: Session):
        schedule = session.get(ScheduleRow, schedule_id)
        if schedule is None:
            return None
        if session.get(ExecutionRow, execution_id) is not None:
            workflow = session.get(WorkflowRow, schedule.workflow_id)
            return {"priority": schedule.priority, "tenant_id": schedule.tenant_id,
                    "timeout": timeout_of(workflow.definition) if workflow else None}
        workflow = session.get(WorkflowRow, schedule.workflow_id)
        if workflow is None or workflow.status != "WORKFLOW_STATUS_ACTIVE":
            return None
        skipped = limits.schedule_may_fire(session, schedule, scheduled_at, settings)
        if skipped:
            log.info("schedule %s skipped its fire at %s: %s", schedule.id,
                     scheduled_at.isoformat(), skipped)
            return None
        # As the schedule's creator, within the scopes recorded when it was made; the version
        # its label (default `production`, else `latest`) points at when it fires, so moving
        # the label moves the schedule's next run.
        try:
            run = running(session, workflow, schedule.version, schedule.label)
        except NotFound as gone:   # its label (or version) is no more: nothing to run
            log.info("schedule %s skipped its fire at %s: %s", schedule.id,
                     scheduled_at.isoformat(), gone.message)
            return None
        row = new_execution(workflow, schedule.inputs, schedule.priority,
                            schedule.created_by, execution_id=execution_id,
                            api_key_id=schedule.api_key_id, scopes=schedule.scopes, run=run)
        row.schedule_id = schedule.id
        executions.add(session, row)
        schedule.fired += 1
        schedule.last_fired_at = scheduled_at
        schedule.updated_at = utcnow()
        session.add(schedule)
        return {"priority": schedule.priority, "tenant_id": schedule.tenant_id,
                "timeout": timeout_of(run.definition)}
    return await db.write(make)
