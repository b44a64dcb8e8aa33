"""Budgets across replicas (issue 25): two agents replicas, each asking its own governance
replica, the counters in Redis; a budget of N tokens lets the first interaction through and
refuses the next with RESOURCE_EXHAUSTED `BUDGET_EXCEEDED` (429 through the gateway,
tests/e2e/test_control.py), Retry-After at the end of the day; usage readable by the tenant."""

from __future__ import annotations

import os
import uuid

import grpc
import pytest
import redis

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from agentmesh.governance.v1 import governance_pb2 as gov_pb
from agentmesh.governance.v1 import governance_pb2_grpc as gov_grpc
from mesh.agents.service import DEFINITION as AGENTS
from mesh.governance.service import DEFINITION as GOVERNANCE
from mesh.runtime import errors
from mesh.tools.service import DEFINITION as TOOLS
from tests.harness import Identity, ServiceHarness, error_reason
from tests.support.fixtures import fake_masterdata, local_server

REDIS_URL = os.environ.get("AGENTMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TOKEN = "budget-test-internal-token"

masterdata = fake_masterdata({"model-key": "sk-test-123"})
model_server = local_server("tests.fakes.openai_server:ScriptedModelServer", scope="module")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, masterdata):
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    # Two replicas of each: one database per service (shared by its replicas), the budget
    # counters in Redis.
    gov_dir, agents_dir = tmp_path_factory.mktemp("gov"), tmp_path_factory.mktemp("agents")
    common = {"internal_token": TOKEN, "egress_allow": "127.0.0.1"}
    os.environ["AGENTMESH_REDIS_URL"] = REDIS_URL  # governance's own settings read it
    try:
        gov_a = ServiceHarness(GOVERNANCE, gov_dir, **common)
        gov_b = ServiceHarness(GOVERNANCE, gov_dir, **common)
    finally:
        os.environ.pop("AGENTMESH_REDIS_URL", None)
    with gov_a, gov_b, ServiceHarness(TOOLS, tmp_path_factory.mktemp("tools"),
                                      **common) as tools:
        peers = (f"masterdata={masterdata.address},tools=127.0.0.1:{tools.running.port},"
                 "governance=127.0.0.1:")
        with ServiceHarness(AGENTS, agents_dir, peers=peers + str(gov_a.running.port),
                            **common) as agents_1, \
                ServiceHarness(AGENTS, agents_dir, peers=peers + str(gov_b.running.port),
                               **common) as agents_2:
            yield (gov_a, gov_b), (agents_1, agents_2)


def test_a_token_budget_is_shared_by_two_agents_replicas(replicas, masterdata, model_server):
    (gov_a, gov_b), (agents_1, agents_2) = replicas
    me = Identity()
    script = model_server.script(f"script-{uuid.uuid4().hex[:8]}",
                                 [{"content": "first"}, {"content": "second"}])
    model = masterdata.add_model(f"model-{uuid.uuid4().hex[:8]}", provider="openai_compatible",
                                 model_id=script, endpoint_url=model_server.base_url,
                                 secret_ref="model-key", input_per_1m=500, output_per_1m=1500)
    stub_1 = agents_1.stub(pb_grpc.AgentServiceStub)
    agent = stub_1.CreateAgent(pb.CreateAgentRequest(agent=pb.Agent(
        name=f"agent-{uuid.uuid4().hex[:8]}", model=model.name, system_prompt="Be brief.")),
        metadata=me.metadata())
    stub_1.ActivateAgent(pb.ActivateAgentRequest(agent_id=agent.id), metadata=me.metadata())
    gov_a.stub(gov_grpc.GovernanceServiceStub).SetBudget(gov_pb.SetBudgetRequest(
        budget_name="tenant", budget=gov_pb.Budget(tokens_per_day=5)), metadata=me.metadata())

    first = stub_1.InteractWithAgent(pb.InteractWithAgentRequest(
        agent_id=agent.id, message="hello"), metadata=me.metadata(), timeout=30)
    assert first.status == pb.CALL_STATUS_COMPLETED and first.tokens > 5

    stub_2 = agents_2.stub(pb_grpc.AgentServiceStub)
    with pytest.raises(grpc.RpcError) as refused:
        stub_2.InteractWithAgent(pb.InteractWithAgentRequest(
            agent_id=agent.id, message="again"), metadata=me.metadata(), timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(refused.value) == "BUDGET_EXCEEDED"
    # The window's end as google.rpc.RetryInfo (the gateway's Retry-After for REST clients).
    assert 0 < errors.retry_delay(refused.value) <= 86400
    assert len(model_server.requests_for(script)) == 1  # the model was never asked again

    listed = gov_b.stub(gov_grpc.GovernanceServiceStub).ListBudgets(
        gov_pb.ListBudgetsRequest(), metadata=me.metadata())
    tenant = listed.items[0]
    assert tenant.name == "tenant" and tenant.tokens_today == first.tokens
    assert tenant.tokens_this_month == first.tokens and tenant.tokens_remaining == 0
    calls = agents_2.stub(pb_grpc.CallServiceStub).ListCalls(
        pb.ListCallsRequest(agent_id=agent.id), metadata=me.metadata())
    assert sorted(pb.CallStatus.Name(c.status) for c in calls.items) == \
        ["CALL_STATUS_COMPLETED", "CALL_STATUS_FAILED"]
    failed = next(c for c in calls.items if c.status == pb.CALL_STATUS_FAILED)
    assert failed.reason == "BUDGET_EXCEEDED"


def test_budget_limits_are_checked(replicas):
    (gov_a, _), _ = replicas
    me = Identity()
    stub = gov_a.stub(gov_grpc.GovernanceServiceStub)
    with pytest.raises(grpc.RpcError) as bad:
        stub.SetBudget(gov_pb.SetBudgetRequest(budget_name="agent:x", budget=gov_pb.Budget(
            cents_per_month=-1)), metadata=me.metadata())
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # a mask changes only the limits it names
    stub.SetBudget(gov_pb.SetBudgetRequest(budget_name="agent:y", budget=gov_pb.Budget(
        tokens_per_day=10, cents_per_day=99)), metadata=me.metadata())
    masked = stub.SetBudget(gov_pb.SetBudgetRequest(
        budget_name="agent:y", budget=gov_pb.Budget(tokens_per_day=20),
        update_mask={"paths": ["tokens_per_day"]}), metadata=me.metadata())
    assert masked.tokens_per_day == 20 and masked.cents_per_day == 99
    with pytest.raises(grpc.RpcError) as bad_mask:
        stub.SetBudget(gov_pb.SetBudgetRequest(budget_name="agent:y",
                                               update_mask={"paths": ["name"]}),
                       metadata=me.metadata())
    assert bad_mask.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stub.DeleteBudget(gov_pb.DeleteBudgetRequest(budget_name="agent:y"), metadata=me.metadata())
    set_ = stub.SetBudget(gov_pb.SetBudgetRequest(budget_name="api_key:k1", budget=gov_pb.Budget(
        cents_per_month=250)), metadata=me.metadata())
    assert set_.usd_remaining == 2.5 and set_.tokens_remaining == -1
    names = [b.name for b in stub.ListBudgets(gov_pb.ListBudgetsRequest(),
                                             metadata=me.metadata()).items]
    assert names == ["tenant", "api_key:k1"]
    stub.DeleteBudget(gov_pb.DeleteBudgetRequest(budget_name="api_key:k1"),
                      metadata=me.metadata())
    with pytest.raises(grpc.RpcError) as gone:
        stub.DeleteBudget(gov_pb.DeleteBudgetRequest(budget_name="api_key:k1"),
                          metadata=me.metadata())
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
