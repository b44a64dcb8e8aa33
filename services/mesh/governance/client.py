"""What other services call before acting: the agent runtime before every tool and model call,
workflows before each step. Each helper is one internal gRPC call to governance
(`GovernanceService.Decide` / `CheckBudget`) with the identity and correlation id of the call
being served passed on by `mesh.runtime.peers`; the decision is made and recorded there.

    decision = await governance.check_tool_call(runtime, agent="triage", tool="search",
                                                arguments={"query": "..."})
    if not decision.allowed:
        ...  # record the denial in the call, do not run the tool

A governance that cannot be reached raises `Unavailable` (the caller fails closed: an
unverifiable tool call is not made).
"""

from __future__ import annotations

from typing import Any

import grpc

from agentmesh.governance.v1 import governance_pb2 as pb
from agentmesh.governance.v1 import governance_pb2_grpc as pb_grpc
from mesh.runtime.errors import Unavailable


def _stub(runtime) -> pb_grpc.GovernanceServiceStub:
    return runtime.peers.stub(pb_grpc.GovernanceServiceStub)


async def decide(runtime, *, action: str, resource_type: str, resource_id: str,
                 principal_type: str = "", principal_id: str = "",
                 arguments: dict[str, Any] | None = None, intent: str = "") -> pb.Decision:
    request = pb.DecisionRequest(principal_type=principal_type, principal_id=principal_id,
                                 action=action, resource_type=resource_type,
                                 resource_id=resource_id)
    request.arguments.update(arguments or {})
    try:
        return await _stub(runtime).Decide(pb.DecideRequest(request=request, intent=intent))
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise Unavailable("governance cannot be reached to decide this call",
                              reason="GOVERNANCE_UNAVAILABLE") from None
        raise


async def check_tool_call(runtime, *, agent: str, tool: str,
                          arguments: dict[str, Any] | None = None) -> pb.Decision:
    return await decide(runtime, principal_type="Agent", principal_id=agent, action="call_tool",
                        resource_type="Tool", resource_id=tool, arguments=arguments)


async def check_model_call(runtime, *, agent: str, model: str,
                           arguments: dict[str, Any] | None = None) -> pb.Decision:
    return await decide(runtime, principal_type="Agent", principal_id=agent, action="call_model",
                        resource_type="Model", resource_id=model, arguments=arguments)


async def check_workflow_step(runtime, *, workflow: str, step: str = "",
                              arguments: dict[str, Any] | None = None) -> pb.Decision:
    return await decide(runtime, action="execute_workflow", resource_type="Workflow",
                        resource_id=workflow, arguments={"step": step, **(arguments or {})})


async def check_budget(runtime, *, agent: str, model: str, estimated_tokens: int,
                       max_tokens_per_call: int = 0, max_cost_per_day: float = 0.0,
                       tenant_max_cost_per_day: float = 0.0) -> pb.BudgetCheck:
    return await _stub(runtime).CheckBudget(pb.CheckBudgetRequest(
        agent_id=agent, model=model, estimated_tokens=estimated_tokens,
        max_tokens_per_call=max_tokens_per_call, max_cost_per_day=max_cost_per_day,
        tenant_max_cost_per_day=tenant_max_cost_per_day))


async def record_usage(runtime, *, agent: str, tokens: int, cost_usd: float) -> pb.BudgetUsage:
    return await _stub(runtime).RecordUsage(pb.RecordUsageRequest(
        agent_id=agent, tokens=tokens, cost_usd=cost_usd))
