"""WorkflowService: definitions (versioned), executions on the engine, live progress, control,
schedules. Each RPC reads its request, calls the domain (mesh.workflows.authoring, starting,
approvals, schedules, aggregates) or the engine (`runtime.state`), and answers.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC

from google.protobuf import json_format
from sqlmodel import Session

from agentmesh.common.v1 import common_pb2
from agentmesh.workflows.v1 import workflows_pb2 as pb
from agentmesh.workflows.v1 import workflows_pb2_grpc as pb_grpc
from mesh.runtime import scopes
from mesh.runtime.context import Caller, metadata_value, require_caller
from mesh.runtime.errors import (FailedPrecondition, InvalidArgument, NotFound, Unavailable,
                                 invalid_field)
from mesh.runtime.paging import MAX_PAGE_SIZE, PageRequest
from mesh.runtime.service import Runtime
from mesh.runtime.tables import aware
from mesh.workflows import aggregates, approvals, authoring, schedules, starting
from mesh.workflows.engine import Engine
from mesh.workflows.models import ENDED, ExecutionRow
from mesh.workflows.store import (SEED_PRIORITIES, WORKFLOW_VERSIONS, at_version, diff_message,
                                  execution_message,
                                  executions, priority_name, progress_message, schedule_message,
                                  seed_progress_message, seed_status, version_message,
                                  workflow_message, workflow_type_message, workflows)
from mesh.workflows.store import schedules as schedule_rows

E = "EXECUTION_STATUS_"
# WatchExecution sends the same state again after this long without a change.
HEARTBEAT_SECONDS = 25.0


class WorkflowService(pb_grpc.WorkflowServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.db = runtime.database
        self.settings = runtime.settings
        self._engine: Engine = runtime.state

    @property
    def engine(self) -> Engine:
        if not self._engine.started:
            raise Unavailable("the workflow engine is starting", reason="ENGINE_NOT_READY")
        return self._engine

    # ---- definitions --------------------------------------------------------------------------
    async def ListWorkflows(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        status = pb.WorkflowStatus.Name(request.status) if request.status else None
        result = await self.db.read(lambda s: workflows.list(
            s, caller.tenant_id, page, filters={"status": status}, search=request.search))
        return pb.ListWorkflowsResponse(**result.fields(workflow_message))

    async def CreateWorkflow(self, request, context):
        caller = require_caller(context)
        row = await authoring.create(self.db, self.settings, self.runtime.peers, caller,
                                     request.workflow)
        return workflow_message(row)

    async def GetWorkflow(self, request, context):
        caller = require_caller(context)
        if not request.version and not request.label:
            row = await self.db.read(lambda s: workflows.get(s, caller.tenant_id,
                                                             request.workflow_id))
            return workflow_message(row)

        def read(session: Session):
            row = workflows.get(session, caller.tenant_id, request.workflow_id)
            return at_version(row, WORKFLOW_VERSIONS.resolve(session, row, request.version,
                                                             request.label))
        return await self.db.read(read)

    async def UpdateWorkflow(self, request, context):
        caller = require_caller(context)
        row = await authoring.update(self.db, self.settings, self.runtime.peers, caller,
                                     request.workflow_id, request.workflow,
                                     list(request.update_mask.paths))
        return workflow_message(row)

    async def DeleteWorkflow(self, request, context):
        caller = require_caller(context)
        ids = await schedules.of_workflow(self.db, caller.tenant_id, request.workflow_id)
        message = await authoring.delete(self.db, caller, request.workflow_id)
        for schedule_id in ids:
            await self.engine.remove_schedule(schedule_id)
        return common_pb2.DeleteResponse(success=True, message=message)

    async def ActivateWorkflow(self, request, context):
        caller = require_caller(context)
        return workflow_message(await authoring.transition(self.db, caller, request.workflow_id,
                                                           "activate"))

    async def DeactivateWorkflow(self, request, context):
        caller = require_caller(context)
        return workflow_message(await authoring.transition(self.db, caller, request.workflow_id,
                                                           "deactivate"))

    async def ListWorkflowVersions(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)

        row, result = await self.db.read(lambda s: WORKFLOW_VERSIONS.page(
            s, caller.tenant_id, request.workflow_id, page))
        return pb.ListWorkflowVersionsResponse(**result.fields(
            lambda v: version_message(v, row)))

    async def GetWorkflowVersion(self, request, context):
        caller = require_caller(context)

        def read(session: Session):
            row = workflows.get(session, caller.tenant_id, request.workflow_id)
            return version_message(WORKFLOW_VERSIONS.get(session, row, request.version), row)
        return await self.db.read(read)

    async def DiffWorkflowVersions(self, request, context):
        caller = require_caller(context)

        def read(session: Session):
            row = workflows.get(session, caller.tenant_id, request.workflow_id)
            older, newer = WORKFLOW_VERSIONS.pair(session, row, request.version, request.against)
            return diff_message(row, older, newer)
        return await self.db.read(read)

    async def SetWorkflowLabel(self, request, context):
        caller = require_caller(context)
        return workflow_message(await self.db.write(lambda s: WORKFLOW_VERSIONS.move_label(
            s, caller, request.workflow_id, request.label, request.version)))

    async def DeleteWorkflowLabel(self, request, context):
        caller = require_caller(context)
        row = await self.db.write(lambda s: WORKFLOW_VERSIONS.drop_label(
            s, caller, request.workflow_id, request.label))
        return common_pb2.DeleteResponse(
            success=True, message=f"label {request.label!r} removed from workflow {row.slug!r}")

    async def GetWorkflowStats(self, request, context):
        caller = require_caller(context)
        return await self.db.read(lambda s: aggregates.workflow_stats(
            s, caller.tenant_id, request.workflow_id))

    async def CreateTemplateFromWorkflow(self, request, context):
        caller = require_caller(context)
        row = await self.db.read(lambda s: workflows.get(s, caller.tenant_id, request.workflow_id))
        made = await authoring.create_template(self.runtime.peers, row, request)
        out = pb.CreateTemplateFromWorkflowResponse(
            template_id=made.id, name=made.name, workflow_id=row.id, workflow_version=row.version)
        out.created_at.CopyFrom(made.created_at)
        return out

    async def ListWorkflowTypes(self, request, context):
        caller = require_caller(context)
        order = request.order_by or "slug"
        order = {"workflow_type": "slug", "-workflow_type": "-slug"}.get(order, order)
        if order.lstrip("-") not in ("slug", "name"):
            raise invalid_field("order_by", "use workflow_type or name, '-' for descending")
        asked = PageRequest.of(request)  # bounds and the order_by pattern
        # Every type on one page unless the client pages: a seed client reads one answer.
        page = PageRequest(asked.page, request.page_size or MAX_PAGE_SIZE, order_by=order)
        result = await self.db.read(lambda s: workflows.list(
            s, caller.tenant_id, page, filters={"status": "WORKFLOW_STATUS_ACTIVE"},
            search=request.search))
        reply = pb.ListWorkflowTypesResponse(**result.fields(workflow_type_message))
        reply.workflow_types.extend(item.workflow_type for item in reply.items)
        return reply

    # ---- executions ---------------------------------------------------------------------------
    async def ExecuteWorkflow(self, request, context):
        caller = require_caller(context)
        row = await starting.start(self.db, self.settings, self.engine, caller,
                                   request.workflow_id, json_format.MessageToDict(request.inputs),
                                   priority_name(request.priority), request.idempotency_key,
                                   version=request.version, label=request.label)
        return execution_message(row)

    async def SubmitWorkflow(self, request, context):
        """Seed 000's POST /execute-workflow: its words for statuses and priorities, and its
        400 "Unknown workflow type" for a type the tenant has no workflow of."""
        caller = require_caller(context)
        if not request.requirements.strip():
            raise invalid_field("requirements", "is required")
        if not request.workflow_type:
            raise invalid_field("workflow_type", "is required")
        priority = SEED_PRIORITIES.get(request.priority or "normal")
        if priority is None:  # the contract's pattern refuses it first; kept for gRPC callers
            raise invalid_field("priority", "must be low, normal, high or critical")
        inputs = {"requirements": request.requirements,
                  "configuration": json_format.MessageToDict(request.configuration)}
        try:
            # Queued even when pure: seed 000 answers a submission "queued", then progress.
            row = await starting.start(self.db, self.settings, self.engine, caller,
                                       request.workflow_type, inputs, priority,
                                       request.idempotency_key, inline=False)
        except NotFound:
            raise InvalidArgument(
                f"Unknown workflow type: {request.workflow_type}; see /api/v1/workflow-types",
                reason="UNKNOWN_WORKFLOW_TYPE",
                details={"workflow_type": request.workflow_type},
                field_violations=[("workflow_type", "unknown workflow type")]) from None
        out = pb.SubmitWorkflowResponse(session_id=row.id, status=seed_status(row.status),
                                        message="Workflow queued for execution")
        out.created_at.FromDatetime(aware(row.created_at))
        estimate = await self.db.read(lambda s: aggregates.typical_duration(s, row.workflow_id))
        if estimate is not None:
            out.estimated_completion.FromDatetime(aware(row.created_at) + estimate)
        return out

    async def _execution(self, caller: Caller, execution_id: str) -> ExecutionRow:
        if not execution_id:
            raise invalid_field("execution_id", "is required")
        return await self.db.read(lambda s: executions.get(s, caller.tenant_id, execution_id))

    async def GetWorkflowStatus(self, request, context):
        caller = require_caller(context)
        return seed_progress_message(await self._execution(caller, request.execution_id))

    async def GetExecution(self, request, context):
        caller = require_caller(context)
        return execution_message(await self._execution(caller, request.execution_id))

    async def ListWorkflowExecutions(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        status = pb.ExecutionStatus.Name(request.status) if request.status else None

        def read(session: Session):
            workflow = workflows.get(session, caller.tenant_id, request.workflow_id)
            return executions.list(session, caller.tenant_id, page,
                                   filters={"workflow_id": workflow.id, "status": status})
        result = await self.db.read(read)
        return pb.ListWorkflowExecutionsResponse(**result.fields(execution_message))

    async def CountExecutions(self, request, context) -> pb.ExecutionCounts:
        """For the platform's statistics (system): the tenant's executions since a time, and
        those not finished."""
        caller = require_caller(context)
        since = request.since.ToDatetime(UTC) if request.HasField("since") else None
        return await self.db.read(lambda s: aggregates.count_executions(
            s, caller.tenant_id, since))

    async def AggregateExecutions(self, request, context):
        caller = require_caller(context)
        return await self.db.read(lambda s: aggregates.aggregate_executions(
            s, caller.tenant_id, request))

    # ---- control ------------------------------------------------------------------------------
    async def _stop(self, request, context, status: str, code: str, default: str):
        caller = require_caller(context)
        row = await self._execution(caller, request.execution_id)
        if row.status in ENDED:
            raise FailedPrecondition(f"execution {row.id} has already ended ({row.status})",
                                     reason="EXECUTION_ENDED",
                                     details={"execution": row.id, "status": row.status})
        await self.engine.stop_execution(row.id, status, code, request.reason or default)
        return execution_message(await self._execution(caller, row.id))

    async def CancelExecution(self, request, context):
        return await self._stop(request, context, E + "CANCELLED", "CANCELLED",
                                "cancelled by a user")

    async def TerminateExecution(self, request, context):
        return await self._stop(request, context, E + "FAILED", "TERMINATED",
                                "terminated by a user")

    async def RetryExecution(self, request, context):
        caller = require_caller(context)
        row = await self._execution(caller, request.execution_id)
        if row.status != E + "FAILED":
            raise FailedPrecondition(f"only a FAILED execution can be retried; {row.id} is "
                                     f"{row.status}", reason="EXECUTION_NOT_FAILED",
                                     details={"execution": row.id, "status": row.status})
        # Retried by someone else, the steps act within what both the starter and they hold.
        granted = sorted(scopes.common(row.scopes, caller.scopes))
        await self.engine.retry(row.id, granted)
        return execution_message(await self._execution(caller, row.id))

    async def _decide(self, request, context, approved: bool):
        caller = require_caller(context)
        row = await self._execution(caller, request.execution_id)
        await approvals.decide(self.db, self.runtime.peers, self.engine, caller, row,
                               request.step_id, approved, request.comment)
        return execution_message(await self._execution(caller, row.id))

    async def ApproveStep(self, request, context):
        return await self._decide(request, context, True)

    async def RejectStep(self, request, context):
        return await self._decide(request, context, False)

    async def WatchExecution(self, request, context):
        """The current state first (unless the client already saw it), one message per change,
        the final state last. Changes made in this process wake the stream at once; changes
        made by another replica are seen within a second."""
        caller = require_caller(context)
        row = await self._execution(caller, request.execution_id)
        last = request.last_event_id
        header = metadata_value(context, "last-event-id")
        if not last and header.isdigit():
            last = int(header)
        engine = self.engine
        sent_at = time.monotonic()
        while True:
            # Registered before the row is read: a change made between the read and the wait
            # sets this event, so the stream never sleeps through it.
            changed = engine.changed(row.id)
            row = await self._execution(caller, row.id)
            if row.seq > last or last == 0:
                last = row.seq
                sent_at = time.monotonic()
                yield progress_message(row)
            elif time.monotonic() - sent_at > HEARTBEAT_SECONDS:
                # Nothing changed for a while (an approval wait): the same state again, same
                # event id, so that proxies do not close an idle stream.
                sent_at = time.monotonic()
                yield progress_message(row)
            if row.status in ENDED:
                return
            try:
                await asyncio.wait_for(changed.wait(), 1.0)
            except TimeoutError:
                pass

    # ---- schedules ----------------------------------------------------------------------------
    async def CreateSchedule(self, request, context):
        caller = require_caller(context)
        timezone = await schedules.check(request.schedule, caller, self.settings)
        row = await schedules.create(self.db, self.settings, caller, request.workflow_id,
                                     request.schedule, timezone)
        try:
            await self.engine.add_schedule(row)
        except Exception as exc:
            await schedules.forget(self.db, row.id)
            raise invalid_field("cron", str(exc)) from None
        return schedule_message(row)

    async def ListSchedules(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)

        def read(session: Session):
            workflow = workflows.get(session, caller.tenant_id, request.workflow_id)
            return schedule_rows.list(session, caller.tenant_id, page,
                                      filters={"workflow_id": workflow.id})
        result = await self.db.read(read)
        return pb.ListSchedulesResponse(**result.fields(schedule_message))

    async def DeleteSchedule(self, request, context):
        caller = require_caller(context)
        schedule_id = await schedules.delete(self.db, caller, request.workflow_id,
                                             request.schedule_id)
        await self.engine.remove_schedule(schedule_id)
        return common_pb2.DeleteResponse(success=True, message=f"schedule {schedule_id} deleted")
