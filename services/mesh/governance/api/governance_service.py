"""GovernanceService: dispatch, decisions, policies, rate-limit usage and budgets, decision
webhooks. Each RPC reads its request, calls the domain (mesh.governance.dispatch, decisions,
policies, usage, webhooks) with the service's state, and answers.
"""

from __future__ import annotations

from agentmesh.common.v1 import common_pb2
from agentmesh.governance.v1 import governance_pb2 as pb
from agentmesh.governance.v1 import governance_pb2_grpc as pb_grpc
from mesh.governance import budgets, decisions, dispatch, policies, usage, webhooks
from mesh.governance.models import PolicyRow
from mesh.governance.state import GovernanceState
from mesh.governance.store import POLICY_VERSIONS, decision_message, version_message
from mesh.runtime.versions import Versions
from mesh.governance.store import policies as policy_rows
from mesh.governance.store import webhooks as webhook_rows
from mesh.runtime.context import metadata_value, require_caller
from mesh.runtime.convert import to_message
from mesh.runtime.errors import invalid_field
from mesh.runtime.paging import PageRequest
from mesh.runtime.service import Runtime


def _set_value(target, value) -> None:
    """A JSON scalar (a version's Cedar text or switch) into a google.protobuf.Value."""
    if isinstance(value, bool):
        target.bool_value = value
    elif value is None:
        target.null_value = 0
    else:
        target.string_value = str(value)


class GovernanceService(pb_grpc.GovernanceServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.db = runtime.database
        self.state: GovernanceState = runtime.state
        self.decider = self.state.decider

    # -- dispatch --------------------------------------------------------------------------------
    async def Dispatch(self, request: pb.DispatchRequest, context) -> pb.DispatchResponse:
        caller = require_caller(context)
        return await dispatch.dispatch(self.runtime.peers, self.decider, caller, request,
                                       metadata_value(context, "x-forwarded-for"))

    # -- decisions -------------------------------------------------------------------------------
    async def Decide(self, request: pb.DecideRequest, context) -> pb.Decision:
        caller = require_caller(context)
        decision_request = decisions.decision_request(request.request, caller)
        decision_request.intent = request.intent
        return await self.decider.decide(
            caller.tenant_id, decision_request, correlation_id=caller.correlation_id,
            intent=request.intent or request.request.action)

    async def ListDecisions(self, request: pb.ListDecisionsRequest, context) -> pb.ListDecisionsResponse:
        caller = require_caller(context)
        await self.decider.flush()
        result = await decisions.list_decisions(self.db, caller.tenant_id, request)
        return pb.ListDecisionsResponse(**result.fields(decision_message))

    async def GetDecision(self, request: pb.GetDecisionRequest, context) -> pb.Decision:
        caller = require_caller(context)
        await self.decider.flush()
        return await decisions.get_decision(self.db, caller.tenant_id, request.decision_id)

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
        result = await self.db.read(lambda s: policy_rows.list(
            s, caller.tenant_id, PageRequest(page.page, page.page_size, order),
            filters={"effect": pb.PolicyEffect.Name(request.effect) if request.effect else None},
            search=request.search, where=tuple(where)))
        return pb.ListPoliciesResponse(**result.fields(lambda r: to_message(r, pb.Policy)))

    async def CreatePolicy(self, request: pb.CreatePolicyRequest, context) -> pb.Policy:
        caller = require_caller(context)
        row = await policies.create(self.db, self.state.cache, caller, request.policy)
        return to_message(row, pb.Policy)

    async def GetPolicy(self, request: pb.GetPolicyRequest, context) -> pb.Policy:
        caller = require_caller(context)
        if not request.version and not request.label:
            return await policy_rows.fetch(self.db, caller.tenant_id, request.policy_id)

        def read(session) -> pb.Policy:
            row = policy_rows.get(session, caller.tenant_id, request.policy_id)
            version = POLICY_VERSIONS.resolve(session, row, request.version, request.label)
            return to_message(row, pb.Policy, version=version.version, cedar=version.cedar,
                              enabled=version.enabled)

        return await self.db.read(read)

    async def UpdatePolicy(self, request: pb.UpdatePolicyRequest, context) -> pb.Policy:
        caller = require_caller(context)
        row = await policies.update(self.db, self.state.cache, caller, request.policy_id,
                                    request.policy, list(request.update_mask.paths))
        return to_message(row, pb.Policy)

    async def DeletePolicy(self, request: pb.DeletePolicyRequest, context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)
        name = await policies.delete(self.db, self.state.cache, caller, request.policy_id)
        return common_pb2.DeleteResponse(success=True, message=f"policy {name!r} deleted")

    async def ListPolicyVersions(self, request: pb.ListPolicyVersionsRequest,
                                 context) -> pb.ListPolicyVersionsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)

        row, result = await self.db.read(lambda s: POLICY_VERSIONS.page(
            s, caller.tenant_id, request.policy_id, page))
        return pb.ListPolicyVersionsResponse(
            **result.fields(lambda v: version_message(v, row)))

    async def GetPolicyVersion(self, request: pb.GetPolicyVersionRequest,
                               context) -> pb.PolicyVersion:
        caller = require_caller(context)

        def read(session) -> pb.PolicyVersion:
            row = policy_rows.get(session, caller.tenant_id, request.policy_id)
            return version_message(POLICY_VERSIONS.get(session, row, request.version), row)

        return await self.db.read(read)

    async def DiffPolicyVersions(self, request: pb.DiffPolicyVersionsRequest,
                                 context) -> common_pb2.VersionDiff:
        caller = require_caller(context)

        def read(session) -> common_pb2.VersionDiff:
            row = policy_rows.get(session, caller.tenant_id, request.policy_id)
            older, newer = POLICY_VERSIONS.pair(session, row, request.version, request.against)
            out = common_pb2.VersionDiff(resource_id=row.id, from_version=older.version,
                                         to_version=newer.version)
            for name, before, after in Versions.diff(
                    {"cedar": older.cedar, "enabled": older.enabled},
                    {"cedar": newer.cedar, "enabled": newer.enabled}):
                change = out.changes.add(field=name)
                _set_value(change.before, before)
                _set_value(change.after, after)
            return out

        return await self.db.read(read)

    async def SetPolicyLabel(self, request: pb.SetPolicyLabelRequest, context) -> pb.Policy:
        caller = require_caller(context)
        row = await policies.move_label(self.db, self.state.cache, caller, request.policy_id,
                                        request.label, request.version)
        return to_message(row, pb.Policy)

    async def DeletePolicyLabel(self, request: pb.DeletePolicyLabelRequest,
                                context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)
        row = await policies.drop_label(self.db, self.state.cache, caller, request.policy_id,
                                        request.label)
        return common_pb2.DeleteResponse(
            success=True, message=f"label {request.label!r} removed from policy {row.name!r}")

    async def DryRunPolicy(self, request: pb.DryRunPolicyRequest, context) -> pb.DryRunPolicyResponse:
        caller = require_caller(context)
        return await policies.dry_run(self.db, self.decider, caller, request)

    # -- rate limits and budgets -----------------------------------------------------------------
    async def GetRateLimits(self, request: pb.GetRateLimitsRequest, context) -> pb.RateLimits:
        caller = require_caller(context)
        client_address = metadata_value(context, "x-forwarded-for").split(",")[0].strip()
        return await usage.rate_limits(self.state.limits, self.state.budgets,
                                       self.state.rate_limit_domain, caller.tenant_id,
                                       client_address)

    async def CheckBudget(self, request: pb.CheckBudgetRequest, context) -> pb.BudgetCheck:
        caller = require_caller(context)
        if not request.api_key_id and caller.api_key_id:
            request.api_key_id = caller.api_key_id
        return await self.state.budgets.check(caller.tenant_id, request)

    async def RecordUsage(self, request: pb.RecordUsageRequest, context) -> pb.BudgetUsage:
        caller = require_caller(context)
        if request.tokens < 0 or request.cost_usd < 0:
            raise invalid_field("tokens", "tokens and cost_usd must not be negative")
        answer = await self.state.budgets.record(caller.tenant_id, request.agent_id,
                                                 request.tokens, request.cost_usd,
                                                 request.api_key_id or caller.api_key_id)
        self.state.metrics.model_usage(request.model, request.tokens, request.cost_usd)
        return answer

    async def SetBudget(self, request: pb.SetBudgetRequest, context) -> pb.Budget:
        caller = require_caller(context)
        return await budgets.set_budget(self.db, self.state.budgets, caller, request.budget_name,
                                        request.budget, list(request.update_mask.paths))

    async def ListBudgets(self, request: pb.ListBudgetsRequest, context) -> pb.ListBudgetsResponse:
        caller = require_caller(context)
        return await budgets.list_budgets(self.state.budgets, caller.tenant_id)

    async def DeleteBudget(self, request: pb.DeleteBudgetRequest,
                           context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)
        await budgets.delete_budget(self.db, self.state.budgets, caller, request.budget_name)
        return common_pb2.DeleteResponse(success=True,
                                         message=f"budget {request.budget_name!r} deleted")

    # -- webhooks --------------------------------------------------------------------------------
    async def CreateWebhook(self, request: pb.CreateWebhookRequest, context) -> pb.Webhook:
        caller = require_caller(context)
        row = await webhooks.create(self.db, self.state.egress, caller, request.webhook)
        self.state.webhooks.forget(caller.tenant_id)
        return to_message(row, pb.Webhook)

    async def ListWebhooks(self, request: pb.ListWebhooksRequest, context) -> pb.ListWebhooksResponse:
        caller = require_caller(context)
        result = await webhook_rows.page(self.db, caller.tenant_id, PageRequest.of(request))
        items = []
        for item in result.items:
            item.ClearField("secret")
            items.append(item)
        return pb.ListWebhooksResponse(items=items, total=result.total, page=result.page,
                                       page_size=result.page_size, pages=result.pages)

    async def DeleteWebhook(self, request: pb.DeleteWebhookRequest, context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)

        def remove(session) -> str:
            row = webhook_rows.get(session, caller.tenant_id, request.webhook_id)
            webhook_rows.delete(session, row)
            return row.url

        url = await self.db.write(remove)
        self.state.webhooks.forget(caller.tenant_id)
        return common_pb2.DeleteResponse(success=True, message=f"webhook {url!r} deleted")
