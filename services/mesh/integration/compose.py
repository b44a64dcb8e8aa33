"""Operations that compose other services' RPCs, as the caller: an agent from a template, an
agent and a workflow deployed together, and batches of creates. Each is all or nothing where it
says so: what was done before a failure is undone (compensations, last first), and the original
error is the answer."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import field_mask_pb2, json_format
from google.protobuf.message import Message

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.integration.v1 import integration_pb2 as pb
from agentmesh.templates.v1 import templates_pb2, templates_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from mesh.integration import calls
from mesh.runtime import errors
from mesh.runtime.context import Caller
from mesh.runtime.convert import plain
from mesh.runtime.errors import FailedPrecondition, invalid_field
from mesh.runtime.tables import utcnow

if TYPE_CHECKING:
    from mesh.integration.state import IntegrationState

MAX_BATCH = 100
# Agents are deployed from ACTIVE: a draft or inactive agent is activated on the way.
_ACTIVATE_FIRST = (agents_pb2.AGENT_STATUS_DRAFT, agents_pb2.AGENT_STATUS_INACTIVE)
_AGENT_PLACEHOLDERS = ("{{agent}}", "{{ agent }}")


def _request(message_class: type[Message], method: str, **fields: Any) -> Message:
    """`<method>Request(**fields)` of the proto module that defines `message_class`."""
    return getattr(sys.modules[message_class.__module__], f"{method}Request")(**fields)


def _status(enum, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix)


# ---- agent from template ----------------------------------------------------------------------
async def agent_from_template(state: "IntegrationState", caller: Caller,
                              request: pb.CreateAgentFromTemplateRequest
                              ) -> pb.CreateAgentFromTemplateResponse:
    if not request.template_id:
        raise invalid_field("template_id", "is required")
    if not request.name:
        raise invalid_field("name", "is required")
    if request.template_version < 0:
        raise invalid_field("template_version", "must be 0 (latest) or a version")
    templates = state.peers.stub(templates_pb2_grpc.TemplateServiceStub)
    template = await calls.call("templates", templates.GetTemplate,
                                templates_pb2.GetTemplateRequest(template_id=request.template_id))
    if template.kind != templates_pb2.TEMPLATE_KIND_AGENT:
        raise FailedPrecondition(f"template {template.name!r} is not an agent template",
                                 reason="NOT_AN_AGENT_TEMPLATE",
                                 details={"kind": templates_pb2.TemplateKind.Name(template.kind)})
    given = calls.struct_value(request, "parameters") or {}
    if "name" in {p.name for p in template.parameters} and "name" not in given:
        given["name"] = request.name
    rendered = await calls.call("templates", templates.InstantiateTemplate,
                                templates_pb2.InstantiateTemplateRequest(
                                    template_id=template.id, version=request.template_version,
                                    parameters=calls.struct(given)))
    body = plain(json_format.MessageToDict(rendered.result))
    body["name"] = request.name
    agent = calls.parse(body, agents_pb2.Agent, "template content")
    agents = state.peers.stub(agents_pb2_grpc.AgentServiceStub)
    created = await calls.call("agents", agents.CreateAgent,
                               agents_pb2.CreateAgentRequest(agent=agent))
    if request.deploy:
        try:
            if created.status in _ACTIVATE_FIRST:
                await calls.call("agents", agents.ActivateAgent,
                                 agents_pb2.ActivateAgentRequest(agent_id=created.id))
            created = await calls.call("agents", agents.DeployAgent, agents_pb2.DeployAgentRequest(
                agent_id=created.id, environment=request.environment or "production"))
        except errors.DomainError:
            await calls.quietly(agents.DeleteAgent(
                agents_pb2.DeleteAgentRequest(agent_id=created.id)))
            raise
        await state.events.publish(caller.tenant_id, "agent.deployed", {
            "agent_id": created.id, "name": created.name,
            "environment": created.environment, "template_id": template.id})
    return pb.CreateAgentFromTemplateResponse(
        agent_id=created.id, name=created.name, template_id=template.id,
        template_version=rendered.version,
        status=_status(agents_pb2.AgentStatus, created.status, "AGENT_STATUS_"),
        deployed=request.deploy, created_at=created.created_at)


# ---- agent + workflow -------------------------------------------------------------------------
def _bodies(request: pb.DeployAgentWorkflowRequest) -> tuple[Any, Any]:
    """The agent and workflow bodies (None: an existing one by id), checked before anything
    changes."""
    agent_body = calls.struct_value(request, "agent")
    workflow_body = calls.struct_value(request, "workflow")
    if bool(request.agent_id) == (agent_body is not None):
        raise invalid_field("agent_id", "give either agent_id (an existing agent) or agent "
                            "(a body that creates or updates one)")
    if bool(request.workflow_id) == (workflow_body is not None):
        raise invalid_field("workflow_id", "give either workflow_id (an existing workflow) "
                            "or workflow (a body)")
    agent = calls.parse(agent_body, agents_pb2.Agent, "agent") if agent_body is not None \
        else None
    if agent is not None and not agent.name:
        raise invalid_field("agent.name", "is required")
    workflow = None
    if workflow_body is not None:
        workflow = calls.parse(workflow_body, workflows_pb2.Workflow, "workflow")
        if not workflow.name:
            raise invalid_field("workflow.name", "is required")
        if not workflow.steps:
            raise invalid_field("workflow.steps", "at least one step")
    return agent, workflow


async def _upsert(service: str, stub, noun: str, key: str, message: Message,
                  undo: list[Callable]) -> tuple[Message, bool]:
    """The resource named `key` updated with `message` (the fields it sets), or created when
    there is none; the compensation that undoes it goes on `undo`. (resource, created)."""
    cls = type(message)
    name = cls.__name__
    before = None
    if key:
        try:
            before = await getattr(stub, f"Get{name}")(
                _request(cls, f"Get{name}", **{f"{noun}_id": key}))
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise errors.from_peer(exc, service) from None
    if before is None:
        made = await calls.call(service, getattr(stub, f"Create{name}"),
                                _request(cls, f"Create{name}", **{noun: message}))
        undo.append(lambda: getattr(stub, f"Delete{name}")(
            _request(cls, f"Delete{name}", **{f"{noun}_id": made.id})))
        return made, True
    paths = [f.name for f, _ in message.ListFields()]

    def update(target: Message) -> Any:
        return getattr(stub, f"Update{name}")(_request(
            cls, f"Update{name}", **{f"{noun}_id": before.id, noun: target,
                                      "update_mask": field_mask_pb2.FieldMask(paths=paths)}))

    updated = await calls.call(service, update, message)
    undo.append(lambda: update(before))
    return updated, False


async def deploy_agent_workflow(state: "IntegrationState", caller: Caller,
                                request: pb.DeployAgentWorkflowRequest
                                ) -> pb.DeployAgentWorkflowResponse:
    """The agent (existing, created or updated) deployed and the workflow (likewise; `{{agent}}`
    in a step names the agent) active, or nothing changed."""
    agent_msg, workflow_msg = _bodies(request)
    environment = request.environment or "production"
    extra = calls.struct_value(request, "config") or {}
    agents = state.peers.stub(agents_pb2_grpc.AgentServiceStub)
    flows = state.peers.stub(workflows_pb2_grpc.WorkflowServiceStub)
    undo: list[Callable] = []  # compensations, run last first
    try:
        # 1. the agent: existing, created or updated
        if agent_msg is None:
            agent = await calls.call("agents", agents.GetAgent,
                                     agents_pb2.GetAgentRequest(agent_id=request.agent_id))
            agent_created = False
        else:
            if extra:
                merged = plain(json_format.MessageToDict(agent_msg.config))
                merged.update(extra)
                agent_msg.config.Clear()
                agent_msg.config.update(merged)
            agent, agent_created = await _upsert("agents", agents, "agent", agent_msg.name,
                                                 agent_msg, undo)
        # 2. the workflow (validated by the workflows service on create/update)
        if workflow_msg is None:
            workflow = await calls.call("workflows", flows.GetWorkflow,
                                        workflows_pb2.GetWorkflowRequest(
                                            workflow_id=request.workflow_id))
            workflow_created = False
        else:
            for step in workflow_msg.steps:
                if step.HasField("agent") and step.agent.agent_id in _AGENT_PLACEHOLDERS:
                    step.agent.agent_id = agent.id
            workflow, workflow_created = await _upsert("workflows", flows, "workflow",
                                                       workflow_msg.slug, workflow_msg, undo)
        # 3. deploy the agent, 4. activate the workflow
        was_deployed = agent.status == agents_pb2.AGENT_STATUS_DEPLOYED
        if agent.status in _ACTIVATE_FIRST:
            agent = await calls.call("agents", agents.ActivateAgent,
                                     agents_pb2.ActivateAgentRequest(agent_id=agent.id))
            if not agent_created:
                undo.append(lambda a=agent: agents.DeactivateAgent(
                    agents_pb2.DeactivateAgentRequest(agent_id=a.id)))
        agent = await calls.call("agents", agents.DeployAgent, agents_pb2.DeployAgentRequest(
            agent_id=agent.id, environment=environment))
        if not was_deployed:
            undo.append(lambda a=agent: agents.UndeployAgent(
                agents_pb2.UndeployAgentRequest(agent_id=a.id)))
        if workflow.status != workflows_pb2.WORKFLOW_STATUS_ACTIVE:
            workflow = await calls.call("workflows", flows.ActivateWorkflow,
                                        workflows_pb2.ActivateWorkflowRequest(
                                            workflow_id=workflow.id))
    except (errors.DomainError, grpc.aio.AioRpcError):
        for compensate in reversed(undo):
            await calls.quietly(compensate())
        raise
    now = utcnow()
    await state.events.publish(caller.tenant_id, "agent.deployed", {
        "agent_id": agent.id, "name": agent.name, "environment": environment,
        "workflow_id": workflow.id})
    await state.events.publish(caller.tenant_id, "workflow.activated", {
        "workflow_id": workflow.id, "slug": workflow.slug, "agent_id": agent.id})
    return pb.DeployAgentWorkflowResponse(
        agent_id=agent.id, workflow_id=workflow.id, environment=environment,
        agent_status=_status(agents_pb2.AgentStatus, agent.status, "AGENT_STATUS_"),
        workflow_status=_status(workflows_pb2.WorkflowStatus, workflow.status,
                                "WORKFLOW_STATUS_"),
        deployed_at=now, agent_created=agent_created, workflow_created=workflow_created,
        message=f"agent {agent.name!r} deployed to {environment} with workflow "
                f"{workflow.slug!r} active")


# ---- batches ----------------------------------------------------------------------------------
def _parse_items(field: str, items: list, cls: type[Message], noun: str,
                 results: list[pb.BatchItemResult]) -> list[Message | None]:
    """Each item parsed and checked (None where it failed, its result says why); a name (a
    workflow's slug, when given) twice in the batch is a failure of the second."""
    parsed: list[Message | None] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        data = plain(json_format.MessageToDict(item))
        result = pb.BatchItemResult(index=i, name=str(data.get("name") or "")[:200])
        try:
            message = calls.parse(data, cls, f"{field}[{i}]")
            if not message.name:
                raise invalid_field(f"{field}[{i}].name", "is required")
            key = message.slug if noun == "workflow" and message.slug else message.name
            if key in seen:
                raise invalid_field(f"{field}[{i}].name", f"{key!r} appears twice in the batch")
            seen.add(key)
            parsed.append(message)
        except errors.DomainError as exc:
            result.status, result.error = "failed", calls.describe(exc)
            parsed.append(None)
        results.append(result)
    return parsed


async def batch(state: "IntegrationState", field: str, items: list, atomic: bool,
                cls: type[Message], stub_class: type, noun: str
                ) -> tuple[list[pb.BatchItemResult], int, int]:
    """Creates each item in its service: (results, succeeded, failed). `atomic`: nothing is
    created when an item is invalid, and a failed create deletes the ones made before it."""
    if not items:
        raise invalid_field(field, "at least one item")
    if len(items) > MAX_BATCH:
        raise invalid_field(field, f"at most {MAX_BATCH} items (got {len(items)})")
    results: list[pb.BatchItemResult] = []
    parsed = _parse_items(field, items, cls, noun, results)
    if atomic and any(m is None for m in parsed):
        for result in results:
            if result.status != "failed":
                result.status = "not_attempted"
        return results, 0, sum(1 for r in results if r.status == "failed")
    stub = state.peers.stub(stub_class)
    name = cls.__name__
    create, delete = getattr(stub, f"Create{name}"), getattr(stub, f"Delete{name}")
    created: list[tuple[int, str]] = []
    for i, message in enumerate(parsed):
        if message is None:
            continue
        try:
            made = await calls.call(f"{noun}s", create,
                                    _request(cls, f"Create{name}", **{noun: message}))
            results[i].id, results[i].status = made.id, "created"
            created.append((i, made.id))
        except errors.DomainError as exc:
            results[i].status, results[i].error = "failed", calls.describe(exc)
            if atomic:
                for j, made_id in reversed(created):
                    if await calls.quietly(delete(
                            _request(cls, f"Delete{name}", **{f"{noun}_id": made_id}))):
                        results[j].status, results[j].id = "rolled_back", ""
                for later in results[i + 1:]:
                    later.status = "not_attempted"
                return results, 0, 1
    ok = sum(1 for r in results if r.status == "created")
    return results, ok, len(results) - ok
