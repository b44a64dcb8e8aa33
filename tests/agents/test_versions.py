"""An agent's immutable versions and version labels (mesh.runtime.versions, AGENT_VERSIONS): each
create and each change is a version (who, when), labels point at versions, an interaction runs
the version its label names (default `production`, else `latest`) and its call records it."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from tests.harness import Identity, error_reason

# masterdata, model_server, services, agents, calls: tests/agents/conftest.py


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _model(masterdata, model_server, reply):
    script = model_server.script(_name("script"), [{"content": reply}] * 10)
    return masterdata.add_model(_name("model"), provider="openai_compatible", model_id=script,
                                endpoint_url=model_server.base_url, secret_ref="model-key")


def _update(agents, me, agent_id, **fields):
    return agents.UpdateAgent(pb.UpdateAgentRequest(agent_id=agent_id, agent=pb.Agent(**fields)),
                              metadata=me.metadata())


def _interact(agents, me, agent_id, **fields):
    return agents.InteractWithAgent(pb.InteractWithAgentRequest(
        agent_id=agent_id, message="hi", **fields), metadata=me.metadata(), timeout=60)


@pytest.fixture
def versioned(me, agents, masterdata, model_server):
    """An active agent with three versions: version n runs model n with prompt "prompt n"."""
    models = [_model(masterdata, model_server, f"answer of model {n}") for n in (1, 2, 3)]
    created = agents.CreateAgent(pb.CreateAgentRequest(agent=pb.Agent(
        name=_name("agent"), model=models[0].name, system_prompt="prompt 1")),
        metadata=me.metadata())
    agents.ActivateAgent(pb.ActivateAgentRequest(agent_id=created.id), metadata=me.metadata())
    for n in (2, 3):
        _update(agents, me, created.id, model=models[n - 1].name, system_prompt=f"prompt {n}")
    return created, models


def test_every_change_is_an_immutable_version_with_who_and_when(me, agents, versioned):
    created, models = versioned
    assert created.version == 1
    listed = agents.ListAgentVersions(pb.ListAgentVersionsRequest(agent_id=created.name),
                                      metadata=me.metadata())
    assert listed.total == 3
    assert [(v.version, v.agent.model, v.agent.system_prompt, list(v.labels))
            for v in listed.items] == [(3, models[2].name, "prompt 3", ["latest"]),
                                       (2, models[1].name, "prompt 2", []),
                                       (1, models[0].name, "prompt 1", [])]
    assert all(v.created_by == me.user_id and v.created_at.seconds for v in listed.items)
    one = agents.GetAgentVersion(pb.GetAgentVersionRequest(agent_id=created.id, version=1),
                                 metadata=me.metadata())
    assert one.agent.system_prompt == "prompt 1" and one.agent.version == 1
    # An update that changes nothing makes no version; lifecycle actions make none either.
    again = _update(agents, me, created.id, system_prompt="prompt 3")
    agents.DeactivateAgent(pb.DeactivateAgentRequest(agent_id=created.id), metadata=me.metadata())
    assert again.version == 3 and agents.ListAgentVersions(pb.ListAgentVersionsRequest(
        agent_id=created.id), metadata=me.metadata()).total == 3
    with pytest.raises(grpc.RpcError) as err:
        agents.GetAgentVersion(pb.GetAgentVersionRequest(agent_id=created.id, version=9),
                               metadata=me.metadata())
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(err.value) == "AGENT_VERSION_NOT_FOUND"


def test_a_diff_names_the_fields_that_changed(me, agents, versioned):
    created, models = versioned
    diff = agents.DiffAgentVersions(pb.DiffAgentVersionsRequest(agent_id=created.id, version=3),
                                    metadata=me.metadata())
    assert (diff.resource_id, diff.from_version, diff.to_version) == (created.id, 2, 3)
    assert [(c.field, json_format.MessageToDict(c.before), json_format.MessageToDict(c.after))
            for c in diff.changes] == [("model", models[1].name, models[2].name),
                                       ("system_prompt", "prompt 2", "prompt 3")]
    against = agents.DiffAgentVersions(pb.DiffAgentVersionsRequest(
        agent_id=created.id, version=1, against=3), metadata=me.metadata())
    assert (against.from_version, against.to_version) == (3, 1)
    assert [c.field for c in against.changes] == ["model", "system_prompt"]


def test_labels_move_and_a_read_by_label(me, agents, versioned):
    created, _ = versioned
    labelled = agents.SetAgentLabel(pb.SetAgentLabelRequest(
        agent_id=created.id, label="production", version=2), metadata=me.metadata())
    assert dict(labelled.version_labels) == {"production": 2} and labelled.version == 3
    by_label = agents.GetAgent(pb.GetAgentRequest(agent_id=created.name, label="production"),
                               metadata=me.metadata())
    assert by_label.version == 2 and by_label.system_prompt == "prompt 2"
    latest = agents.GetAgent(pb.GetAgentRequest(agent_id=created.id, label="latest"),
                             metadata=me.metadata())
    assert latest.version == 3 and latest.system_prompt == "prompt 3"
    assert agents.GetAgent(pb.GetAgentRequest(agent_id=created.id), metadata=me.metadata()
                           ).version_labels == {"production": 2}
    for label, reason in [("latest", "INVALID_ARGUMENT"), ("staging", "AGENT_VERSION_NOT_FOUND")]:
        with pytest.raises(grpc.RpcError) as err:
            agents.SetAgentLabel(pb.SetAgentLabelRequest(agent_id=created.id, label=label,
                                                         version=7), metadata=me.metadata())
        assert error_reason(err.value) == reason
    with pytest.raises(grpc.RpcError) as err:
        agents.GetAgent(pb.GetAgentRequest(agent_id=created.id, label="staging"),
                        metadata=me.metadata())
    assert error_reason(err.value) == "AGENT_LABEL_NOT_FOUND"
    agents.DeleteAgentLabel(pb.DeleteAgentLabelRequest(agent_id=created.id, label="production"),
                            metadata=me.metadata())
    assert not agents.GetAgent(pb.GetAgentRequest(agent_id=created.id),
                               metadata=me.metadata()).version_labels
    # Another tenant sees none of it.
    with pytest.raises(grpc.RpcError) as err:
        agents.ListAgentVersions(pb.ListAgentVersionsRequest(agent_id=created.id),
                                 metadata=Identity().metadata())
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_interaction_runs_the_labelled_version_and_the_call_records_it(
        me, agents, calls, versioned, masterdata, model_server):
    created, models = versioned

    def ran(answer):
        call = calls.GetCall(pb.GetCallRequest(call_id=answer.call_id), metadata=me.metadata())
        sent = model_server.requests_for(masterdata.models[call.model].model_id)[-1]["body"]
        return (call.agent_version, call.agent_label, call.model, answer.reply,
                sent["messages"][0]["content"])

    # No production label: latest.
    assert ran(_interact(agents, me, created.id)) == (
        3, "latest", models[2].name, "answer of model 3", "prompt 3")
    agents.SetAgentLabel(pb.SetAgentLabelRequest(agent_id=created.id, label="production",
                                                 version=2), metadata=me.metadata())
    assert ran(_interact(agents, me, created.id)) == (
        2, "production", models[1].name, "answer of model 2", "prompt 2")
    # Rollback: the label moves back, the next call runs version 1.
    agents.SetAgentLabel(pb.SetAgentLabelRequest(agent_id=created.id, label="production",
                                                 version=1), metadata=me.metadata())
    assert ran(_interact(agents, me, created.id)) == (
        1, "production", models[0].name, "answer of model 1", "prompt 1")
    # A version or another label named by the interaction.
    assert ran(_interact(agents, me, created.id, version=3))[:3] == (3, "", models[2].name)
    assert ran(_interact(agents, me, created.id, label="latest"))[:2] == (3, "latest")
    with pytest.raises(grpc.RpcError) as err:
        _interact(agents, me, created.id, label="production", version=3)
    assert error_reason(err.value) == "AGENT_LABEL_NOT_FOUND"


def test_the_openai_door_names_a_version_or_label_after_the_agent(
        me, agents, calls, services, versioned, masterdata, model_server):
    created, models = versioned
    chat = services[0].stub(pb_grpc.ChatCompletionServiceStub)
    agents.SetAgentLabel(pb.SetAgentLabelRequest(agent_id=created.id, label="production",
                                                 version=1), metadata=me.metadata())

    def complete(model):
        answer = chat.CreateChatCompletion(pb.CreateChatCompletionRequest(
            model=model, messages=[pb.ChatMessage(role="user",
                                                  content=struct_pb2.Value(string_value="hi"))]),
            metadata=me.metadata(), timeout=60)
        call = calls.GetCall(pb.GetCallRequest(call_id=answer.call_id), metadata=me.metadata())
        return call.agent_version, call.agent_label, answer.choices[0].message.content

    assert complete(created.name) == (1, "production", "answer of model 1")
    assert complete(f"{created.name}@latest") == (3, "latest", "answer of model 3")
    assert complete(f"{created.name}@2") == (2, "", "answer of model 2")


def test_streamed_and_background_interactions_take_a_version_or_label(
        me, agents, calls, versioned):
    created, models = versioned
    agents.SetAgentLabel(pb.SetAgentLabelRequest(agent_id=created.id, label="staging",
                                                 version=2), metadata=me.metadata())
    events = list(agents.StreamInteraction(pb.StreamInteractionRequest(
        agent_id=created.id, message="hi", label="staging"), metadata=me.metadata(), timeout=60))
    streamed = calls.GetCall(pb.GetCallRequest(call_id=events[0].call_id), metadata=me.metadata())
    assert (streamed.agent_version, streamed.agent_label, streamed.model) == (
        2, "staging", models[1].name)
    started = agents.StartInteraction(pb.StartInteractionRequest(
        agent_id=created.id, message="hi", version=1), metadata=me.metadata())
    assert (started.agent_version, started.agent_label) == (1, "")
    result = calls.GetCallResult(pb.GetCallResultRequest(call_id=started.id, wait_seconds=30),
                                 metadata=me.metadata())
    assert result.agent_version == 1 and result.reply == "answer of model 1"


def test_each_interaction_reads_the_agent_afresh(me, agents, calls, versioned, masterdata,
                                                 model_server):
    """A version's fields are kept between interactions (mesh.agents.store.VersionFields: a
    version never changes); the agent's row is read every time: a change, a deactivation or a
    deletion shows on the very next interaction, and the agent is another tenant's to no one."""
    created, models = versioned

    def ran(**fields):
        answer = _interact(agents, me, created.id, **fields)
        call = calls.GetCall(pb.GetCallRequest(call_id=answer.call_id), metadata=me.metadata())
        sent = model_server.requests_for(masterdata.models[call.model].model_id)[-1]["body"]
        return call.agent_version, answer.reply, sent["messages"][0]["content"]

    assert ran() == (3, "answer of model 3", "prompt 3")
    assert ran(version=2) == (2, "answer of model 2", "prompt 2")   # versions 3 and 2 kept
    _update(agents, me, created.id, model=models[0].name, system_prompt="prompt 4")
    assert ran() == (4, "answer of model 1", "prompt 4")
    assert ran(version=3) == (3, "answer of model 3", "prompt 3")
    agents.DeactivateAgent(pb.DeactivateAgentRequest(agent_id=created.id),
                           metadata=me.metadata())
    with pytest.raises(grpc.RpcError) as err:
        _interact(agents, me, created.id)
    assert error_reason(err.value) == "AGENT_NOT_RUNNABLE"
    agents.ActivateAgent(pb.ActivateAgentRequest(agent_id=created.id), metadata=me.metadata())
    assert ran()[0] == 4
    with pytest.raises(grpc.RpcError) as err:   # another tenant: the same id is not found
        agents.InteractWithAgent(pb.InteractWithAgentRequest(
            agent_id=created.id, message="hi", version=3), metadata=Identity().metadata(),
            timeout=60)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(err.value) == "AGENT_NOT_FOUND"
    with pytest.raises(grpc.RpcError) as err:
        _interact(agents, me, created.id, version=9)
    assert error_reason(err.value) == "AGENT_VERSION_NOT_FOUND"
    agents.DeleteAgent(pb.DeleteAgentRequest(agent_id=created.id), metadata=me.metadata())
    with pytest.raises(grpc.RpcError) as err:
        _interact(agents, me, created.id, version=3)
    assert error_reason(err.value) == "AGENT_NOT_FOUND"
