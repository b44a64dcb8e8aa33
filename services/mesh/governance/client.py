"""What other services call before acting: the one decision point (docs/governance.md).

Every action that acts asks governance first, with one internal gRPC call (`Decide`), made and
recorded there with its reason, the deciding policies (`name@version`) and its latency:

    who asks                      action              resource
    tools (every ExecuteTool:     call_tool           Tool::"<tool name>"
      direct, a workflow step; an agent's call is decided by the agent loop, as the agent)
    the agent loop                call_tool           Tool::"<tool name>"  (principal Agent)
    the agent loop (each model    call_model          Model::"<model name>" (principal Agent,
      request, with budgets)                            context: model, estimated tokens, usage)
    workflows (execution start,   execute_workflow    Workflow::"<workflow name>"
      and each step)
    workflows (an approval)       approve             Workflow::"<workflow name>"
    governance's own Dispatch     dispatch            Agent/Tool/Workflow/Intent

`require(...)` raises the denial as PERMISSION_DENIED (403) with reason `GOVERNANCE_DENIED` and
the decision in the envelope (`details.governance`, as a denied dispatch carries it).
`guard_model_call` decides a model request and checks the budgets (in parallel); a budget
exhausted is RESOURCE_EXHAUSTED (429) `BUDGET_EXCEEDED` with `Retry-After` at the window's end.
`record_model_usage` adds a finished request's real tokens and cost.

Without a governance service configured (AGENTMESH_PEERS lacks it), `enabled()` is false and
nothing is asked: the caller's scopes alone decide (the in-process test harnesses). A governance
that cannot be reached raises `Unavailable` (the caller fails closed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import json_format

from agentmesh.governance.v1 import governance_pb2 as pb
from agentmesh.governance.v1 import governance_pb2_grpc as pb_grpc
from mesh.runtime.errors import PermissionDenied, ResourceExhausted, Unavailable

Metadata = Sequence[tuple[str, str]] | None


def _peers(runtime):
    return getattr(runtime, "peers", runtime)


def enabled(runtime) -> bool:
    """Whether a governance service is configured to ask."""
    return "governance" in getattr(_peers(runtime), "addresses", {})


def _stub(runtime) -> pb_grpc.GovernanceServiceStub:
    return _peers(runtime).stub(pb_grpc.GovernanceServiceStub)


def _unreachable(exc: grpc.aio.AioRpcError) -> None:
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        raise Unavailable("governance cannot be reached to decide this call",
                          reason="GOVERNANCE_UNAVAILABLE") from None


async def decide(runtime, *, action: str, resource_type: str, resource_id: str,
                 principal_type: str = "", principal_id: str = "",
                 arguments: dict[str, Any] | None = None, intent: str = "",
                 metadata: Metadata = None) -> pb.Decision:
    """The recorded decision. `metadata`: the identity to decide for when the call is not made
    while serving a request (a workflow's background step); else the served call's."""
    request = pb.DecisionRequest(principal_type=principal_type, principal_id=principal_id,
                                 action=action, resource_type=resource_type,
                                 resource_id=resource_id)
    request.arguments.update(arguments or {})
    try:
        return await _stub(runtime).Decide(pb.DecideRequest(request=request, intent=intent),
                                           metadata=tuple(metadata) if metadata else None)
    except grpc.aio.AioRpcError as exc:
        _unreachable(exc)
        raise


def governance_details(decision: pb.Decision) -> dict[str, Any]:
    """The decision as an error envelope carries it (`details.governance`), seed 002's shape."""
    summary = pb.GovernanceDecision(
        allowed=decision.allowed, reason=decision.reason,
        decision_time_ms=decision.decision_time_ms, policy_id=decision.policy_id,
        decision_id=decision.id, correlation_id=decision.correlation_id,
        matching_policies=list(decision.matching_policies))
    return {"status": "denied" if not decision.allowed else "error",
            "governance": json_format.MessageToDict(summary, preserving_proto_field_name=True,
                                                    always_print_fields_with_no_presence=True)}


def denial(decision: pb.Decision, what: str) -> PermissionDenied:
    """A denied action: 403 `GOVERNANCE_DENIED` naming what was refused and why, with the
    decision (id, reason, policies as name@version) in the envelope."""
    details = governance_details(decision)
    message = f"{what} denied by governance: {decision.reason}"
    return PermissionDenied(message, reason="GOVERNANCE_DENIED", details=details,
                            top_level={"status": "denied", "reason": decision.reason,
                                       "governance": details["governance"]})


async def require(runtime, what: str, **kwargs: Any) -> pb.Decision | None:
    """Decides (when governance is configured) and raises the denial; the allowing decision."""
    if not enabled(runtime):
        return None
    decision = await decide(runtime, **kwargs)
    if not decision.allowed:
        raise denial(decision, what)
    return decision


async def check_tool_call(runtime, *, agent: str, tool: str,
                          arguments: dict[str, Any] | None = None) -> pb.Decision:
    return await decide(runtime, principal_type="Agent", principal_id=agent, action="call_tool",
                        resource_type="Tool", resource_id=tool, arguments=arguments)


async def check_model_call(runtime, *, agent: str, model: str,
                           arguments: dict[str, Any] | None = None) -> pb.Decision:
    return await decide(runtime, principal_type="Agent", principal_id=agent, action="call_model",
                        resource_type="Model", resource_id=model, arguments=arguments)


async def check_workflow_step(runtime, *, workflow: str, step: str = "",
                              arguments: dict[str, Any] | None = None,
                              metadata: Metadata = None) -> pb.Decision:
    return await decide(runtime, action="execute_workflow", resource_type="Workflow",
                        resource_id=workflow, arguments={"step": step, **(arguments or {})},
                        metadata=metadata)


async def check_budget(runtime, *, agent: str, model: str, estimated_tokens: int,
                       max_tokens_per_call: int = 0, max_cost_per_day: float = 0.0,
                       tenant_max_cost_per_day: float = 0.0,
                       api_key_id: str = "") -> pb.BudgetCheck:
    return await _stub(runtime).CheckBudget(pb.CheckBudgetRequest(
        agent_id=agent, model=model, estimated_tokens=estimated_tokens,
        max_tokens_per_call=max_tokens_per_call, max_cost_per_day=max_cost_per_day,
        tenant_max_cost_per_day=tenant_max_cost_per_day, api_key_id=api_key_id))


async def record_usage(runtime, *, agent: str, tokens: int, cost_usd: float,
                       model: str = "", api_key_id: str = "") -> pb.BudgetUsage:
    return await _stub(runtime).RecordUsage(pb.RecordUsageRequest(
        agent_id=agent, tokens=tokens, cost_usd=cost_usd, model=model, api_key_id=api_key_id))


def budget_exceeded(check: pb.BudgetCheck) -> ResourceExhausted:
    """An exhausted budget: 429 `BUDGET_EXCEEDED`, Retry-After at the end of its window."""
    retry_after = max(1, int(check.retry_after_seconds or 1))
    return ResourceExhausted(f"budget exceeded: {check.reason}", reason="BUDGET_EXCEEDED",
                             details={"retry_after": retry_after, "budget": check.budget,
                                      "window": check.window})


async def guard_model_call(runtime, *, agent: str, model: str, estimated_tokens: int,
                           api_key_id: str = "") -> pb.Decision | None:
    """Before a model request: the tenant's policies decide it (action `call_model`, with the
    model, the estimated tokens and the tenant's usage in the Cedar context) and the budgets of
    the tenant, the agent and the API key are checked, both at once. A denial raises 403
    `GOVERNANCE_DENIED`, an exhausted budget 429 `BUDGET_EXCEEDED`."""
    if not enabled(runtime):
        return None
    import asyncio

    arguments = {"model": model, "estimated_tokens": estimated_tokens}
    decided, budget = await asyncio.gather(
        check_model_call(runtime, agent=agent, model=model, arguments=arguments),
        _budget(runtime, agent, model, estimated_tokens, api_key_id))
    if not decided.allowed:
        raise denial(decided, f"model {model!r}")
    if not budget.allowed:
        raise budget_exceeded(budget)
    return decided


async def _budget(runtime, agent: str, model: str, estimated: int,
                  api_key_id: str) -> pb.BudgetCheck:
    try:
        return await check_budget(runtime, agent=agent, model=model, estimated_tokens=estimated,
                                  api_key_id=api_key_id)
    except grpc.aio.AioRpcError as exc:
        _unreachable(exc)
        raise


async def record_model_usage(runtime, *, agent: str, model: str, tokens: int, cost_usd: float,
                             api_key_id: str = "") -> None:
    """After a model request: its real tokens and cost, counted against every budget."""
    if not enabled(runtime) or (tokens <= 0 and cost_usd <= 0):
        return
    try:
        await record_usage(runtime, agent=agent, tokens=tokens, cost_usd=cost_usd, model=model,
                           api_key_id=api_key_id)
    except grpc.aio.AioRpcError as exc:
        _unreachable(exc)
        raise
