"""A rendered template turned into the resource it describes, created by the owning service
over gRPC as the caller (who needs that service's write scope)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from mesh.runtime import errors
from mesh.runtime.context import Caller
from mesh.runtime.errors import InvalidArgument
from mesh.runtime.peers import Peers


@dataclass(frozen=True)
class Target:
    """Where a kind of template is created."""

    service: str
    stub: type
    method: str
    request: type[Message]
    field: str
    message: type[Message]


TARGETS: dict[str, Target] = {
    "TEMPLATE_KIND_AGENT": Target("agents", agents_pb2_grpc.AgentServiceStub, "CreateAgent",
                                  agents_pb2.CreateAgentRequest, "agent", agents_pb2.Agent),
    "TEMPLATE_KIND_WORKFLOW": Target("workflows", workflows_pb2_grpc.WorkflowServiceStub,
                                     "CreateWorkflow", workflows_pb2.CreateWorkflowRequest,
                                     "workflow", workflows_pb2.Workflow),
    "TEMPLATE_KIND_TOOL": Target("tools", tools_pb2_grpc.ToolServiceStub, "CreateTool",
                                 tools_pb2.CreateToolRequest, "tool", tools_pb2.Tool),
}


def _peer_error(error: grpc.aio.AioRpcError, service: str) -> errors.DomainError:
    if error.code() == grpc.StatusCode.UNIMPLEMENTED:
        return errors.Unimplemented(
            f"the {service} service cannot create resources yet; instantiate without create "
            "to get the rendered body", reason="TARGET_SERVICE_NOT_BUILT",
            details={"service": service})
    return errors.from_peer(error, service)


async def create(peers: Peers, caller: Caller, kind: str, body: dict[str, Any]) -> str:
    """The id of the resource made from `body` (the rendered content) by its owning service;
    the owner's refusal passes through with its code and reason."""
    target = TARGETS[kind]
    scope = f"{target.service}:write"
    if not caller.has_scope(scope):
        raise errors.PermissionDenied(f"creating from this template needs scope {scope}",
                                      reason="MISSING_SCOPE", details={"required_scope": scope})
    try:
        message = json_format.ParseDict(body, target.message())
    except json_format.ParseError as exc:
        raise InvalidArgument(f"the rendered body is not a valid {target.field}: {exc}",
                              reason="RENDERED_BODY_INVALID",
                              field_violations=[("content", str(exc))]) from None
    stub = peers.stub(target.stub)
    try:
        created = await getattr(stub, target.method)(target.request(**{target.field: message}))
    except grpc.aio.AioRpcError as exc:
        raise _peer_error(exc, target.service) from None
    return created.id
