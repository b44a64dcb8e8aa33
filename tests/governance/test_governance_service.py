"""The governance service in-process: Cedar policies, the decision path, dispatch, budgets."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.governance.v1 import governance_pb2 as pb
from agentmesh.governance.v1 import governance_pb2_grpc as pb_grpc
from mesh.agents.service import DEFINITION as AGENTS
from mesh.governance.service import DEFINITION
from mesh.runtime.service import ServiceDefinition
from tests.harness import Identity, ServiceHarness, error_reason, field_violations

ALLOW_ALL = 'permit(principal, action, resource);'
DENY_SEARCH = '''@id("no-search")
forbid(principal == Agent::"triage", action == Action::"call_tool", resource == Tool::"search");'''


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    with ServiceHarness(AGENTS, tmp_path_factory.mktemp("agents")) as agents, \
            ServiceHarness(ServiceDefinition.placeholder_for("tools"),
                           tmp_path_factory.mktemp("tools")) as tools:
        yield agents, tools


@pytest.fixture(scope="module")
def governance(tmp_path_factory, peers):
    agents, tools = peers
    with ServiceHarness(DEFINITION, tmp_path_factory.mktemp("governance"),
                        peers=f"agents=127.0.0.1:{agents.running.port},"
                              f"tools=127.0.0.1:{tools.running.port}") as harness:
        yield harness


@pytest.fixture
def stub(governance):
    return governance.stub(pb_grpc.GovernanceServiceStub)


def _policy(stub, me, name, cedar, **fields):
    return stub.CreatePolicy(pb.CreatePolicyRequest(policy=pb.Policy(name=name, cedar=cedar, **fields)),
                             metadata=me.metadata())


def _tool_call(agent="triage", tool="search", **arguments):
    args = struct_pb2.Struct()
    args.update(arguments)
    return pb.DecisionRequest(principal_type="Agent", principal_id=agent, action="call_tool",
                              resource_type="Tool", resource_id=tool, arguments=args)


def _decide(stub, me, request):
    return stub.Decide(pb.DecideRequest(request=request), metadata=me.metadata())


def test_no_policies_keeps_scopes_only(stub, me):
    decision = _decide(stub, me, _tool_call())
    assert decision.allowed and decision.policy_version == 0
    assert "scopes only" in decision.reason


def test_cedar_forbid_denies_one_tool_and_default_denies_unpermitted_tools(stub, me):
    _policy(stub, me, "no-search", DENY_SEARCH)
    denied = _decide(stub, me, _tool_call())
    assert not denied.allowed and denied.matching_policies == ["no-search@1"]
    assert denied.principal == 'Agent::"triage"' and denied.resource == 'Tool::"search"'
    assert denied.action == "call_tool" and denied.policy_version == 1
    assert denied.policy_id and denied.correlation_id
    # Nothing permits the calculator either: tool calls are denied by default.
    other = _decide(stub, me, _tool_call(tool="calculator"))
    assert not other.allowed and "default deny" in other.reason
    # A person's tool run nothing matched is left to scopes (default deny is for agents).
    person = _decide(stub, me, pb.DecisionRequest(action="call_tool", resource_type="Tool",
                                                  resource_id="calculator"))
    assert person.allowed and person.principal.startswith("User::")
    # A non-tool action nothing matched is left to scopes.
    model = _decide(stub, me, pb.DecisionRequest(action="call_model", resource_type="Model",
                                                 resource_id="gpt-4o"))
    assert model.allowed
    _policy(stub, me, "allow-all", ALLOW_ALL)
    assert _decide(stub, me, _tool_call(tool="calculator")).allowed
    assert not _decide(stub, me, _tool_call()).allowed  # forbid wins over permit


def test_context_arguments_usage_and_time_reach_the_policy(stub, me):
    _policy(stub, me, "small-amounts", '''permit(principal, action == Action::"call_tool", resource)
when { context.arguments.amount < 100 && context.usage.cost_today_cents >= 0
       && context.time.hour >= 0 };''')
    assert _decide(stub, me, _tool_call(tool="pay", amount=5)).allowed
    assert not _decide(stub, me, _tool_call(tool="pay", amount=500)).allowed


def test_bad_policy_is_invalid_argument_naming_the_line(stub, me):
    with pytest.raises(grpc.RpcError) as caught:
        _policy(stub, me, "broken", 'permit(principal, action, resource);\n\nforbid(principal,\n'
                                    '  action == Action::"call_tool" resource);')
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "POLICY_SYNTAX_ERROR"
    assert field_violations(caught.value) == ["cedar"]
    assert "line 4" in caught.value.details()


def test_versions_are_immutable_and_each_update_adds_one(stub, me):
    policy = _policy(stub, me, "versioned", ALLOW_ALL)
    assert policy.version == 1
    updated = stub.UpdatePolicy(pb.UpdatePolicyRequest(policy_id="versioned", policy=pb.Policy(
        cedar=DENY_SEARCH)), metadata=me.metadata())
    assert updated.version == 2 and updated.cedar == DENY_SEARCH
    listed = stub.ListPolicyVersions(pb.ListPolicyVersionsRequest(policy_id=policy.id),
                                     metadata=me.metadata())
    assert [v.version for v in listed.items] == [2, 1]
    assert listed.items[1].cedar == ALLOW_ALL
    with pytest.raises(grpc.RpcError) as caught:
        stub.UpdatePolicy(pb.UpdatePolicyRequest(policy_id="versioned", policy=pb.Policy(
            cedar="permit(")), metadata=me.metadata())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stub.GetPolicy(pb.GetPolicyRequest(policy_id="versioned"),
                          metadata=me.metadata()).version == 2


def test_other_tenant_cannot_see_policies_or_decisions(stub, me):
    policy = _policy(stub, me, "mine", ALLOW_ALL)
    decision = _decide(stub, me, _tool_call())
    other = Identity()
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetPolicy(pb.GetPolicyRequest(policy_id=policy.id), metadata=other.metadata())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetDecision(pb.GetDecisionRequest(decision_id=decision.id), metadata=other.metadata())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # Another tenant's policies do not apply to this one.
    assert _decide(stub, other, _tool_call()).policy_version == 0


def test_dry_run_evaluates_a_draft_without_saving_it(stub, me):
    _policy(stub, me, "allow-all", ALLOW_ALL)
    reply = stub.DryRunPolicy(pb.DryRunPolicyRequest(
        policy=pb.Policy(name="draft-deny", cedar=DENY_SEARCH), request=_tool_call()),
        metadata=me.metadata())
    assert not reply.allowed and reply.matching_policies == ["draft-deny@draft"]
    listed = stub.ListPolicies(pb.ListPoliciesRequest(), metadata=me.metadata())
    assert [p.name for p in listed.items] == ["allow-all"]
    assert _decide(stub, me, _tool_call()).allowed
    with pytest.raises(grpc.RpcError) as caught:
        stub.DryRunPolicy(pb.DryRunPolicyRequest(policy=pb.Policy(name="broken", cedar="forbid(principal"),
                                                 request=_tool_call()), metadata=me.metadata())
    assert error_reason(caught.value) == "POLICY_SYNTAX_ERROR"
    # Dry runs record nothing.
    assert stub.ListDecisions(pb.ListDecisionsRequest(), metadata=me.metadata()).total == 1


def test_decisions_are_recorded_listed_and_fetched(stub, me):
    _policy(stub, me, "no-search", DENY_SEARCH)
    denied = _decide(stub, me, _tool_call())
    page = stub.ListDecisions(pb.ListDecisionsRequest(allowed=False), metadata=me.metadata())
    assert page.total == 1 and page.items[0].id == denied.id
    got = stub.GetDecision(pb.GetDecisionRequest(decision_id=denied.id), metadata=me.metadata())
    assert got == denied and got.decision_time_us >= 0
    by_cid = stub.ListDecisions(pb.ListDecisionsRequest(correlation_id=denied.correlation_id),
                                metadata=me.metadata())
    assert [d.id for d in by_cid.items] == [denied.id]


def test_shorthand_effect_and_match_becomes_cedar(stub, me):
    policy = _policy(stub, me, "deny-tools", "", effect=pb.POLICY_EFFECT_DENY,
                     match=pb.PolicyMatch(resources=["tools/search"]))
    assert policy.cedar.startswith("forbid(")
    assert not _decide(stub, me, _tool_call()).allowed


def test_dispatch_allowed_calls_the_operation_and_denied_is_permission_denied(stub, me, peers):
    agents, _ = peers
    agents.stub(agents_pb2_grpc.AgentServiceStub).CreateAgent(
        agents_pb2.CreateAgentRequest(agent=agents_pb2.Agent(name="triage")), metadata=me.metadata())
    context = struct_pb2.Struct()
    context.update({"agent_id": "triage"})
    reply = stub.Dispatch(pb.DispatchRequest(intent="get_agent", context=context),
                          metadata=me.metadata())
    assert reply.status == "success" and reply.governance.allowed
    assert reply.result["name"] == "triage" and reply.correlation_id
    _policy(stub, me, "no-dispatch", 'forbid(principal, action == Action::"dispatch", '
                                     'resource == Agent::"triage");')
    with pytest.raises(grpc.RpcError) as caught:
        stub.Dispatch(pb.DispatchRequest(intent="get_agent", context=context), metadata=me.metadata())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "GOVERNANCE_DENIED"


def test_dispatch_to_an_unbuilt_operation_is_unimplemented(stub, me):
    context = struct_pb2.Struct()
    context.update({"tool_id": "search"})
    with pytest.raises(grpc.RpcError) as caught:
        stub.Dispatch(pb.DispatchRequest(intent="execute_tool", context=context),
                      metadata=me.metadata())
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error_reason(caught.value) == "OPERATION_NOT_IMPLEMENTED"


def test_dispatch_unknown_intent_and_missing_scope(stub, me):
    with pytest.raises(grpc.RpcError) as caught:
        stub.Dispatch(pb.DispatchRequest(intent="launch_rockets"), metadata=me.metadata())
    assert error_reason(caught.value) == "UNKNOWN_INTENT"
    reader = Identity(tenant_id=me.tenant_id, scopes="governance:execute")
    context = struct_pb2.Struct()
    context.update({"agent_id": "triage"})
    with pytest.raises(grpc.RpcError) as caught:
        stub.Dispatch(pb.DispatchRequest(intent="get_agent", context=context),
                      metadata=reader.metadata())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "agents:read" in caught.value.details()


def test_budgets_check_and_usage(stub, me):
    ok = stub.CheckBudget(pb.CheckBudgetRequest(agent_id="triage", estimated_tokens=100,
                                                max_tokens_per_call=1000, max_cost_per_day=1.0),
                          metadata=me.metadata())
    assert ok.allowed
    too_big = stub.CheckBudget(pb.CheckBudgetRequest(agent_id="triage", estimated_tokens=5000,
                                                     max_tokens_per_call=1000), metadata=me.metadata())
    assert not too_big.allowed and "max_tokens_per_call" in too_big.reason
    stub.RecordUsage(pb.RecordUsageRequest(agent_id="triage", tokens=1200, cost_usd=1.25),
                     metadata=me.metadata())
    spent = stub.CheckBudget(pb.CheckBudgetRequest(agent_id="triage", estimated_tokens=10,
                                                   max_cost_per_day=1.0), metadata=me.metadata())
    assert not spent.allowed and "max_cost_per_day" in spent.reason
    assert spent.agent.tokens_today == 1200 and spent.agent.cost_today_usd == pytest.approx(1.25)
    limits = stub.GetRateLimits(pb.GetRateLimitsRequest(), metadata=me.metadata())
    names = [b.name for b in limits.budgets]
    assert names == ["tenant", "agent:triage"]
    assert limits.budgets[1].max_cost_per_day == 1.0
    assert [l.name for l in limits.limits] == ["global", "per_tenant"]


def test_client_helpers_decide_through_the_rpc(governance, stub, me):
    """What the agent runtime does before a tool call: the helper calls Decide over gRPC."""
    import asyncio

    from mesh.governance import client
    from mesh.runtime.peers import Peers
    from mesh.runtime.settings import Settings
    from mesh.runtime.service import Runtime

    _policy(stub, me, "no-search", DENY_SEARCH)

    from mesh.runtime.context import current_call

    class Served:
        """The call another service is serving: its identity is what the helper passes on."""

        def invocation_metadata(self):
            return me.metadata()

    async def run():
        # The harness's settings: the same data directory, so the same internal token.
        settings = governance.settings.model_copy(
            update={"peers": f"governance=127.0.0.1:{governance.running.port}"})
        runtime = Runtime("agents", settings, Peers(settings))
        token = current_call.set(Served())
        try:
            return await client.check_tool_call(runtime, agent="triage", tool="search",
                                                arguments={"query": "weather"})
        finally:
            current_call.reset(token)
            await runtime.peers.close()

    decision = asyncio.run(run())
    assert not decision.allowed and decision.matching_policies == ["no-search@1"]


def test_client_helper_without_governance_is_unavailable():
    import asyncio

    from mesh.governance import client
    from mesh.runtime.errors import Unavailable
    from mesh.runtime.peers import Peers
    from mesh.runtime.service import Runtime
    from mesh.runtime.settings import Settings

    async def run():
        settings = Settings(peers="governance=127.0.0.1:9")
        runtime = Runtime("agents", settings, Peers(settings))
        try:
            await client.check_tool_call(runtime, agent="triage", tool="search")
        finally:
            await runtime.peers.close()

    with pytest.raises(Unavailable):
        asyncio.run(run())


# ---- found by Schemathesis over the published OpenAPI document (tests/e2e) -------------------
@pytest.mark.parametrize("url", ["http://[", "ftp://example.com", "0"])
def test_a_webhook_url_that_is_not_http_is_a_400_naming_url(stub, me, url):
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(url=url)),
                           metadata=me.metadata())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == ["url"]


def test_unknown_intent_and_order_by_are_refused_by_the_declared_patterns(stub, me):
    for call in (lambda: stub.Dispatch(pb.DispatchRequest(intent="nope"), metadata=me.metadata()),
                 lambda: stub.ListDecisions(pb.ListDecisionsRequest(order_by="name"),
                                            metadata=me.metadata())):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_dispatch_interact_names_the_agents_version_or_label(stub, me, peers):
    agents, _ = peers
    agents.stub(agents_pb2_grpc.AgentServiceStub).CreateAgent(
        agents_pb2.CreateAgentRequest(agent=agents_pb2.Agent(name="labelled")),
        metadata=me.metadata())
    for extra, reason in [({"agent_label": "staging"}, "AGENT_LABEL_NOT_FOUND"),
                          ({"agent_version": 7}, "AGENT_VERSION_NOT_FOUND"),
                          ({}, "AGENT_NOT_RUNNABLE")]:   # found (latest), but a draft
        context = struct_pb2.Struct()
        context.update({"agent_id": "labelled", "message": "hi", **extra})
        with pytest.raises(grpc.RpcError) as caught:
            stub.Dispatch(pb.DispatchRequest(intent="interact_agent", context=context),
                          metadata=me.metadata())
        assert error_reason(caught.value) == reason, caught.value.details()
