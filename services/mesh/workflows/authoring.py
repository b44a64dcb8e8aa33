"""Saving workflows: what a definition must be to be saved (its step graph, schemas, the
limits, the agents and tools it names, no cycle through sub-workflows), each save an immutable
version, and the life of a workflow (draft, active, inactive, archived), its deletion, and its
copy as a template.
"""

from __future__ import annotations

import grpc
from google.protobuf import json_format
from sqlmodel import Session, func, select

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.runtime import schemas
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, Unavailable,
                                 Unimplemented, invalid_field)
from mesh.runtime.peers import Peers
from mesh.runtime.settings import Settings
from mesh.workflows import definition as defn
from mesh.workflows import limits
from mesh.workflows.models import LIVE, ExecutionRow, ScheduleRow, WorkflowRow
from mesh.workflows.store import WORKFLOW_VERSIONS, schedules, workflow_message, workflows

W = "WORKFLOW_STATUS_"
# Fields of Workflow that make its definition (versioned); the rest is metadata.
_DEFINITION_FIELDS = ("steps", "input_schema", "output_schema", "outputs", "timeout")
WRITABLE = ("name", "slug", "description", "labels", *_DEFINITION_FIELDS)


# ---- what may be saved -------------------------------------------------------------------------

def _check_name(name: str) -> None:
    if not name or len(name) > 200:
        raise invalid_field("name", "is required, 1-200 characters")


async def validate(message: pb.Workflow, settings: Settings, peers: Peers) -> None:
    limits.check_step_count(message, settings)
    defn.build_graph(message)
    problems = [*schemas.problems(json_format.MessageToDict(message.input_schema),
                                  "input_schema"),
                *schemas.problems(json_format.MessageToDict(message.output_schema),
                                  "output_schema")]
    if problems:
        raise InvalidArgument("; ".join(f"{f}: {p}" for f, p in problems),
                              field_violations=problems)
    await _check_references(message, peers)


async def _check_references(message: pb.Workflow, peers: Peers) -> None:
    """Agents and tools named by steps must exist (checked over gRPC). A peer that cannot
    answer yet (UNIMPLEMENTED, not configured, unreachable) is not a client error: the
    step fails when it runs instead."""
    from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
    from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc

    problems = []
    for step in message.steps:
        if step.type == pb.STEP_TYPE_AGENT and step.agent.agent_id:
            call = lambda s=step: peers.stub(  # noqa: E731
                agents_pb2_grpc.AgentServiceStub).GetAgent(
                agents_pb2.GetAgentRequest(agent_id=s.agent.agent_id))
            what, key = "agent", step.agent.agent_id
        elif step.type == pb.STEP_TYPE_TOOL and step.tool.tool_id:
            call = lambda s=step: peers.stub(  # noqa: E731
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


def _definition(message: pb.Workflow) -> dict:
    data = defn.to_json(message)
    return {k: data[k] for k in _DEFINITION_FIELDS if k in data}


def _merge(current: pb.Workflow, body: pb.Workflow, mask: list[str]) -> pb.Workflow:
    """`current` with the fields in `mask` taken from `body`, each replaced whole."""
    merged = pb.Workflow()
    merged.CopyFrom(current)
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
    return merged


def _add_version(session: Session, row: WorkflowRow, created_by: str) -> None:
    """The row's current state (its `version` already set) as that immutable version."""
    saved = defn.to_json(workflow_message(row))
    saved.pop("version_labels", None)   # labels point at versions; no version holds them
    WORKFLOW_VERSIONS.add(session, row, created_by=created_by, number=row.version,
                          workflow=saved)


# ---- saving ------------------------------------------------------------------------------------

async def create(db: Database, settings: Settings, peers: Peers, caller: Caller,
                 workflow: pb.Workflow) -> WorkflowRow:
    message = pb.Workflow()
    message.CopyFrom(workflow)
    _check_name(message.name)
    message.slug = message.slug or defn.slugify(message.name)
    defn.check_slug(message.slug)
    await validate(message, settings, peers)
    definition = _definition(message)

    def add(session: Session) -> WorkflowRow:
        limits.refuse_cycles(session, caller.tenant_id, "", message.slug, message)
        row = WorkflowRow(tenant_id=caller.tenant_id, name=message.name, slug=message.slug,
                          description=message.description, labels=dict(message.labels),
                          definition=definition, created_by=caller.user_id)
        workflows.add(session, row)
        _add_version(session, row, caller.user_id)
        return row
    return await db.write(add)


async def update(db: Database, settings: Settings, peers: Peers, caller: Caller,
                 workflow_key: str, body: pb.Workflow, mask: list[str]) -> WorkflowRow:
    """The fields in `mask` (every writable field `body` sets, without one) saved as the
    workflow's next version."""
    unknown = [p for p in mask if p not in WRITABLE]
    if unknown:
        raise invalid_field("update_mask", f"cannot update {', '.join(unknown)}; "
                            f"updatable: {', '.join(WRITABLE)}")
    if not mask:
        mask = [f.name for f, _ in body.ListFields() if f.name in WRITABLE]
    current = await db.read(lambda s: workflows.get(s, caller.tenant_id, workflow_key))
    merged = _merge(workflow_message(current), body, mask)
    if "name" in mask:
        _check_name(merged.name)
    if "slug" in mask:
        merged.slug = merged.slug or defn.slugify(merged.name)
        defn.check_slug(merged.slug)
    await validate(merged, settings, peers)
    definition = _definition(merged)

    def apply(session: Session) -> WorkflowRow:
        row = workflows.get(session, caller.tenant_id, workflow_key, lock=True)
        if row.status == W + "ARCHIVED":
            raise FailedPrecondition(f"workflow {row.slug!r} is archived and read-only",
                                     reason="WORKFLOW_ARCHIVED", details={"workflow": row.slug})
        limits.refuse_cycles(session, caller.tenant_id, row.id, merged.slug, merged)
        row.name, row.slug, row.description = merged.name, merged.slug, merged.description
        row.labels = dict(merged.labels)
        row.definition = definition
        row.version += 1
        workflows.save(session, row)
        _add_version(session, row, caller.user_id)
        return row
    return await db.write(apply)


async def delete(db: Database, caller: Caller, workflow_key: str) -> str:
    """Deletes a workflow without executions, archives one with some (their history stays
    readable); its schedules go either way. Refused while an execution is live."""
    def remove(session: Session) -> str:
        row = workflows.get(session, caller.tenant_id, workflow_key, lock=True)
        scoped = (ExecutionRow.tenant_id == caller.tenant_id,
                  ExecutionRow.workflow_id == row.id)
        live = session.exec(select(func.count()).select_from(ExecutionRow).where(
            *scoped, ExecutionRow.status.in_(LIVE))).one()
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
        WORKFLOW_VERSIONS.delete_all(session, row)
        workflows.delete(session, row)
        return f"workflow {row.slug!r} deleted"
    return await db.write(remove)


# (statuses it may be in, the status it goes to) for each action.
TRANSITIONS = {"activate": ({W + "DRAFT", W + "INACTIVE"}, W + "ACTIVE"),
               "deactivate": ({W + "ACTIVE"}, W + "INACTIVE")}


async def transition(db: Database, caller: Caller, workflow_key: str, action: str) -> WorkflowRow:
    allowed, target = TRANSITIONS[action]

    def apply(session: Session) -> WorkflowRow:
        row = workflows.get(session, caller.tenant_id, workflow_key, lock=True)
        if row.status not in allowed:
            raise FailedPrecondition(
                f"cannot {action} workflow {row.slug!r} in status {row.status}",
                reason="INVALID_WORKFLOW_TRANSITION",
                details={"workflow": row.slug, "status": row.status, "action": action})
        row.status = target
        return workflows.save(session, row)
    return await db.write(apply)


# ---- as a template -----------------------------------------------------------------------------

async def create_template(peers: Peers, row: WorkflowRow,
                          request: pb.CreateTemplateFromWorkflowRequest):
    """The workflow's definition as a template of the templates service (which it answers)."""
    from agentmesh.templates.v1 import templates_pb2, templates_pb2_grpc

    content = defn.to_json(workflow_message(row))
    for key in ("id", "tenant_id", "version", "status", "created_by", "created_at",
                "updated_at"):
        content.pop(key, None)
    template = templates_pb2.Template(
        name=request.name or row.slug, description=request.description or row.description,
        kind=templates_pb2.TEMPLATE_KIND_WORKFLOW, tags=list(request.tags))
    template.content.update(content)
    stub = peers.stub(templates_pb2_grpc.TemplateServiceStub)
    try:
        return await stub.CreateTemplate(templates_pb2.CreateTemplateRequest(template=template))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
            raise AlreadyExists(exc.details(), reason="TEMPLATE_ALREADY_EXISTS") from None
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            # The caller's name or tags, which the templates service judges: a 400, not 503.
            raise InvalidArgument(exc.details(), reason="INVALID_TEMPLATE") from None
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise Unimplemented("the templates service cannot create templates yet",
                                reason="TEMPLATES_UNIMPLEMENTED") from None
        raise Unavailable(f"the templates service cannot create templates now "
                          f"({exc.code().name}): {exc.details()}",
                          reason="TEMPLATES_UNAVAILABLE") from None
