"""Dispatch: an intent decided, then carried out. Each intent maps to one platform operation,
called over gRPC with the caller's identity after the decision allows it (docs/governance.md):

    intent                      operation                                   resource
    interact_agent              AgentService.InteractWithAgent              Agent::<agent_id>
    call_reasoning (seed 002)   AgentService.InteractWithAgent              Agent::<agent_id>
      without an agent_id       the agents service's gRPC health (heartbeat) Intent::call_reasoning
    get_agent                   AgentService.GetAgent                       Agent::<agent_id>
    execute_tool                ToolService.ExecuteTool                     Tool::<tool_id>
    start_workflow              WorkflowService.ExecuteWorkflow             Workflow::<workflow_id>

A denial is seed 002's answer (`status: "denied"`, `reason`, `governance` at the top of the
envelope); the operation's own failure comes back in its words, with the allowing decision.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.governance.v1 import governance_pb2 as pb
from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from mesh.governance import engine
from mesh.governance.decisions import Decider
from mesh.runtime import errors
from mesh.runtime.context import Caller
from mesh.runtime.errors import InvalidArgument, PermissionDenied, Unimplemented, invalid_field
from mesh.runtime.peers import Peers


@dataclass(frozen=True)
class Operation:
    rpc: str  # full gRPC path, also the contract's key for the scope it needs
    resource_type: str
    resource_key: str  # the context field naming the resource
    call: Callable[[Peers, str, dict[str, Any]], Awaitable[Message]]
    summary: Callable[[Message], str]
    # What the intent does when `context` names no target (None: the target is required).
    without_target: "Operation | None" = None


async def _interact(peers: Peers, key: str, ctx: dict[str, Any]) -> Message:
    # `agent_version` / `agent_label` pick the version that runs (default: production, else
    # latest), as a workflow's agent step names them.
    version = ctx.get("agent_version")
    request = agents_pb2.InteractWithAgentRequest(
        agent_id=key, message=str(ctx.get("message", "")), call_id=str(ctx.get("call_id", "")),
        version=int(version) if isinstance(version, (int, float)) and version > 0 else 0,
        label=str(ctx.get("agent_label") or ""))
    extra = {k: v for k, v in ctx.items()
             if k not in {"agent_id", "message", "call_id", "agent_version", "agent_label"}}
    request.context.update(extra)
    return await peers.stub(agents_pb2_grpc.AgentServiceStub).InteractWithAgent(request)


async def _get_agent(peers: Peers, key: str, ctx: dict[str, Any]) -> Message:
    return await peers.stub(agents_pb2_grpc.AgentServiceStub).GetAgent(
        agents_pb2.GetAgentRequest(agent_id=key))


async def _execute_tool(peers: Peers, key: str, ctx: dict[str, Any]) -> Message:
    request = tools_pb2.ExecuteToolRequest(tool_id=key)
    request.arguments.update(ctx.get("arguments") or {})
    return await peers.stub(tools_pb2_grpc.ToolServiceStub).ExecuteTool(request)


async def _start_workflow(peers: Peers, key: str, ctx: dict[str, Any]) -> Message:
    request = workflows_pb2.ExecuteWorkflowRequest(workflow_id=key)
    request.inputs.update(ctx.get("inputs") or {})
    return await peers.stub(workflows_pb2_grpc.WorkflowServiceStub).ExecuteWorkflow(request)


REASONING_HEALTH_NAME = "agentmesh.agents.v1.AgentService"


async def _reasoning_heartbeat(peers: Peers, key: str, ctx: dict[str, Any]) -> Message:
    """Seed 002's `call_reasoning` with no agent named: whether the reasoning path is alive,
    i.e. the agents service (where every agent's reasoning loop runs) answers its gRPC health
    check SERVING. No model is called and nothing is recorded but the decision."""
    try:
        reply = await health_pb2_grpc.HealthStub(peers.channel("agents")).Check(
            health_pb2.HealthCheckRequest(service=REASONING_HEALTH_NAME), timeout=2)
    except grpc.aio.AioRpcError as exc:
        raise errors.Unavailable(f"the reasoning service does not answer ({exc.code().name})",
                                 reason="REASONING_UNAVAILABLE") from None
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise errors.Unavailable(f"the reasoning service is {status}",
                                 reason="REASONING_UNAVAILABLE")
    return _struct({"service": "agents", "status": status})


_HEARTBEAT = Operation("/grpc.health.v1.Health/Check", "Intent", "", _reasoning_heartbeat,
                       lambda r: "Reasoning heartbeat OK")
_INTERACT = Operation("/agentmesh.agents.v1.AgentService/InteractWithAgent", "Agent", "agent_id",
                      _interact, lambda r: getattr(r, "reply", "") or "agent answered")
INTENTS: dict[str, Operation] = {
    "interact_agent": _INTERACT,
    "call_reasoning": dataclasses.replace(_INTERACT, without_target=_HEARTBEAT),
    "get_agent": Operation("/agentmesh.agents.v1.AgentService/GetAgent", "Agent", "agent_id",
                           _get_agent, lambda r: f"agent {r.name!r} found"),
    "execute_tool": Operation("/agentmesh.tools.v1.ToolService/ExecuteTool", "Tool", "tool_id",
                              _execute_tool, lambda r: "tool executed"),
    "start_workflow": Operation("/agentmesh.workflows.v1.WorkflowService/ExecuteWorkflow",
                                "Workflow", "workflow_id", _start_workflow,
                                lambda r: "workflow execution started"),
}
_BY_CODE = {grpc.StatusCode.NOT_FOUND: errors.NotFound,
            grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
            grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
            grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
            grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
            grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
            grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
            grpc.StatusCode.DEADLINE_EXCEEDED: errors.Unavailable}


@functools.cache
def _scope_of(rpc_path: str) -> str:
    from mesh import contract

    for rpc in contract.default().rpcs:
        if rpc.grpc_path == rpc_path:
            return rpc.scope
    return ""


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def _governance(decision: pb.Decision) -> pb.GovernanceDecision:
    return pb.GovernanceDecision(
        allowed=decision.allowed, reason=decision.reason,
        decision_time_ms=decision.decision_time_ms, policy_id=decision.policy_id,
        decision_id=decision.id, correlation_id=decision.correlation_id,
        matching_policies=list(decision.matching_policies))


def _governance_details(decision: pb.Decision) -> dict[str, Any]:
    return {"status": "denied" if not decision.allowed else "error",
            "governance": json_format.MessageToDict(_governance(decision),
                                                    preserving_proto_field_name=True,
                                                    always_print_fields_with_no_presence=True)}


def _recorded_context(ctx: dict[str, Any], forwarded_for: str) -> dict[str, Any]:
    """The dispatch context as the decision records it (and its webhook carries it, seed 002's
    `context`): what the client sent, with `ip_address` the address the gateway saw (the last
    entry of X-Forwarded-For)."""
    address = forwarded_for.rsplit(",", 1)[-1].strip() if forwarded_for else ""
    return {**ctx, "ip_address": address} if address else ctx


def _denial(decision: pb.Decision, reason: str) -> PermissionDenied:
    """A denied dispatch: the envelope, plus seed 002's top-level `status: "denied"`,
    `reason` and `governance` (kept in `details` too, where earlier clients read them)."""
    details = _governance_details(decision)
    return PermissionDenied(reason, reason="GOVERNANCE_DENIED", details=details,
                            top_level={"status": "denied", "reason": reason,
                                       "governance": details["governance"]})


def _target_error(exc: grpc.aio.AioRpcError, operation: Operation,
                  decision: pb.Decision) -> errors.DomainError:
    """The operation's failure, in its own words, with the (allowing) decision attached."""
    details: dict[str, Any] = {"operation": operation.rpc, **_governance_details(decision)}
    envelope = errors.peer_envelope(exc)
    message = envelope.get("message") or exc.details() or exc.code().name
    reason = (envelope.get("details") or {}).get("reason", "")
    if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
        return Unimplemented(f"{operation.rpc} is not available in this deployment yet",
                             reason="OPERATION_NOT_IMPLEMENTED", details=details)
    cls = _BY_CODE.get(exc.code(), errors.Internal)
    return cls(message, reason=reason, details=details)


async def dispatch(peers: Peers, decider: Decider, caller: Caller, request: pb.DispatchRequest,
                   forwarded_for: str) -> pb.DispatchResponse:
    """Decides the intent (recorded, with the caller's address from `forwarded_for`) and, when
    allowed, calls its operation as the caller."""
    if not request.intent:
        raise invalid_field("intent", "is required")
    operation = INTENTS.get(request.intent)
    if operation is None:
        raise InvalidArgument(
            f"intent: unknown intent {request.intent!r}; known: {', '.join(sorted(INTENTS))}",
            reason="UNKNOWN_INTENT", field_violations=[("intent", "unknown intent")])
    ctx = json_format.MessageToDict(request.context)
    key = str(ctx.get(operation.resource_key, "") or "")
    if not key and operation.without_target is not None:
        operation, key = operation.without_target, request.intent
    if not key:
        raise invalid_field(f"context.{operation.resource_key}",
                            f"is required for intent {request.intent!r}")
    scope = _scope_of(operation.rpc)
    scope_ok = not scope or caller.has_scope(scope)
    decision_request = engine.Request(
        principal_type="User", principal_id=caller.user_id, action="dispatch",
        resource_type=operation.resource_type, resource_id=key, arguments=ctx,
        scopes=caller.scopes, intent=request.intent)
    decision = await decider.decide(
        caller.tenant_id, decision_request, scope_ok=scope_ok,
        correlation_id=caller.correlation_id, intent=request.intent,
        context=_recorded_context(ctx, forwarded_for))
    if not decision.allowed:
        reason = decision.reason if scope_ok else \
            f"missing scope {scope} for intent {request.intent!r}"
        raise _denial(decision, reason)
    try:
        result = await operation.call(peers, key, ctx)
    except grpc.aio.AioRpcError as exc:
        raise _target_error(exc, operation, decision) from None
    response = pb.DispatchResponse(
        status="success", message=operation.summary(result), reason=decision.reason,
        correlation_id=caller.correlation_id, governance=_governance(decision),
        operation=operation.rpc.lstrip("/"))
    response.timestamp.GetCurrentTime()
    response.result.update(json_format.MessageToDict(result, preserving_proto_field_name=True))
    return response
