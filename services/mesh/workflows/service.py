"""WorkflowService: definitions (versioned), executions on DBOS, live progress, control.

The durable engine (and DBOS, with its memory and start-up cost) is imported only when the
service starts: `mesh.workflows.engine`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import json_format
from sqlmodel import Session, func, select

from agentmesh.common.v1 import common_pb2
from agentmesh.identity.v1 import identity_pb2, identity_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2 as pb
from agentmesh.workflows.v1 import workflows_pb2_grpc as pb_grpc
from mesh.runtime import schemas
from mesh.runtime.context import Caller, common_scopes, metadata_value, require_caller
from mesh.runtime.errors import (FailedPrecondition, InvalidArgument, NotFound, PermissionDenied,
                                 Unavailable, invalid_field)
from mesh.runtime.paging import MAX_PAGE_SIZE, Page, PageRequest
from mesh.runtime.repository import TenantRepository
from mesh.runtime.service import Runtime, ServiceDefinition
from mesh.runtime.tables import aware, new_id, utcnow
from mesh.workflows import definition as defn
from mesh.workflows import limits
from mesh.workflows.models import (ExecutionRow, ExecutorRow, ScheduleRow, WorkflowRow,
                                   WorkflowVersionRow)

W = "WORKFLOW_STATUS_"
E = "EXECUTION_STATUS_"
ENDED = {E + "COMPLETED", E + "FAILED", E + "CANCELLED"}
LIVE = {E + "QUEUED", E + "RUNNING", E + "WAITING_APPROVAL"}
HEARTBEAT_SECONDS = 25.0
# Fields of Workflow that make its definition (versioned); the rest is metadata.
_DEFINITION_FIELDS = ("steps", "input_schema", "output_schema", "outputs", "timeout")
_WRITABLE = ("name", "slug", "description", "labels", *_DEFINITION_FIELDS)

workflows = TenantRepository(WorkflowRow, noun="workflow", name_column="slug",
                             search_columns=("name", "slug", "description"),
                             order_columns=("name", "slug", "status"), quota="resource")
executions = TenantRepository(ExecutionRow, noun="execution", name_column=None,
                              order_columns=("started_at", "ended_at", "status", "priority"))
versions = TenantRepository(WorkflowVersionRow, noun="version", name_column=None, quota="version")
schedules = TenantRepository(ScheduleRow, noun="schedule", name_column=None)


# ---- conversion ----------------------------------------------------------------------------

def _ts(value: datetime | None) -> str | None:
    value = aware(value)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _clean(data: dict) -> dict:
    return {k: v for k, v in data.items() if v not in (None, "", [], {})}


def workflow_message(row: WorkflowRow) -> pb.Workflow:
    message = defn.workflow_from_json(row.definition)
    message.MergeFrom(json_format.ParseDict(_clean({
        "id": row.id, "tenant_id": row.tenant_id, "name": row.name, "slug": row.slug,
        "description": row.description, "version": row.version, "status": row.status,
        "labels": row.labels, "created_by": row.created_by,
        "created_at": _ts(row.created_at), "updated_at": _ts(row.updated_at)}), pb.Workflow()))
    return message


def _step_state(state: dict) -> dict:
    output = state.get("output")
    if output is not None and not isinstance(output, dict):
        output = {"value": output}
    return _clean({"step_id": state["step_id"], "status": state["status"],
                   "attempts": state.get("attempts", 0), "started_at": state.get("started_at"),
                   "ended_at": state.get("ended_at"), "output": output,
                   "error": state.get("error"), "decisions": state.get("decisions"),
                   "child_execution_id": state.get("child_execution_id")})


def execution_message(row: ExecutionRow) -> pb.Execution:
    return json_format.ParseDict(_clean({
        "id": row.id, "tenant_id": row.tenant_id, "workflow_id": row.workflow_id,
        "workflow_slug": row.workflow_slug, "workflow_version": row.workflow_version,
        "status": row.status, "progress": row.progress, "current_phase": row.current_phase,
        "phases_completed": row.phases_completed, "errors": row.errors,
        "partial_results": row.partial_results, "inputs": row.inputs, "outputs": row.outputs,
        "step_states": [_step_state(s) for s in row.step_states], "priority": row.priority,
        "created_by": row.created_by, "created_at": _ts(row.created_at),
        "started_at": _ts(row.started_at), "ended_at": _ts(row.ended_at),
        "updated_at": _ts(row.updated_at), "idempotency_key": row.idempotency_key,
        "parent_execution_id": row.parent_execution_id, "schedule_id": row.schedule_id,
        "api_key_id": row.api_key_id, "scopes": list(row.scopes),
    }), pb.Execution(), ignore_unknown_fields=True)


def progress_message(row: ExecutionRow) -> pb.ExecutionProgress:
    return json_format.ParseDict(_clean({
        "execution_id": row.id, "session_id": row.id, "status": row.status,
        "progress": row.progress, "current_phase": row.current_phase,
        "phases_completed": row.phases_completed, "errors": row.errors,
        "partial_results": row.partial_results, "updated_at": _ts(row.updated_at),
        "event_id": row.seq, "step_states": [_step_state(s) for s in row.step_states],
    }), pb.ExecutionProgress(), ignore_unknown_fields=True)


# Seed 000's status words (workflow-status, execute-workflow): the enum name in lower case.
def seed_status(status: str) -> str:
    return status.removeprefix(E).lower()


# Seed 000's priorities (`low|normal|high|critical`) to the platform's.
SEED_PRIORITIES = {word: f"EXECUTION_PRIORITY_{word.upper()}"
                   for word in ("low", "normal", "high", "critical")}


def seed_progress_message(row: ExecutionRow) -> pb.GetWorkflowStatusResponse:
    """The execution as seed 000's WorkflowProgressResponse."""
    return json_format.ParseDict(_clean({
        "session_id": row.id, "execution_id": row.id, "status": seed_status(row.status),
        "progress": row.progress, "current_phase": row.current_phase,
        "phases_completed": row.phases_completed, "errors": row.errors,
        "partial_results": row.partial_results,
        "results": row.outputs if row.status == E + "COMPLETED" else None,
        "created_at": _ts(row.created_at), "updated_at": _ts(row.updated_at),
    }), pb.GetWorkflowStatusResponse(), ignore_unknown_fields=True)


def schedule_message(row: ScheduleRow) -> pb.Schedule:
    return json_format.ParseDict(_clean({
        "id": row.id, "tenant_id": row.tenant_id, "workflow_id": row.workflow_id,
        "cron": row.cron, "timezone": row.timezone, "inputs": row.inputs,
        "priority": row.priority, "created_by": row.created_by,
        "api_key_id": row.api_key_id, "scopes": list(row.scopes),
        "last_fired_at": _ts(row.last_fired_at), "fired": row.fired,
        "created_at": _ts(row.created_at), "updated_at": _ts(row.updated_at)}), pb.Schedule())


# ---- shared with the engine ------------------------------------------------------------------

def find_workflow(session: Session, tenant_id: str, key: str) -> WorkflowRow | None:
    return workflows.find(session, tenant_id, key)


def new_execution(workflow: WorkflowRow, inputs: dict, priority: str, created_by: str, *,
                  execution_id: str | None = None, idempotency_key: str | None = None,
                  api_key_id: str = "", scopes: list[str] | tuple[str, ...] = ()
                  ) -> ExecutionRow:
    """A queued execution whose steps act as `created_by` (with `api_key_id`, the key it came
    with), within `scopes`."""
    steps = workflow.definition.get("steps", [])
    now = utcnow()
    return ExecutionRow(
        id=execution_id or new_id(), tenant_id=workflow.tenant_id, workflow_id=workflow.id,
        workflow_slug=workflow.slug, workflow_version=workflow.version, priority=priority,
        inputs=inputs, created_by=created_by, idempotency_key=idempotency_key or None,
        api_key_id=api_key_id, scopes=sorted(scopes),
        dbos_workflow_id=execution_id or "",
        step_states=[{"step_id": s["id"], "name": s.get("name") or s["id"],
                      "status": "STEP_STATUS_PENDING", "attempts": 0} for s in steps],
        created_at=now, updated_at=now)


def _scope_of(rpc: str) -> str:
    """The scope the contract gives one of this service's RPCs."""
    from mesh import contract

    return contract.default().rpc(f"/agentmesh.workflows.v1.WorkflowService/{rpc}").scope


def _priority(value: int) -> str:
    return pb.ExecutionPriority.Name(value or pb.EXECUTION_PRIORITY_NORMAL)


class _ValidateInSandbox(Exception):
    """The input schema has references: validating may take long, so not inside the
    transaction (nor on the event loop) but in the sandbox first (mesh.runtime.schemas)."""

    def __init__(self, schema: dict) -> None:
        super().__init__("validate in the sandbox")
        self.schema = schema


def _check_inputs(workflow: WorkflowRow, inputs: dict, validated: dict | None = None) -> None:
    schema = workflow.definition.get("input_schema") or {}
    if not schema or schema == validated:
        return
    if not schemas.is_bounded(schema):
        raise _ValidateInSandbox(schema)
    _refuse_inputs(schemas.instance_errors(schema, inputs, "inputs", "input_schema"))


def _refuse_inputs(errors: list[tuple[str, str]]) -> None:
    if errors:
        raise InvalidArgument("; ".join(f"{f}: {p}" for f, p in errors),
                              field_violations=errors)


class WorkflowService(pb_grpc.WorkflowServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.db = runtime.database

    @property
    def engine(self):
        from mesh.workflows import engine

        if engine.ENGINE is None:
            raise Unavailable("the workflow engine is starting", reason="ENGINE_NOT_READY")
        return engine.ENGINE

    # ---- definitions --------------------------------------------------------------------------
    async def _validate(self, message: pb.Workflow) -> None:
        limits.check_step_count(message, self.runtime.settings)
        defn.build_graph(message)
        problems = [*schemas.problems(json_format.MessageToDict(message.input_schema),
                                      "input_schema"),
                    *schemas.problems(json_format.MessageToDict(message.output_schema),
                                      "output_schema")]
        if problems:
            raise InvalidArgument("; ".join(f"{f}: {p}" for f, p in problems),
                                  field_violations=problems)
        await self._check_references(message)

    async def _check_references(self, message: pb.Workflow) -> None:
        """Agents and tools named by steps must exist (checked over gRPC). A peer that cannot
        answer yet (UNIMPLEMENTED, not configured, unreachable) is not a client error: the
        step fails when it runs instead."""
        from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
        from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc

        problems = []
        for step in message.steps:
            if step.type == pb.STEP_TYPE_AGENT and step.agent.agent_id:
                call = lambda s=step: self.runtime.peers.stub(  # noqa: E731
                    agents_pb2_grpc.AgentServiceStub).GetAgent(
                    agents_pb2.GetAgentRequest(agent_id=s.agent.agent_id))
                what, key = "agent", step.agent.agent_id
            elif step.type == pb.STEP_TYPE_TOOL and step.tool.tool_id:
                call = lambda s=step: self.runtime.peers.stub(  # noqa: E731
                    tools_pb2_grpc.ToolServiceStub).GetTool(
                    tools_pb2.GetToolRequest(tool_id=s.tool.tool_id))
                what, key = "tool", step.tool.tool_id
            else:
                continue
            try:
                await call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    problems.append((f"steps.{step.id}.{what}.{what}_id",
                                     f"step {step.id!r}: {what} {key!r} does not exist"))
            except Unavailable:
                pass
        if problems:
            raise InvalidArgument(f"invalid workflow: {problems[0][1]}", reason="INVALID_WORKFLOW",
                                  field_violations=problems,
                                  details={"step": problems[0][0].split(".")[1]})

    @staticmethod
    def _definition(message: pb.Workflow) -> dict:
        data = defn.to_json(message)
        return {k: data[k] for k in _DEFINITION_FIELDS if k in data}

    async def ListWorkflows(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        status = pb.WorkflowStatus.Name(request.status) if request.status else None
        result = await self.db.read(lambda s: workflows.list(
            s, caller.tenant_id, page, filters={"status": status}, search=request.search))
        return pb.ListWorkflowsResponse(**result.fields(workflow_message))

    async def CreateWorkflow(self, request, context):
        caller = require_caller(context)
        message = pb.Workflow()
        message.CopyFrom(request.workflow)
        if not message.name or len(message.name) > 200:
            raise invalid_field("name", "is required, 1-200 characters")
        message.slug = message.slug or defn.slugify(message.name)
        defn.check_slug(message.slug)
        await self._validate(message)
        definition = self._definition(message)

        def create(session: Session) -> WorkflowRow:
            limits.refuse_cycles(session, caller.tenant_id, "", message.slug, message)
            row = WorkflowRow(tenant_id=caller.tenant_id, name=message.name, slug=message.slug,
                              description=message.description, labels=dict(message.labels),
                              definition=definition, created_by=caller.user_id)
            workflows.add(session, row)
            versions.add(session, WorkflowVersionRow(
                tenant_id=caller.tenant_id, workflow_id=row.id, version=1,
                workflow=defn.to_json(workflow_message(row)), created_by=caller.user_id))
            return row
        return workflow_message(await self.db.write(create))

    async def GetWorkflow(self, request, context):
        caller = require_caller(context)
        row = await self.db.read(lambda s: workflows.get(s, caller.tenant_id, request.workflow_id))
        return workflow_message(row)

    async def UpdateWorkflow(self, request, context):
        caller = require_caller(context)
        mask = list(request.update_mask.paths)
        unknown = [p for p in mask if p not in _WRITABLE]
        if unknown:
            raise invalid_field("update_mask", f"cannot update {', '.join(unknown)}; "
                                f"updatable: {', '.join(_WRITABLE)}")
        body = request.workflow
        if not mask:
            mask = [f.name for f, _ in body.ListFields() if f.name in _WRITABLE]
        current = await self.db.read(lambda s: workflows.get(s, caller.tenant_id,
                                                             request.workflow_id))
        merged = workflow_message(current)
        for name in mask:
            merged.ClearField(name)
            field = pb.Workflow.DESCRIPTOR.fields_by_name[name]
            if field.message_type is not None and not field.is_repeated and \
                    not field.message_type.GetOptions().map_entry:
                if body.HasField(name):
                    getattr(merged, name).CopyFrom(getattr(body, name))
            elif field.is_repeated:
                target = getattr(merged, name)
                if field.message_type is not None and field.message_type.GetOptions().map_entry:
                    target.update(getattr(body, name))
                else:
                    target.extend(getattr(body, name))
            else:
                setattr(merged, name, getattr(body, name))
        if "name" in mask and (not merged.name or len(merged.name) > 200):
            raise invalid_field("name", "is required, 1-200 characters")
        if "slug" in mask:
            merged.slug = merged.slug or defn.slugify(merged.name)
            defn.check_slug(merged.slug)
        await self._validate(merged)
        definition = self._definition(merged)

        def apply(session: Session) -> WorkflowRow:
            row = workflows.get(session, caller.tenant_id, request.workflow_id, lock=True)
            if row.status == W + "ARCHIVED":
                raise FailedPrecondition(f"workflow {row.slug!r} is archived and read-only",
                                         reason="WORKFLOW_ARCHIVED", details={"workflow": row.slug})
            limits.refuse_cycles(session, caller.tenant_id, row.id, merged.slug, merged)
            row.name, row.slug, row.description = merged.name, merged.slug, merged.description
            row.labels = dict(merged.labels)
            row.definition = definition
            row.version += 1
            workflows.save(session, row)
            versions.add(session, WorkflowVersionRow(
                tenant_id=row.tenant_id, workflow_id=row.id, version=row.version,
                workflow=defn.to_json(workflow_message(row)), created_by=caller.user_id))
            return row
        return workflow_message(await self.db.write(apply))

    async def DeleteWorkflow(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = workflows.get(session, caller.tenant_id, request.workflow_id, lock=True)
            scoped = (ExecutionRow.tenant_id == caller.tenant_id,
                      ExecutionRow.workflow_id == row.id)
            live = session.exec(select(func.count()).select_from(ExecutionRow).where(
                *scoped, ExecutionRow.status.in_(list(LIVE)))).one()
            if live:
                raise FailedPrecondition(
                    f"workflow {row.slug!r} has {live} queued or running executions",
                    reason="WORKFLOW_HAS_RUNNING_EXECUTIONS", details={"workflow": row.slug})
            total = session.exec(select(func.count()).select_from(ExecutionRow)
                                 .where(*scoped)).one()
            for schedule in session.exec(select(ScheduleRow).where(
                    ScheduleRow.workflow_id == row.id)).all():
                schedules.delete(session, schedule)
            if total:
                row.status = W + "ARCHIVED"
                workflows.save(session, row)
                return f"workflow {row.slug!r} archived (it has executions)"
            for version in session.exec(select(WorkflowVersionRow).where(
                    WorkflowVersionRow.workflow_id == row.id)).all():
                versions.delete(session, version)
            workflows.delete(session, row)
            return f"workflow {row.slug!r} deleted"
        ids = await self.db.read(lambda s: [r.id for r in s.exec(
            select(ScheduleRow).join(WorkflowRow, WorkflowRow.id == ScheduleRow.workflow_id)
            .where(ScheduleRow.tenant_id == caller.tenant_id,
                   (WorkflowRow.id == request.workflow_id) | (WorkflowRow.slug ==
                                                              request.workflow_id))).all()])
        message = await self.db.write(remove)
        for schedule_id in ids:
            await self.engine.remove_schedule(schedule_id)
        return common_pb2.DeleteResponse(success=True, message=message)

    async def _transition(self, context, key: str, allowed: set[str], target: str, action: str):
        caller = require_caller(context)

        def apply(session: Session) -> WorkflowRow:
            row = workflows.get(session, caller.tenant_id, key, lock=True)
            if row.status not in allowed:
                raise FailedPrecondition(
                    f"cannot {action} workflow {row.slug!r} in status {row.status}",
                    reason="INVALID_WORKFLOW_TRANSITION",
                    details={"workflow": row.slug, "status": row.status, "action": action})
            row.status = target
            return workflows.save(session, row)
        return workflow_message(await self.db.write(apply))

    async def ActivateWorkflow(self, request, context):
        return await self._transition(context, request.workflow_id,
                                      {W + "DRAFT", W + "INACTIVE"}, W + "ACTIVE", "activate")

    async def DeactivateWorkflow(self, request, context):
        return await self._transition(context, request.workflow_id, {W + "ACTIVE"},
                                      W + "INACTIVE", "deactivate")

    async def ListWorkflowVersions(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)

        def read(session: Session):
            row = workflows.get(session, caller.tenant_id, request.workflow_id)
            rows = session.exec(select(WorkflowVersionRow).where(
                WorkflowVersionRow.workflow_id == row.id).order_by(
                WorkflowVersionRow.version.desc()).offset(page.offset).limit(page.page_size)).all()
            return Page(list(rows), row.version, page.page, page.page_size)
        result = await self.db.read(read)
        return pb.ListWorkflowVersionsResponse(**result.fields(_version_message))

    async def GetWorkflowVersion(self, request, context):
        caller = require_caller(context)

        def read(session: Session):
            row = workflows.get(session, caller.tenant_id, request.workflow_id)
            version = session.exec(select(WorkflowVersionRow).where(
                WorkflowVersionRow.workflow_id == row.id,
                WorkflowVersionRow.version == request.version)).first()
            if version is None:
                raise NotFound(f"workflow {row.slug!r} has no version {request.version}",
                               reason="VERSION_NOT_FOUND",
                               details={"workflow": row.slug, "version": request.version})
            return version
        return _version_message(await self.db.read(read))

    async def GetWorkflowStats(self, request, context):
        caller = require_caller(context)

        def stats(session: Session) -> pb.WorkflowStats:
            row = workflows.get(session, caller.tenant_id, request.workflow_id)
            scoped = (ExecutionRow.tenant_id == caller.tenant_id,
                      ExecutionRow.workflow_id == row.id)
            by_status = dict(session.exec(select(ExecutionRow.status, func.count())
                                          .where(*scoped).group_by(ExecutionRow.status)).all())
            ended = session.exec(select(ExecutionRow.started_at, ExecutionRow.ended_at).where(
                *scoped, ExecutionRow.ended_at.is_not(None),
                ExecutionRow.started_at.is_not(None))).all()
            last = session.exec(select(func.max(ExecutionRow.created_at)).where(*scoped)).one()
            durations = [(aware(e) - aware(s)).total_seconds() * 1000 for s, e in ended]
            out = pb.WorkflowStats(
                workflow_id=row.id, total_executions=sum(by_status.values()),
                successful_executions=by_status.get(E + "COMPLETED", 0),
                failed_executions=by_status.get(E + "FAILED", 0),
                cancelled_executions=by_status.get(E + "CANCELLED", 0),
                running_executions=sum(by_status.get(s, 0) for s in LIVE),
                average_duration_ms=sum(durations) / len(durations) if durations else 0.0)
            if last:
                out.last_executed_at.FromDatetime(aware(last))
            return out
        return await self.db.read(stats)

    async def CreateTemplateFromWorkflow(self, request, context):
        from agentmesh.templates.v1 import templates_pb2, templates_pb2_grpc

        caller = require_caller(context)
        row = await self.db.read(lambda s: workflows.get(s, caller.tenant_id, request.workflow_id))
        content = defn.to_json(workflow_message(row))
        for key in ("id", "tenant_id", "version", "status", "created_by", "created_at",
                    "updated_at"):
            content.pop(key, None)
        template = templates_pb2.Template(
            name=request.name or row.slug, description=request.description or row.description,
            kind=templates_pb2.TEMPLATE_KIND_WORKFLOW, tags=list(request.tags))
        template.content.update(content)
        stub = self.runtime.peers.stub(templates_pb2_grpc.TemplateServiceStub)
        try:
            made = await stub.CreateTemplate(templates_pb2.CreateTemplateRequest(template=template))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                from mesh.runtime.errors import AlreadyExists
                raise AlreadyExists(exc.details(), reason="TEMPLATE_ALREADY_EXISTS") from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                # The caller's name or tags, which the templates service judges: a 400, not 503.
                from mesh.runtime.errors import InvalidArgument
                raise InvalidArgument(exc.details(), reason="INVALID_TEMPLATE") from None
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                from mesh.runtime.errors import Unimplemented
                raise Unimplemented("the templates service cannot create templates yet",
                                    reason="TEMPLATES_UNIMPLEMENTED") from None
            raise Unavailable(f"the templates service cannot create templates now "
                              f"({exc.code().name}): {exc.details()}",
                              reason="TEMPLATES_UNAVAILABLE") from None
        out = pb.CreateTemplateFromWorkflowResponse(
            template_id=made.id, name=made.name, workflow_id=row.id, workflow_version=row.version)
        out.created_at.CopyFrom(made.created_at)
        return out

    # ---- executions ---------------------------------------------------------------------------
    async def _start(self, caller: Caller, key: str, inputs: dict, priority: str,
                     idempotency_key: str) -> ExecutionRow:
        validated: dict | None = None

        def create(session: Session) -> tuple[ExecutionRow, bool]:
            workflow = workflows.get(session, caller.tenant_id, key)
            if idempotency_key:
                existing = session.exec(select(ExecutionRow).where(
                    ExecutionRow.tenant_id == caller.tenant_id,
                    ExecutionRow.idempotency_key == idempotency_key)).first()
                if existing is not None:
                    return existing, False  # already enqueued
            if workflow.status != W + "ACTIVE":
                raise FailedPrecondition(
                    f"workflow {workflow.slug!r} is {workflow.status}; activate it first",
                    reason="WORKFLOW_NOT_ACTIVE",
                    details={"workflow": workflow.slug, "status": workflow.status})
            _check_inputs(workflow, inputs, validated)
            limits.check_execution_quota(session, caller.tenant_id, self.runtime.settings)
            row = new_execution(workflow, inputs, priority, caller.user_id,
                                idempotency_key=idempotency_key, api_key_id=caller.api_key_id,
                                scopes=sorted(caller.scopes))
            row.dbos_workflow_id = row.id
            executions.add(session, row)
            return row, workflow.definition.get("timeout")
        try:
            row, timeout = await self.db.write(create)
        except _ValidateInSandbox as needed:  # nothing was written; validate, then again
            _refuse_inputs(await schemas.instance_errors_async(
                needed.schema, inputs, "inputs", "input_schema", tenant=caller.tenant_id))
            validated = needed.schema
            row, timeout = await self.db.write(create)
        if timeout is not False:
            seconds = float(timeout.rstrip("s")) if timeout else None
            await self.engine.enqueue(row.id, row.tenant_id, row.priority, seconds)
        return row

    async def ExecuteWorkflow(self, request, context):
        caller = require_caller(context)
        row = await self._start(caller, request.workflow_id,
                                json_format.MessageToDict(request.inputs),
                                _priority(request.priority), request.idempotency_key)
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
        try:
            row = await self._start(caller, request.workflow_type, {
                "requirements": request.requirements,
                "configuration": json_format.MessageToDict(request.configuration)},
                priority, request.idempotency_key)
        except NotFound:
            raise InvalidArgument(
                f"Unknown workflow type: {request.workflow_type}; see /api/v1/workflow-types",
                reason="UNKNOWN_WORKFLOW_TYPE",
                details={"workflow_type": request.workflow_type},
                field_violations=[("workflow_type", "unknown workflow type")]) from None
        out = pb.SubmitWorkflowResponse(session_id=row.id, status=seed_status(row.status),
                                        message="Workflow queued for execution")
        out.created_at.FromDatetime(aware(row.created_at))
        estimate = await self._estimate(row.workflow_id)
        if estimate is not None:
            out.estimated_completion.FromDatetime(aware(row.created_at) + estimate)
        return out

    async def _estimate(self, workflow_id: str) -> timedelta | None:
        def read(session: Session):
            return session.exec(select(ExecutionRow.started_at, ExecutionRow.ended_at).where(
                ExecutionRow.workflow_id == workflow_id,
                ExecutionRow.status == E + "COMPLETED").order_by(
                ExecutionRow.ended_at.desc()).limit(20)).all()
        recent = [(aware(e) - aware(s)) for s, e in await self.db.read(read) if s and e]
        return sum(recent, timedelta()) / len(recent) if recent else None

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
        running = ("EXECUTION_STATUS_QUEUED", "EXECUTION_STATUS_RUNNING",
                   "EXECUTION_STATUS_WAITING_APPROVAL")

        def count(session: Session) -> tuple[int, int]:
            scoped = select(func.count()).select_from(ExecutionRow).where(
                ExecutionRow.tenant_id == caller.tenant_id)
            recent = scoped.where(ExecutionRow.created_at >= since) if since else scoped
            return (session.exec(recent).one(),
                    session.exec(scoped.where(ExecutionRow.status.in_(running))).one())

        total, active = await self.db.read(count)
        return pb.ExecutionCounts(since=total, running=active)

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
            s, caller.tenant_id, page, filters={"status": W + "ACTIVE"}, search=request.search))

        def as_type(row: WorkflowRow) -> pb.WorkflowType:
            out = pb.WorkflowType(workflow_type=row.slug, workflow_id=row.id, name=row.name,
                                  description=row.description, version=row.version)
            if row.definition.get("input_schema"):
                out.input_schema.update(row.definition["input_schema"])
            return out
        reply = pb.ListWorkflowTypesResponse(**result.fields(as_type))
        reply.workflow_types.extend(item.workflow_type for item in reply.items)
        return reply

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
        scopes = sorted(common_scopes(frozenset(row.scopes), caller.scopes))
        await self.engine.retry(row.id, scopes)
        return execution_message(await self._execution(caller, row.id))

    async def _decide(self, request, context, approved: bool):
        caller = require_caller(context)
        row = await self._execution(caller, request.execution_id)
        if not request.step_id:
            raise invalid_field("step_id", "is required")
        version = await self.db.read(lambda s: s.exec(select(WorkflowVersionRow).where(
            WorkflowVersionRow.workflow_id == row.workflow_id,
            WorkflowVersionRow.version == row.workflow_version)).first())
        steps = {s.id: s for s in defn.workflow_from_json(version.workflow).steps}
        step = steps.get(request.step_id)
        if step is None or step.type != pb.STEP_TYPE_APPROVAL:
            raise NotFound(f"execution {row.id} has no approval step {request.step_id!r}",
                           reason="STEP_NOT_FOUND", details={"step": request.step_id})
        approvers = list(step.approval.approvers)
        if approvers and not await self._is_approver(caller, approvers):
            raise PermissionDenied(f"{caller.user_id} is not an approver of step "
                                   f"{request.step_id!r}", reason="NOT_AN_APPROVER",
                                   details={"step": request.step_id})
        decision = {"user_id": caller.user_id, "approved": approved,
                    "comment": request.comment, "decided_at": _ts(utcnow())}

        def record(state: dict, execution: ExecutionRow):
            if state["status"] != "STEP_STATUS_WAITING_APPROVAL":
                return False
            state["decisions"] = [*state.get("decisions", []), decision]
            return True
        if not await self.engine.step_state(row.id, request.step_id, record):
            raise FailedPrecondition(f"step {request.step_id!r} is not waiting for approval",
                                     reason="STEP_NOT_WAITING", details={"step": request.step_id})
        await self.engine.send_decision(row.id, request.step_id, decision)
        return execution_message(await self._execution(caller, row.id))

    async def _is_approver(self, caller: Caller, approvers: list[str]) -> bool:
        """Whether an approval step's `approvers` name the caller: by user id, e-mail address
        (any case) or `role:<role>` (`role:admin`, `role:user`, ...). The address and role come
        from the identity service, asked as the caller, only when an approver needs them."""
        if caller.user_id in approvers:
            return True
        wanted = {a.strip().lower() for a in approvers}
        if not any("@" in a or a.startswith("role:") for a in wanted):
            return False
        try:
            me = await self.runtime.peers.stub(identity_pb2_grpc.IdentityServiceStub).GetMe(
                identity_pb2.GetMeRequest())
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED):
                return False
            raise Unavailable("cannot tell whether you are an approver: the identity service "
                              "does not answer; retry", reason="IDENTITY_UNAVAILABLE") from None
        role = identity_pb2.Role.Name(me.role).lower()  # role_admin
        return bool(wanted & {me.email.lower(), f"role:{role.removeprefix('role_')}",
                              f"role:{role}"})

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
            changed = engine.changed(row.id)
            try:
                await asyncio.wait_for(changed.wait(), 1.0)
            except TimeoutError:
                pass
            row = await self._execution(caller, row.id)

    # ---- schedules ----------------------------------------------------------------------------
    async def CreateSchedule(self, request, context):
        caller = require_caller(context)
        from croniter import croniter

        spec = request.schedule
        if not spec.cron or len(spec.cron.split()) not in (5, 6) or \
                not croniter.is_valid(spec.cron, second_at_beginning=True):
            raise invalid_field("cron", "is not a cron expression of 5 fields (or 6, seconds "
                                "first)")
        timezone = spec.timezone or "UTC"
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(timezone)
        except Exception:  # noqa: BLE001
            raise invalid_field("timezone", f"{timezone!r} is not an IANA time zone") from None
        await asyncio.to_thread(limits.check_cron_interval, spec.cron, timezone,
                                self.runtime.settings)

        # Its executions will act as the caller: who may not run the workflow may not have it run.
        needed = _scope_of("ExecuteWorkflow")
        if not caller.has_scope(needed):
            raise PermissionDenied(f"a schedule runs the workflow as its creator, which needs "
                                   f"scope {needed}", reason="SCOPE_NOT_HELD",
                                   details={"required_scope": needed})

        def create(session: Session) -> ScheduleRow:
            workflow = workflows.get(session, caller.tenant_id, request.workflow_id)
            limits.check_schedule_quota(session, caller.tenant_id, self.runtime.settings)
            row = ScheduleRow(tenant_id=caller.tenant_id, workflow_id=workflow.id,
                              cron=spec.cron, timezone=timezone,
                              inputs=json_format.MessageToDict(spec.inputs),
                              priority=_priority(spec.priority), created_by=caller.user_id,
                              api_key_id=caller.api_key_id, scopes=sorted(caller.scopes))
            return schedules.add(session, row)
        row = await self.db.write(create)
        try:
            await self.engine.add_schedule(row)
        except Exception as exc:
            await self.db.write(lambda s: schedules.delete(s, s.get(ScheduleRow, row.id)))
            raise invalid_field("cron", str(exc)) from None
        return schedule_message(row)

    async def ListSchedules(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)

        def read(session: Session):
            workflow = workflows.get(session, caller.tenant_id, request.workflow_id)
            return schedules.list(session, caller.tenant_id, page,
                                  filters={"workflow_id": workflow.id})
        result = await self.db.read(read)
        return pb.ListSchedulesResponse(**result.fields(schedule_message))

    async def DeleteSchedule(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            workflow = workflows.get(session, caller.tenant_id, request.workflow_id)
            row = schedules.get(session, caller.tenant_id, request.schedule_id)
            if row.workflow_id != workflow.id:
                raise schedules.not_found(request.schedule_id)
            schedules.delete(session, row)
            return row.id
        schedule_id = await self.db.write(remove)
        await self.engine.remove_schedule(schedule_id)
        return common_pb2.DeleteResponse(success=True, message=f"schedule {schedule_id} deleted")

    async def AggregateExecutions(self, request, context):
        from mesh.workflows.aggregates import aggregate_executions

        caller = require_caller(context)
        return await self.db.read(lambda s: aggregate_executions(s, caller.tenant_id, request))


def _version_message(row: WorkflowVersionRow) -> pb.WorkflowVersion:
    out = pb.WorkflowVersion(workflow_id=row.workflow_id, version=row.version,
                             workflow=defn.workflow_from_json(row.workflow),
                             created_by=row.created_by)
    out.created_at.FromDatetime(aware(row.created_at))
    return out


async def _on_start(runtime: Runtime) -> None:
    from mesh.workflows.engine import Engine

    await Engine(runtime).start()


async def _on_stop(runtime: Runtime) -> None:
    from mesh.workflows import engine

    if engine.ENGINE is not None:
        await engine.ENGINE.stop()


DEFINITION = ServiceDefinition("workflows", servicers=[WorkflowService],
                               tables=[WorkflowRow, WorkflowVersionRow, ExecutionRow, ScheduleRow,
                                       ExecutorRow],
                               on_start=_on_start, on_stop=_on_stop)
