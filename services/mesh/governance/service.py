"""GovernanceService (policies, decisions, dispatch, rate-limit usage, budgets, webhooks) and
Envoy's RateLimitService, on the service kit.

Dispatch intents (docs/governance.md): each maps to one platform operation, called over gRPC
with the caller's identity after the decision allows it.

    intent                      operation                                   resource
    interact_agent              AgentService.InteractWithAgent              Agent::<agent_id>
    call_reasoning (seed 002)   AgentService.InteractWithAgent              Agent::<agent_id>
      without an agent_id       the agents service's gRPC health (heartbeat) Intent::call_reasoning
    get_agent                   AgentService.GetAgent                       Agent::<agent_id>
    execute_tool                ToolService.ExecuteTool                     Tool::<tool_id>
    start_workflow              WorkflowService.ExecuteWorkflow             Workflow::<workflow_id>
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import grpc
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.common.v1 import common_pb2
from agentmesh.governance.v1 import governance_pb2 as pb
from agentmesh.governance.v1 import governance_pb2_grpc as pb_grpc
from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from mesh.governance import engine
from mesh.governance.limits import RateLimitService
from mesh.governance.models import (DecisionRow, PolicyRow, PolicySetRow, PolicyVersionRow,
                                    WebhookRow)
from mesh.governance.state import decision_message, shared
from mesh.runtime import errors
from mesh.runtime.context import Caller, metadata_value, require_caller
from mesh.runtime.convert import changes, to_message, writable
from mesh.runtime.errors import (AlreadyExists, InvalidArgument, PermissionDenied, Unimplemented,
                                 invalid_field)
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.repository import TenantRepository
from mesh.runtime.service import Runtime, ServiceDefinition
from mesh.runtime.tables import is_uuid, new_id, utcnow

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_WRITABLE = writable(pb.Policy)

policies = TenantRepository(PolicyRow, noun="policy", message=pb.Policy,
                            search_columns=("name", "description"),
                            order_columns=("name", "priority"), default_order="name", quota="resource")
versions = TenantRepository(PolicyVersionRow, noun="policy_version", name_column=None,
                            order_columns=("version",), default_order="-version", quota="version")
decisions = TenantRepository(DecisionRow, noun="decision", message=pb.Decision, name_column=None,
                             order_columns=("decision_time_ms",), default_order="-created_at")
webhooks = TenantRepository(WebhookRow, noun="webhook", message=pb.Webhook, name_column=None, quota="resource")


# ---- dispatch: intents and the operations they map to ----------------------------------------
@dataclass(frozen=True)
class Operation:
    rpc: str  # full gRPC path, also the contract's key for the scope it needs
    resource_type: str
    resource_key: str  # the context field naming the resource
    call: Callable[[Runtime, str, dict[str, Any]], Awaitable[Message]]
    summary: Callable[[Message], str]
    # What the intent does when `context` names no target (None: the target is required).
    without_target: "Operation | None" = None


async def _interact(runtime: Runtime, key: str, ctx: dict[str, Any]) -> Message:
    request = agents_pb2.InteractWithAgentRequest(
        agent_id=key, message=str(ctx.get("message", "")), call_id=str(ctx.get("call_id", "")))
    extra = {k: v for k, v in ctx.items() if k not in {"agent_id", "message", "call_id"}}
    request.context.update(extra)
    return await runtime.peers.stub(agents_pb2_grpc.AgentServiceStub).InteractWithAgent(request)


async def _get_agent(runtime: Runtime, key: str, ctx: dict[str, Any]) -> Message:
    return await runtime.peers.stub(agents_pb2_grpc.AgentServiceStub).GetAgent(
        agents_pb2.GetAgentRequest(agent_id=key))


async def _execute_tool(runtime: Runtime, key: str, ctx: dict[str, Any]) -> Message:
    request = tools_pb2.ExecuteToolRequest(tool_id=key)
    request.arguments.update(ctx.get("arguments") or {})
    return await runtime.peers.stub(tools_pb2_grpc.ToolServiceStub).ExecuteTool(request)


async def _start_workflow(runtime: Runtime, key: str, ctx: dict[str, Any]) -> Message:
    request = workflows_pb2.ExecuteWorkflowRequest(workflow_id=key)
    request.inputs.update(ctx.get("inputs") or {})
    return await runtime.peers.stub(workflows_pb2_grpc.WorkflowServiceStub).ExecuteWorkflow(request)


REASONING_HEALTH_NAME = "agentmesh.agents.v1.AgentService"


async def _reasoning_heartbeat(runtime: Runtime, key: str, ctx: dict[str, Any]) -> Message:
    """Seed 002's `call_reasoning` with no agent named: whether the reasoning path is alive,
    i.e. the agents service (where every agent's reasoning loop runs) answers its gRPC health
    check SERVING. No model is called and nothing is recorded but the decision."""
    try:
        reply = await health_pb2_grpc.HealthStub(runtime.peers.channel("agents")).Check(
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


def _recorded_context(ctx: dict[str, Any], context) -> dict[str, Any]:
    """The dispatch context as the decision records it (and its webhook carries it, seed 002's
    `context`): what the client sent, with `ip_address` the address the gateway saw."""
    forwarded = metadata_value(context, "x-forwarded-for")
    address = forwarded.rsplit(",", 1)[-1].strip() if forwarded else ""
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
    message = exc.details() or exc.code().name
    reason = ""
    for key, value in exc.trailing_metadata() or ():
        if key == errors.ERROR_TRAILER:
            try:
                envelope = json.loads(value)
                message = envelope.get("message", message)
                reason = envelope.get("details", {}).get("reason", "")
            except ValueError:
                pass
    if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
        return Unimplemented(f"{operation.rpc} is not available in this deployment yet",
                             reason="OPERATION_NOT_IMPLEMENTED", details=details)
    cls = _BY_CODE.get(exc.code(), errors.Internal)
    return cls(message, reason=reason, details=details)


# ---- policies ---------------------------------------------------------------------------------
def _check_name(name: str) -> None:
    if not name:
        raise invalid_field("name", "is required")
    if not _NAME.match(name) or is_uuid(name):
        raise invalid_field("name", "1-100 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit, and not a UUID")


def _policy_text(policy: pb.Policy, fields: dict[str, Any]) -> str:
    """The Cedar text of a policy written either in `cedar` or in the effect/match shorthand;
    validated (a syntax error names the line)."""
    if policy.HasField("rules") and policy.rules.fields:
        raise invalid_field("rules", "not supported; write conditions in `cedar` (when { ... })")
    if policy.HasField("rate_limit"):
        raise invalid_field("rate_limit", "not supported; rate limits are the gateway's "
                            "(GET /api/v1/governance/rate-limits)")
    text = fields.get("cedar") or ""
    if not text.strip():
        effect = fields.get("effect") or "POLICY_EFFECT_UNSPECIFIED"
        if effect == "POLICY_EFFECT_UNSPECIFIED":
            raise invalid_field("cedar", "is required (or give `effect` and `match`)")
        match = fields.get("match") or {}
        text = engine.shorthand(effect, list(match.get("intents", [])),
                                list(match.get("resources", [])))
    engine.check_policy_text(text)
    return text


def _bump(session: Session, tenant_id: str) -> int:
    row = session.exec(select(PolicySetRow).where(PolicySetRow.tenant_id == tenant_id)
                       .with_for_update()).first()
    if row is None:  # the tenant's first policy; two concurrent firsts: one insert wins
        try:
            with session.begin_nested():
                session.add(PolicySetRow(tenant_id=tenant_id, version=0, created_at=utcnow(),
                                         updated_at=utcnow()))
        except IntegrityError:
            pass
        row = session.exec(select(PolicySetRow).where(PolicySetRow.tenant_id == tenant_id)
                           .with_for_update()).one()
    row.version += 1
    row.enabled_policies = len(session.exec(select(PolicyRow.id).where(
        PolicyRow.tenant_id == tenant_id, PolicyRow.enabled)).all())
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return row.version


def _version_row(row: PolicyRow, caller: Caller) -> PolicyVersionRow:
    now = utcnow()
    return PolicyVersionRow(tenant_id=row.tenant_id, policy_id=row.id, version=row.version,
                            cedar=row.cedar, enabled=row.enabled, created_by=caller.user_id,
                            created_at=now, updated_at=now)


def _decision_request(message: pb.DecisionRequest, caller: Caller) -> engine.Request:
    return engine.Request(
        principal_type=message.principal_type or "User",
        principal_id=message.principal_id or caller.user_id,
        action=message.action, resource_type=message.resource_type,
        resource_id=message.resource_id,
        arguments=json_format.MessageToDict(message.arguments),
        scopes=caller.scopes)


class GovernanceService(pb_grpc.GovernanceServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.db = runtime.database
        self.shared = shared(runtime)
        self.decider = self.shared.decider

    # -- dispatch --------------------------------------------------------------------------------
    async def Dispatch(self, request: pb.DispatchRequest, context) -> pb.DispatchResponse:
        caller = require_caller(context)
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
        decision = await self.decider.decide(
            caller.tenant_id, decision_request, scope_ok=scope_ok,
            correlation_id=caller.correlation_id, intent=request.intent,
            context=_recorded_context(ctx, context))
        if not decision.allowed:
            reason = decision.reason if scope_ok else \
                f"missing scope {scope} for intent {request.intent!r}"
            raise _denial(decision, reason)
        try:
            result = await operation.call(self.runtime, key, ctx)
        except grpc.aio.AioRpcError as exc:
            raise _target_error(exc, operation, decision) from None
        response = pb.DispatchResponse(
            status="success", message=operation.summary(result), reason=decision.reason,
            correlation_id=caller.correlation_id, governance=_governance(decision),
            operation=operation.rpc.lstrip("/"))
        response.timestamp.GetCurrentTime()
        response.result.update(json_format.MessageToDict(result, preserving_proto_field_name=True))
        return response

    # -- decisions -------------------------------------------------------------------------------
    async def Decide(self, request: pb.DecideRequest, context) -> pb.Decision:
        caller = require_caller(context)
        decision_request = _decision_request(request.request, caller)
        decision_request.intent = request.intent
        return await self.decider.decide(
            caller.tenant_id, decision_request, correlation_id=caller.correlation_id,
            intent=request.intent or request.request.action)

    async def ListDecisions(self, request: pb.ListDecisionsRequest, context) -> pb.ListDecisionsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        order = page.order_by or "-created_at"
        if order not in {"-created_at", "created_at", "-decision_time_ms"}:
            raise invalid_field("order_by", "use -created_at, created_at or -decision_time_ms")
        start = request.start_time.ToDatetime(UTC) if request.HasField("start_time") else None
        end = request.end_time.ToDatetime(UTC) if request.HasField("end_time") else None
        if start and end and end < start:
            raise invalid_field("end_time", "precedes start_time")
        where = []
        if request.HasField("allowed"):
            where.append(DecisionRow.allowed == request.allowed)
        if start:
            where.append(DecisionRow.created_at >= start)
        if end:
            where.append(DecisionRow.created_at < end)

        def read(session: Session) -> Page:
            return decisions.list(session, caller.tenant_id, PageRequest(page.page, page.page_size,
                                                                         order),
                                  filters={"intent": request.intent,
                                           "policy_id": request.policy_id,
                                           "subject": request.subject,
                                           "correlation_id": request.correlation_id},
                                  where=tuple(where))

        result = await self.db.read(read)
        return pb.ListDecisionsResponse(**result.fields(decision_message))

    async def GetDecision(self, request: pb.GetDecisionRequest, context) -> pb.Decision:
        caller = require_caller(context)
        if request.decision_id and not is_uuid(request.decision_id):
            raise decisions.not_found(request.decision_id)
        decision = await decisions.fetch(self.db, caller.tenant_id, request.decision_id)
        decision.decision_time_ms = decision.decision_time_us / 1000  # the column: whole ms
        return decision

    # -- policies --------------------------------------------------------------------------------
    async def ListPolicies(self, request: pb.ListPoliciesRequest, context) -> pb.ListPoliciesResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        order = page.order_by or "-priority,name"
        where = []
        if request.HasField("enabled"):
            where.append(PolicyRow.enabled == request.enabled)
        if request.intent:
            where.append(PolicyRow.cedar.contains(request.intent))

        def read(session: Session) -> Page:
            return policies.list(session, caller.tenant_id,
                                 PageRequest(page.page, page.page_size, order),
                                 filters={"effect": pb.PolicyEffect.Name(request.effect)
                                          if request.effect else None},
                                 search=request.search, where=tuple(where))

        result = await self.db.read(read)
        return pb.ListPoliciesResponse(**result.fields(lambda r: to_message(r, pb.Policy)))

    async def CreatePolicy(self, request: pb.CreatePolicyRequest, context) -> pb.Policy:
        caller = require_caller(context)
        policy = request.policy
        _check_name(policy.name)
        fields = changes(policy, _WRITABLE)
        text = _policy_text(policy, fields)
        row = PolicyRow(tenant_id=caller.tenant_id, name=policy.name,
                        description=policy.description,
                        effect=pb.PolicyEffect.Name(policy.effect), priority=policy.priority,
                        match=fields.get("match") or {}, cedar=text,
                        enabled=policy.enabled if policy.HasField("enabled") else True,
                        version=1, created_by=caller.user_id)

        def create(session: Session) -> PolicyRow:
            policies.add(session, row)
            session.add(_version_row(row, caller))
            _bump(session, caller.tenant_id)
            return row

        created = await self.db.write(create)
        self.shared.cache.invalidate(caller.tenant_id)
        return to_message(created, pb.Policy)

    async def GetPolicy(self, request: pb.GetPolicyRequest, context) -> pb.Policy:
        caller = require_caller(context)
        return await policies.fetch(self.db, caller.tenant_id, request.policy_id)

    async def UpdatePolicy(self, request: pb.UpdatePolicyRequest, context) -> pb.Policy:
        caller = require_caller(context)
        update = changes(request.policy, _WRITABLE, list(request.update_mask.paths))
        if "name" in update:
            _check_name(update["name"])
        if "rules" in update and update["rules"]:
            raise invalid_field("rules", "not supported; write conditions in `cedar`")
        if "rate_limit" in update and update["rate_limit"]:
            raise invalid_field("rate_limit", "not supported; rate limits are the gateway's")

        def apply(session: Session) -> PolicyRow:
            row = policies.get(session, caller.tenant_id, request.policy_id, lock=True)
            for key in ("name", "description", "priority", "enabled"):
                if key in update:
                    setattr(row, key, update[key])
            if "cedar" in update and update["cedar"].strip():
                engine.check_policy_text(update["cedar"])
                row.cedar = update["cedar"]
            elif "effect" in update or "match" in update:
                effect = update.get("effect", row.effect)
                match = update.get("match", row.match) or {}
                row.effect = effect
                row.match = match
                if effect == "POLICY_EFFECT_UNSPECIFIED":
                    raise invalid_field("effect", "must be POLICY_EFFECT_ALLOW or POLICY_EFFECT_DENY")
                row.cedar = engine.shorthand(effect, list(match.get("intents", [])),
                                             list(match.get("resources", [])))
                engine.check_policy_text(row.cedar)
            row.version += 1
            policies.save(session, row)
            session.add(_version_row(row, caller))
            _bump(session, caller.tenant_id)
            return row

        updated = await self.db.write(apply)
        self.shared.cache.invalidate(caller.tenant_id)
        return to_message(updated, pb.Policy)

    async def DeletePolicy(self, request: pb.DeletePolicyRequest, context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = policies.get(session, caller.tenant_id, request.policy_id, lock=True)
            policies.delete(session, row)
            _bump(session, caller.tenant_id)
            return row.name

        name = await self.db.write(remove)
        self.shared.cache.invalidate(caller.tenant_id)
        return common_pb2.DeleteResponse(success=True, message=f"policy {name!r} deleted")

    async def ListPolicyVersions(self, request: pb.ListPolicyVersionsRequest,
                                 context) -> pb.ListPolicyVersionsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)

        def read(session: Session) -> Page:
            policy = policies.get(session, caller.tenant_id, request.policy_id)
            return versions.list(session, caller.tenant_id, page,
                                 filters={"policy_id": policy.id})

        result = await self.db.read(read)
        return pb.ListPolicyVersionsResponse(
            **result.fields(lambda r: to_message(r, pb.PolicyVersion)))

    async def DryRunPolicy(self, request: pb.DryRunPolicyRequest, context) -> pb.DryRunPolicyResponse:
        caller = require_caller(context)
        if not request.HasField("policy"):
            raise invalid_field("policy", "is required")
        draft = request.policy
        text = _policy_text(draft, changes(draft, _WRITABLE))
        name = draft.name or "draft"
        current = await self.decider.compiled(caller.tenant_id)

        def others(session: Session):
            return [(r.id, r.name, r.version, r.cedar) for r in session.exec(
                select(PolicyRow).where(PolicyRow.tenant_id == caller.tenant_id,
                                        PolicyRow.enabled, PolicyRow.name != name)
                .order_by(PolicyRow.name)).all()]

        existing = await self.db.read(others)
        compiled = engine.CompiledPolicies.build(
            current.version if current else 0, [*existing, ("", name, 0, text)])
        labels = {k: (v if not v.endswith("@0") else f"{name}@draft")
                  for k, v in compiled.labels.items()}
        compiled = engine.CompiledPolicies(compiled.version, compiled.policy_set, labels,
                                           compiled.ids)
        decision_request = _decision_request(request.request, caller)
        decision_request.validate()
        decision_request.usage = await self.decider.usage_context(caller.tenant_id)
        outcome = engine.evaluate(compiled, decision_request)
        return pb.DryRunPolicyResponse(allowed=outcome.allowed, reason=outcome.reason,
                                       matching_policies=outcome.matching, errors=outcome.errors)

    # -- rate limits and budgets -----------------------------------------------------------------
    async def GetRateLimits(self, request: pb.GetRateLimitsRequest, context) -> pb.RateLimits:
        caller = require_caller(context)
        limits = self.shared.limits
        domain = self.shared.settings.rate_limit_domain
        answer = pb.RateLimits(tenant_id=caller.tenant_id)
        answer.timestamp.GetCurrentTime()
        descriptors = [("global", [("generic_key", "global")]),
                       ("per_tenant", [("tenant", caller.tenant_id)])]
        forwarded = metadata_value(context, "x-forwarded-for").split(",")[0].strip()
        if forwarded:
            descriptors.insert(1, ("per_ip", [("remote_address", forwarded)]))
        for name, entries in descriptors:
            limit, used, window = await limits.usage(domain, entries)
            usage = answer.limits.add(name=name, limit=limit, used=used,
                                      remaining=max(0, limit - used) if limit else 0)
            usage.window.FromSeconds(window.seconds)
            usage.reset_at.FromDatetime(window.reset_at)
        budgets = self.shared.budgets
        answer.budgets.append(await budgets.message(caller.tenant_id, "tenant"))
        prefix = f"{caller.tenant_id}:agent:"
        for key in sorted(budgets.limits_seen):
            if key.startswith(prefix):
                answer.budgets.append(await budgets.message(caller.tenant_id, key[len(caller.tenant_id) + 1:]))
        return answer

    async def CheckBudget(self, request: pb.CheckBudgetRequest, context) -> pb.BudgetCheck:
        caller = require_caller(context)
        budgets = self.shared.budgets
        agent = f"agent:{request.agent_id}" if request.agent_id else ""
        if agent:
            budgets.limits_seen[f"{caller.tenant_id}:{agent}"] = request.max_cost_per_day
        if request.tenant_max_cost_per_day:
            budgets.limits_seen[f"{caller.tenant_id}:tenant"] = request.tenant_max_cost_per_day
        check = pb.BudgetCheck(allowed=True, reason="within budget",
                               tenant=await budgets.message(caller.tenant_id, "tenant"))
        if agent:
            check.agent.CopyFrom(await budgets.message(caller.tenant_id, agent))
        if request.max_tokens_per_call and request.estimated_tokens > request.max_tokens_per_call:
            check.allowed = False
            check.reason = (f"max_tokens_per_call exceeded: {request.estimated_tokens} > "
                            f"{request.max_tokens_per_call}")
        elif agent and request.max_cost_per_day and \
                check.agent.cost_today_usd >= request.max_cost_per_day:
            check.allowed = False
            check.reason = (f"agent max_cost_per_day reached: ${check.agent.cost_today_usd:.4f} "
                            f"of ${request.max_cost_per_day:.4f}")
        elif request.tenant_max_cost_per_day and \
                check.tenant.cost_today_usd >= request.tenant_max_cost_per_day:
            check.allowed = False
            check.reason = (f"tenant max_cost_per_day reached: ${check.tenant.cost_today_usd:.4f} "
                            f"of ${request.tenant_max_cost_per_day:.4f}")
        return check

    async def RecordUsage(self, request: pb.RecordUsageRequest, context) -> pb.BudgetUsage:
        caller = require_caller(context)
        if request.tokens < 0 or request.cost_usd < 0:
            raise invalid_field("tokens", "tokens and cost_usd must not be negative")
        budgets = self.shared.budgets
        await budgets.add(caller.tenant_id, "tenant", request.tokens, request.cost_usd)
        if request.agent_id:
            who = f"agent:{request.agent_id}"
            await budgets.add(caller.tenant_id, who, request.tokens, request.cost_usd)
            budgets.limits_seen.setdefault(f"{caller.tenant_id}:{who}", 0.0)
            return await budgets.message(caller.tenant_id, who)
        return await budgets.message(caller.tenant_id, "tenant")

    # -- webhooks --------------------------------------------------------------------------------
    async def CreateWebhook(self, request: pb.CreateWebhookRequest, context) -> pb.Webhook:
        caller = require_caller(context)
        url = request.webhook.url.strip()
        try:
            parsed = urlparse(url)
        except ValueError:  # "http://[": not a URL at all
            raise invalid_field("url", "must be an http or https URL") from None
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise invalid_field("url", "must be an http or https URL")
        events = request.webhook.events or "all"
        if events not in {"all", "denied", "allowed"}:
            raise invalid_field("events", "must be all, denied or allowed")
        # An internal address is refused now (403 EGRESS_DENIED); each delivery is checked
        # again when it connects.
        await self.shared.egress.check_url(url)
        secret = "whsec_" + secrets.token_urlsafe(32)
        row = WebhookRow(tenant_id=caller.tenant_id, url=url, events=events, secret=secret,
                         created_by=caller.user_id)
        created = await self.db.write(lambda s: webhooks.add(s, row))
        self.shared.forget_webhooks(caller.tenant_id)
        return to_message(created, pb.Webhook)

    async def ListWebhooks(self, request: pb.ListWebhooksRequest, context) -> pb.ListWebhooksResponse:
        caller = require_caller(context)
        result = await webhooks.page(self.db, caller.tenant_id, PageRequest.of(request))
        items = []
        for item in result.items:
            item.ClearField("secret")
            items.append(item)
        return pb.ListWebhooksResponse(items=items, total=result.total, page=result.page,
                                       page_size=result.page_size, pages=result.pages)

    async def DeleteWebhook(self, request: pb.DeleteWebhookRequest, context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = webhooks.get(session, caller.tenant_id, request.webhook_id)
            webhooks.delete(session, row)
            return row.url

        url = await self.db.write(remove)
        self.shared.forget_webhooks(caller.tenant_id)
        return common_pb2.DeleteResponse(success=True, message=f"webhook {url!r} deleted")


async def _stop(runtime: Runtime) -> None:
    await shared(runtime).close()


DEFINITION = ServiceDefinition(
    "governance", servicers=[GovernanceService, RateLimitService],
    tables=[PolicyRow, PolicyVersionRow, PolicySetRow, DecisionRow, WebhookRow],
    on_stop=_stop)
