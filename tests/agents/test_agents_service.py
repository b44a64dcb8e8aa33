"""The agents service alone, in-process: its domain rules, asserted by gRPC code and reason."""

from __future__ import annotations

import grpc
import pytest

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from mesh.agents.service import DEFINITION
from tests.harness import Identity, error_reason, field_violations, harness_fixture


agents_service = harness_fixture(DEFINITION)


@pytest.fixture
def stub(agents_service):
    return agents_service.stub(pb_grpc.AgentServiceStub)


def _create(stub, me, name="triage", **fields):
    return stub.CreateAgent(pb.CreateAgentRequest(agent=pb.Agent(name=name, **fields)),
                            metadata=me.metadata())


def test_create_then_get_by_id_and_by_name(stub, me):
    agent = _create(stub, me, model="gpt-4o", labels={"team": "support"})
    assert agent.status == pb.AGENT_STATUS_DRAFT and agent.tenant_id == me.tenant_id
    by_id = stub.GetAgent(pb.GetAgentRequest(agent_id=agent.id), metadata=me.metadata())
    by_name = stub.GetAgent(pb.GetAgentRequest(agent_id="triage"), metadata=me.metadata())
    assert by_id == by_name == agent


def test_other_tenant_gets_not_found(stub, me):
    agent = _create(stub, me)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetAgent(pb.GetAgentRequest(agent_id=agent.id), metadata=Identity().metadata())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "AGENT_NOT_FOUND"


def test_duplicate_name_is_already_exists(stub, me):
    _create(stub, me)
    with pytest.raises(grpc.RpcError) as caught:
        _create(stub, me)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(caught.value) == "AGENT_ALREADY_EXISTS"


def test_invalid_name_names_the_field(stub, me):
    with pytest.raises(grpc.RpcError) as caught:
        _create(stub, me, name="no spaces allowed")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == ["name"]


def test_lifecycle_transitions_and_invalid_transition_reason(stub, me):
    agent = _create(stub, me)
    with pytest.raises(grpc.RpcError) as caught:
        stub.DeployAgent(pb.DeployAgentRequest(agent_id=agent.id), metadata=me.metadata())
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "INVALID_AGENT_TRANSITION"
    active = stub.ActivateAgent(pb.ActivateAgentRequest(agent_id=agent.id), metadata=me.metadata())
    assert active.status == pb.AGENT_STATUS_ACTIVE
    deployed = stub.DeployAgent(pb.DeployAgentRequest(agent_id=agent.id), metadata=me.metadata())
    assert deployed.status == pb.AGENT_STATUS_DEPLOYED and deployed.environment == "production"
    with pytest.raises(grpc.RpcError) as caught:
        stub.DeleteAgent(pb.DeleteAgentRequest(agent_id=agent.id), metadata=me.metadata())
    assert error_reason(caught.value) == "AGENT_DEPLOYED"


def test_list_pages_newest_first_with_total(stub, me):
    names = [f"agent-{i}" for i in range(5)]
    for name in names:
        _create(stub, me, name=name)
    page = stub.ListAgents(pb.ListAgentsRequest(page=1, page_size=2), metadata=me.metadata())
    assert (page.total, page.pages, [a.name for a in page.items]) == (5, 3, ["agent-4", "agent-3"])
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListAgents(pb.ListAgentsRequest(page_size=1000), metadata=me.metadata())
    assert field_violations(caught.value) == ["page_size"]


def test_call_without_tenant_is_unauthenticated(stub):
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListAgents(pb.ListAgentsRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_archived_agent_is_read_only(stub, me):
    agent = _create(stub, me)
    archived = stub.ArchiveAgent(pb.ArchiveAgentRequest(agent_id=agent.id), metadata=me.metadata())
    assert archived.status == pb.AGENT_STATUS_ARCHIVED
    with pytest.raises(grpc.RpcError) as caught:
        stub.ActivateAgent(pb.ActivateAgentRequest(agent_id=agent.id), metadata=me.metadata())
    assert error_reason(caught.value) == "INVALID_AGENT_TRANSITION"
    with pytest.raises(grpc.RpcError) as caught:
        stub.UpdateAgent(pb.UpdateAgentRequest(agent_id=agent.id, agent=pb.Agent(description="x"),
                                               update_mask={"paths": ["description"]}),
                         metadata=me.metadata())
    assert error_reason(caught.value) == "AGENT_ARCHIVED"
    assert stub.GetAgent(pb.GetAgentRequest(agent_id=agent.id), metadata=me.metadata()).id == agent.id


@pytest.mark.parametrize("fields, field", [
    ({"name": "123e4567-e89b-12d3-a456-426614174000"}, "name"),  # would shadow an id
    ({"name": ""}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": "ok", "agent_type": "robot"}, "agent_type")])
def test_a_name_or_type_outside_the_contract_is_refused_on_create_and_update(stub, me, fields,
                                                                           field):
    with pytest.raises(grpc.RpcError) as created:
        stub.CreateAgent(pb.CreateAgentRequest(agent=pb.Agent(**fields)), metadata=me.metadata())
    assert created.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(created.value) == [field]
    if fields.get("name") == "":
        return  # an update that masks a REQUIRED field with "" keeps it (docs/contract.md)
    agent = _create(stub, me, name=f"kept-{len(fields)}-{field}-{len(fields.get('name', ''))}")
    with pytest.raises(grpc.RpcError) as updated:
        stub.UpdateAgent(pb.UpdateAgentRequest(agent_id=agent.id, agent=pb.Agent(**fields),
                                               update_mask={"paths": list(fields)}),
                         metadata=me.metadata())
    assert updated.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(updated.value) == [field]


def test_each_documented_agent_type_is_accepted(stub, me):
    for kind in ("conversational", "task", "router", "supervisor", "workflow", "tool", "custom",
                 ""):
        assert _create(stub, me, name=f"typed-{kind or 'none'}", agent_type=kind).agent_type == kind
