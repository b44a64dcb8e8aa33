"""The agent loop in-process: the agents and tools services (real runtimes, real gRPC between
them), a stand-in masterdata gRPC server, and a scripted OpenAI-compatible model server."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from agentmesh.tools.v1 import tools_pb2 as tools_pb
from agentmesh.tools.v1 import tools_pb2_grpc as tools_grpc
from tests.harness import Identity, error_reason


# masterdata, model_server, services, agents, calls: tests/agents/conftest.py


@pytest.fixture
def tools(services):
    return services[1].stub(tools_grpc.ToolServiceStub)


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _setup(me, agents, tools, masterdata, model_server, steps, *, constraints=(), config=None,
           tool_names=("echo",), prompt_id="", system_prompt="You are helpful.",
           endpoint=None) -> pb.Agent:
    """A model playing `steps`, builtin tools, an active agent using them."""
    script = model_server.script(_name("script"), steps)
    model = masterdata.add_model(_name("model"), provider="openai_compatible", model_id=script,
                                 endpoint_url=endpoint or model_server.base_url,
                                 secret_ref="model-key", input_per_1m=500, output_per_1m=1500)
    names = []
    for builtin in tool_names:
        tool = tools.CreateTool(tools_pb.CreateToolRequest(tool=tools_pb.Tool(
            name=_name(builtin), type=tools_pb.TOOL_TYPE_BUILTIN, status=tools_pb.TOOL_STATUS_ACTIVE,
            description=f"the {builtin} builtin",
            builtin=tools_pb.BuiltinToolConfig(builtin_name=builtin))), metadata=me.metadata())
        names.append(tool.name)
    agent = pb.Agent(name=_name("agent"), model=model.name, tools=names,
                     constraints=list(constraints), prompt_id=prompt_id,
                     system_prompt=system_prompt)
    if config:
        agent.config.update(config)
    created = agents.CreateAgent(pb.CreateAgentRequest(agent=agent), metadata=me.metadata())
    return agents.ActivateAgent(pb.ActivateAgentRequest(agent_id=created.id),
                                metadata=me.metadata())


def _interact(agents, me, agent, message, **fields):
    return agents.InteractWithAgent(pb.InteractWithAgentRequest(
        agent_id=agent.id, message=message, **fields), metadata=me.metadata(), timeout=60)


def _transcript(calls, me, call_id):
    return calls.GetCallTranscript(pb.GetCallTranscriptRequest(call_id=call_id),
                                   metadata=me.metadata()).entries


def test_answer_that_needs_a_tool_call(me, agents, calls, tools, masterdata, model_server):
    agent = _setup(me, agents, tools, masterdata, model_server, [
        {"tool_call": {"name": "$first", "arguments": {"text": "ping"}}},
        {"content": "The tool answered {tool_result}"}])
    answer = _interact(agents, me, agent, "please echo ping")
    assert answer.status == pb.CALL_STATUS_COMPLETED, answer.error
    assert answer.reply == 'The tool answered {"text": "ping"}'
    assert [json_format.MessageToDict(c)["status"] for c in answer.tool_calls] == ["COMPLETED"]
    assert answer.tokens > 0 and answer.cost_usd > 0

    sent = model_server.requests_for(masterdata.models[agent.model].model_id)
    assert sent[0]["headers"]["authorization"] == "Bearer sk-test-123"
    assert sent[0]["body"]["messages"][0] == {"role": "system", "content": "You are helpful."}
    assert [t["function"]["name"] for t in sent[0]["body"]["tools"]] == [agent.tools[0]]

    call = calls.GetCall(pb.GetCallRequest(call_id=answer.call_id), metadata=me.metadata())
    assert call.status == pb.CALL_STATUS_COMPLETED and call.agent_id == agent.id
    assert call.model == agent.model and call.provider == "openai_compatible" and call.tool_calls == 1
    assert call.prompt_tokens + call.completion_tokens == answer.tokens
    expected = (call.prompt_tokens * 500 + call.completion_tokens * 1500) / 1e6
    assert call.cost_usd == pytest.approx(expected)
    assert call.ended_at.seconds and call.duration_ms >= 0
    entries = _transcript(calls, me, answer.call_id)
    assert [e.role for e in entries] == ["user", "agent", "tool", "agent"]
    tool_entry = json_format.MessageToDict(entries[2].metadata)
    assert tool_entry["status"] == "COMPLETED" and tool_entry["arguments"] == {"text": "ping"}
    assert entries[1].metadata["tool_calls"][0]["function"] == agent.tools[0]
    assert entries[3].metadata["prompt_tokens"] > 0 and entries[0].timestamp.seconds
    metrics = calls.GetCallMetrics(pb.GetCallMetricsRequest(call_id=answer.call_id),
                                   metadata=me.metadata())
    assert metrics.tool_calls == 1 and metrics.turns == 4 and metrics.cost_usd == call.cost_usd

    # The tool execution is recorded by the tools service, linked to the call.
    stats = tools.GetToolStats(tools_pb.GetToolStatsRequest(tool_id=agent.tools[0]),
                               metadata=me.metadata())
    assert stats.total_executions == 1 and stats.successful_executions == 1


def test_interactions_reuse_the_connection_to_the_model_server(me, agents, tools, masterdata,
                                                               model_server):
    """The agents service keeps its connections to model servers between interactions
    (mesh.agents.model_client.ModelConnections): the next interaction's model request goes
    over the connection the last one opened, not a new one."""
    agent = _setup(me, agents, tools, masterdata, model_server, [{"content": "hello"}])
    for _ in range(3):
        assert _interact(agents, me, agent, "hi").reply == "hello"
    asked = model_server.requests_for(masterdata.models[agent.model].model_id)
    peers = {r["peer"] for r in asked}
    assert len(asked) == 3
    assert len(peers) == 1, peers


def test_conversation_continues_with_history(me, agents, calls, tools, masterdata, model_server):
    agent = _setup(me, agents, tools, masterdata, model_server, [{"content": "you said {user}"}])
    first = _interact(agents, me, agent, "hello")
    second = _interact(agents, me, agent, "again", call_id=first.call_id)
    assert second.call_id == first.call_id and second.reply == "you said again"
    last = model_server.requests_for(masterdata.models[agent.model].model_id)[-1]["body"]
    assert [m["role"] for m in last["messages"]] == ["system", "user", "assistant", "user"]
    assert [e.role for e in _transcript(calls, me, first.call_id)] == ["user", "agent"] * 2


def test_malformed_tool_call_is_fed_back_and_the_model_recovers(
        me, agents, calls, tools, masterdata, model_server):
    agent = _setup(me, agents, tools, masterdata, model_server, [
        {"raw_tool_call": {"name": "$first", "arguments": "{not json"}},
        {"content": "sorry: {tool_result}"}])
    answer = _interact(agents, me, agent, "go")
    assert answer.status == pb.CALL_STATUS_COMPLETED
    assert "not valid JSON" in answer.reply
    tool_entry = _transcript(calls, me, answer.call_id)[2]
    assert tool_entry.role == "tool" and tool_entry.metadata["status"] == "FAILED"


def test_rate_limited_then_success_is_retried(me, agents, tools, masterdata, model_server):
    agent = _setup(me, agents, tools, masterdata, model_server, [
        {"status": 429}, {"content": "finally"}])
    answer = _interact(agents, me, agent, "hi")
    assert answer.status == pb.CALL_STATUS_COMPLETED and answer.reply == "finally"
    assert len(model_server.requests_for(masterdata.models[agent.model].model_id)) == 2


def test_max_steps_reached_ends_the_call_with_its_reason(
        me, agents, calls, tools, masterdata, model_server):
    masterdata.add_constraint("two-steps", {"max_steps": 2})
    agent = _setup(me, agents, tools, masterdata, model_server, [
        {"tool_call": {"name": "$first", "arguments": {"again": True}}}],
        constraints=["two-steps"])
    answer = _interact(agents, me, agent, "loop forever")
    assert answer.status == pb.CALL_STATUS_FAILED and answer.reason == "MAX_STEPS_REACHED"
    call = calls.GetCall(pb.GetCallRequest(call_id=answer.call_id), metadata=me.metadata())
    assert call.status == pb.CALL_STATUS_FAILED and call.reason == "MAX_STEPS_REACHED"
    assert "2 steps" in call.error and call.tool_calls == 2
    roles = [e.role for e in _transcript(calls, me, answer.call_id)]
    assert roles == ["user", "agent", "tool", "agent", "tool", "system"]


def test_denied_tool_is_not_offered_and_asking_for_it_ends_the_call(
        me, agents, calls, tools, masterdata, model_server):
    agent = _setup(me, agents, tools, masterdata, model_server, [], tool_names=("echo", "math"))
    denied = agent.tools[1]
    masterdata.add_constraint(f"deny-{denied}", {"denied_tools": [denied]})
    model_server.script(masterdata.models[agent.model].model_id, [
        {"tool_call": {"name": denied, "arguments": {"expression": "1+1"}}}])
    agents.UpdateAgent(pb.UpdateAgentRequest(agent_id=agent.id, agent=pb.Agent(
        constraints=[f"deny-{denied}"])), metadata=me.metadata())
    answer = _interact(agents, me, agent, "compute")
    assert answer.status == pb.CALL_STATUS_FAILED and answer.reason == "TOOL_DENIED"
    offered = model_server.requests_for(masterdata.models[agent.model].model_id)[0]["body"]["tools"]
    assert [t["function"]["name"] for t in offered] == [agent.tools[0]]
    call = calls.GetCall(pb.GetCallRequest(call_id=answer.call_id), metadata=me.metadata())
    assert call.reason == "TOOL_DENIED" and denied in call.error
    stats = tools.GetToolStats(tools_pb.GetToolStatsRequest(tool_id=denied), metadata=me.metadata())
    assert stats.total_executions == 0  # never ran


def test_max_tokens_per_call_is_sent_and_a_cut_off_answer_ends_the_call(
        me, agents, tools, masterdata, model_server):
    masterdata.add_constraint("short", {"max_tokens_per_call": 5})
    agent = _setup(me, agents, tools, masterdata, model_server, [
        {"content": "a very long answ", "length": True}], constraints=["short"])
    answer = _interact(agents, me, agent, "talk")
    assert answer.status == pb.CALL_STATUS_FAILED and answer.reason == "MAX_TOKENS_EXCEEDED"
    sent = model_server.requests_for(masterdata.models[agent.model].model_id)[0]["body"]
    assert sent["max_tokens"] == 5


def test_timeouts_end_the_call_with_their_reason(me, agents, calls, tools, masterdata,
                                                 model_server):
    masterdata.add_constraint("one-second", {"timeout_seconds": 1})
    agent = _setup(me, agents, tools, masterdata, model_server, [{"sleep": 3, "content": "late"}],
                   constraints=["one-second"])
    started = time.monotonic()
    answer = _interact(agents, me, agent, "hurry")
    assert answer.status == pb.CALL_STATUS_FAILED and answer.reason == "TIMEOUT"
    assert time.monotonic() - started < 2.5

    agent = _setup(me, agents, tools, masterdata, model_server, [{"sleep": 2, "content": "late"}],
                   config={"model_timeout_seconds": 0.3})
    answer = _interact(agents, me, agent, "hurry")
    assert answer.status == pb.CALL_STATUS_FAILED and answer.reason == "MODEL_TIMEOUT"
    call = calls.GetCall(pb.GetCallRequest(call_id=answer.call_id), metadata=me.metadata())
    assert call.reason == "MODEL_TIMEOUT" and "did not answer" in call.error


def test_model_endpoint_is_behind_the_egress_guard(me, agents, tools, masterdata, model_server):
    agent = _setup(me, agents, tools, masterdata, model_server, [{"content": "x"}],
                   endpoint="http://169.254.169.254/v1")
    answer = _interact(agents, me, agent, "hi")
    assert answer.status == pb.CALL_STATUS_FAILED and answer.reason == "EGRESS_DENIED"


def test_prompt_from_master_data_is_rendered_with_the_context(
        me, agents, tools, masterdata, model_server):
    prompt = masterdata.add_prompt(_name("prompt"), "You help {{customer}} in {{language}}.",
                                   variables=[{"name": "customer", "required": True},
                                              {"name": "language", "default_value": "English"}])
    agent = _setup(me, agents, tools, masterdata, model_server, [{"content": "ok"}],
                   prompt_id=prompt.name, system_prompt="")
    request = pb.InteractWithAgentRequest(agent_id=agent.id, message="hi")
    request.context.update({"customer": "ACME"})
    assert agents.InteractWithAgent(request, metadata=me.metadata()).reply == "ok"
    sent = model_server.requests_for(masterdata.models[agent.model].model_id)[-1]["body"]
    assert sent["messages"][0]["content"] == "You help ACME in English."
    with pytest.raises(grpc.RpcError) as caught:
        _interact(agents, me, agent, "no context")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "PROMPT_VARIABLES_MISSING"


def test_only_active_or_deployed_agents_interact(me, agents):
    agent = agents.CreateAgent(pb.CreateAgentRequest(agent=pb.Agent(name=_name("draft"))),
                               metadata=me.metadata())
    with pytest.raises(grpc.RpcError) as caught:
        _interact(agents, me, agent, "hi")
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert error_reason(caught.value) == "AGENT_NOT_RUNNABLE"


def test_calls_are_listed_filtered_and_tenant_scoped(me, agents, calls, tools, masterdata,
                                                     model_server):
    agent = _setup(me, agents, tools, masterdata, model_server, [{"content": "fine"}])
    before = timestamp_pb2.Timestamp()
    before.GetCurrentTime()
    ok = _interact(agents, me, agent, "one")
    model_server.script(masterdata.models[agent.model].model_id, [{"status": 500}])
    failed = _interact(agents, me, agent, "two")
    assert failed.status == pb.CALL_STATUS_FAILED and failed.reason == "MODEL_ERROR"
    listed = calls.ListCalls(pb.ListCallsRequest(agent_id=agent.id), metadata=me.metadata())
    assert {c.id for c in listed.items} == {ok.call_id, failed.call_id} and listed.total == 2
    only_failed = calls.ListCalls(pb.ListCallsRequest(agent_id=agent.id,
                                                      status=pb.CALL_STATUS_FAILED),
                                  metadata=me.metadata())
    assert [c.id for c in only_failed.items] == [failed.call_id]
    in_range = calls.ListCalls(pb.ListCallsRequest(agent_id=agent.id, started_after=before),
                               metadata=me.metadata())
    assert in_range.total == 2
    none = calls.ListCalls(pb.ListCallsRequest(agent_id=agent.id, started_before=before),
                           metadata=me.metadata())
    assert none.total == 0
    active = calls.ListActiveCalls(pb.ListActiveCallsRequest(agent_id=agent.id),
                                   metadata=me.metadata())
    assert active.total == 0
    other = Identity()
    for fn in (calls.GetCall, calls.GetCallTranscript, calls.GetCallMetrics):
        request_type = {calls.GetCall: pb.GetCallRequest,
                        calls.GetCallTranscript: pb.GetCallTranscriptRequest,
                        calls.GetCallMetrics: pb.GetCallMetricsRequest}[fn]
        with pytest.raises(grpc.RpcError) as caught:
            fn(request_type(call_id=ok.call_id), metadata=other.metadata())
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert calls.ListCalls(pb.ListCallsRequest(), metadata=other.metadata()).total == 0


def test_a_call_in_progress_is_listed_as_active(me, agents, calls, tools, masterdata,
                                                model_server):
    import threading

    agent = _setup(me, agents, tools, masterdata, model_server, [{"sleep": 1.5, "content": "done"}])
    answers = []
    worker = threading.Thread(target=lambda: answers.append(_interact(agents, me, agent, "slow")))
    worker.start()
    deadline = time.monotonic() + 5
    active = None
    while time.monotonic() < deadline:
        active = calls.ListActiveCalls(pb.ListActiveCallsRequest(agent_id=agent.id),
                                       metadata=me.metadata())
        if active.total:
            break
        time.sleep(0.05)
    assert active.total == 1 and active.items[0].status == pb.CALL_STATUS_ACTIVE
    call_id = active.items[0].id
    with pytest.raises(grpc.RpcError) as caught:  # one message at a time per call
        _interact(agents, me, agent, "meanwhile", call_id=call_id)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert error_reason(caught.value) == "CALL_IN_PROGRESS"
    worker.join(10)
    assert answers[0].call_id == call_id and answers[0].reply == "done"
    assert calls.ListActiveCalls(pb.ListActiveCallsRequest(agent_id=agent.id),
                                 metadata=me.metadata()).total == 0


def test_misconfigured_agents_are_refused_before_any_call(me, agents, calls, tools, masterdata,
                                                          model_server):
    def refused(**fields):
        agent = agents.CreateAgent(pb.CreateAgentRequest(agent=pb.Agent(
            name=_name("broken"), **fields)), metadata=me.metadata())
        agents.ActivateAgent(pb.ActivateAgentRequest(agent_id=agent.id), metadata=me.metadata())
        with pytest.raises(grpc.RpcError) as caught:
            _interact(agents, me, agent, "hi")
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        return error_reason(caught.value)

    assert refused() == "AGENT_HAS_NO_MODEL"
    assert refused(model="no-such-model") == "MODEL_NOT_FOUND"
    good = _setup(me, agents, tools, masterdata, model_server, [{"content": "x"}])
    assert refused(model=good.model, constraints=["no-such-limit"]) == "CONSTRAINT_NOT_FOUND"
    # A tool of another tenant is not found for this one.
    stranger = Identity()
    theirs = tools.CreateTool(tools_pb.CreateToolRequest(tool=tools_pb.Tool(
        name=_name("theirs"), type=tools_pb.TOOL_TYPE_BUILTIN, status=tools_pb.TOOL_STATUS_ACTIVE,
        builtin=tools_pb.BuiltinToolConfig(builtin_name="echo"))), metadata=stranger.metadata())
    assert refused(model=good.model, tools=[theirs.id]) == "TOOL_NOT_FOUND"
    assert calls.ListCalls(pb.ListCallsRequest(), metadata=me.metadata()).total == 0  # none recorded
