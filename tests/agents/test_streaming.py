"""Streamed, background and cancelled interactions, threads and the model path, in-process: the
agents and tools services (real runtimes), a stand-in masterdata, and the scripted
OpenAI-compatible model server streaming word by word with delays."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import timedelta

import grpc
import pytest
from google.protobuf import json_format

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from agentmesh.tools.v1 import tools_pb2 as tools_pb
from agentmesh.tools.v1 import tools_pb2_grpc as tools_grpc
from mesh.agents import store
from mesh.agents.models import CallRow
from mesh.runtime.tables import utcnow
from tests.harness import error_reason

# masterdata, model_server, services, agents, calls: tests/agents/conftest.py


@pytest.fixture
def threads(services):
    return services[0].stub(pb_grpc.ThreadServiceStub)


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _model(masterdata, model_server, steps, **parameters):
    script = model_server.script(_name("script"), steps)
    model = masterdata.add_model(_name("model"), provider="openai_compatible", model_id=script,
                                 endpoint_url=model_server.base_url, secret_ref="model-key",
                                 input_per_1m=500, output_per_1m=1500,
                                 **({"default_parameters": parameters} if parameters else {}))
    return model, script


def _agent(me, agents, services, model, *, tools=(), config=None) -> pb.Agent:
    names = []
    for builtin in tools:
        tool = services[1].stub(tools_grpc.ToolServiceStub).CreateTool(
            tools_pb.CreateToolRequest(tool=tools_pb.Tool(
                name=_name(builtin), type=tools_pb.TOOL_TYPE_BUILTIN,
                status=tools_pb.TOOL_STATUS_ACTIVE, description=f"the {builtin} builtin",
                builtin=tools_pb.BuiltinToolConfig(builtin_name=builtin))),
            metadata=me.metadata())
        names.append(tool.name)
    agent = pb.Agent(name=_name("agent"), model=model.name, tools=names,
                     system_prompt="You are helpful.")
    if config:
        agent.config.update(config)
    created = agents.CreateAgent(pb.CreateAgentRequest(agent=agent), metadata=me.metadata())
    return agents.ActivateAgent(pb.ActivateAgentRequest(agent_id=created.id),
                                metadata=me.metadata())


def test_tokens_arrive_before_the_model_has_finished(me, agents, calls, services, masterdata,
                                                     model_server):
    words = "one two three four five six"
    model, _ = _model(masterdata, model_server, [{"content": words, "token_delay": 0.15}])
    agent = _agent(me, agents, services, model)
    started = time.monotonic()
    seen = []
    for event in agents.StreamInteraction(pb.InteractWithAgentRequest(
            agent_id=agent.id, message="count"), metadata=me.metadata(), timeout=30):
        seen.append((time.monotonic() - started, event))
    types = [e.type for _, e in seen]
    assert types[0] == "started" and types[-1] == "ended" and "usage" in types
    tokens = [(at, e.text) for at, e in seen if e.type == "token"]
    assert "".join(text for _, text in tokens) == words
    ended_at = seen[-1][0]
    # The first word came while the model was still writing the other five (0.15 s apart).
    assert tokens[0][0] < ended_at - 0.5, (tokens[0][0], ended_at)
    result = seen[-1][1].result
    assert result.status == pb.CALL_STATUS_COMPLETED and result.reply == words
    assert [e.seq for _, e in seen] == list(range(1, len(seen) + 1))
    usage = next(e.usage for _, e in seen if e.type == "usage")
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0 and usage.model == model.name
    call = calls.GetCall(pb.GetCallRequest(call_id=result.call_id), metadata=me.metadata())
    assert call.status == pb.CALL_STATUS_COMPLETED
    metrics = calls.GetCallMetrics(pb.GetCallMetricsRequest(call_id=result.call_id),
                                   metadata=me.metadata())
    assert metrics.first_response_ms <= 400   # the first word, not the whole answer (> 0.75 s)
    assert [json_format.MessageToDict(a)["outcome"] for a in call.model_attempts] == ["ok"]


def test_streamed_answers_read_to_their_end_leave_the_connection_for_the_next(
        me, agents, services, masterdata, model_server):
    """A streamed answer is read past `[DONE]` to the end of its body, so its connection goes
    back to the pool (mesh.agents.model_client): three streamed interactions, one connection.
    Closed after `[DONE]` instead, each one opened another."""
    model, script = _model(masterdata, model_server, [{"content": "one two three"}])
    agent = _agent(me, agents, services, model)
    for _ in range(3):
        events = list(agents.StreamInteraction(pb.InteractWithAgentRequest(
            agent_id=agent.id, message="count"), metadata=me.metadata(), timeout=30))
        assert events[-1].result.reply == "one two three"
    asked = model_server.requests_for(script)
    assert len(asked) == 3
    assert len({r["peer"] for r in asked}) == 1, [r["peer"] for r in asked]


def test_the_first_token_is_passed_on_before_the_rest_of_a_burst_is_read(model_server):
    """A model server that writes its whole answer at once (a fast one does; it is then read in
    one go): the first token is handed on and the loop turns — so the stream relaying it runs
    — before the next chunk is parsed, not after the whole burst; the rest follow in order."""
    from mesh.agents.model_client import ChatClient
    from mesh.runtime.egress import EgressPolicy
    from mesh.runtime.masterdata_client import ModelSpec

    script = model_server.script(_name("burst"), [{"content": "one two three", "burst": True}])
    spec = ModelSpec(id="m-burst", name="burst", provider="openai_compatible", model=script,
                     base_url=model_server.base_url)
    seen: list[str] = []

    async def streamed():
        loop = asyncio.get_running_loop()

        def on_token(text: str) -> None:
            seen.append(text)
            if len(seen) == 1:   # what the loop runs next: the relay of the first token
                loop.call_soon(seen.append, "relayed")
        client = ChatClient(spec, "sk-test", EgressPolicy.parse("127.0.0.1"))
        try:
            return await client.complete([{"role": "user", "content": "hi"}], [],
                                         on_token=on_token)
        finally:
            await client.close()

    turn = asyncio.run(streamed())
    assert seen == ["one", "relayed", " two", " three"]
    assert turn.content == "one two three" and turn.finish_reason == "stop"


def test_a_tool_call_mid_stream_streams_its_start_and_end(me, agents, services, masterdata,
                                                          model_server):
    model, _ = _model(masterdata, model_server, [
        {"tool_call": {"name": "$first", "arguments": {"text": "ping"}}},
        {"content": "The tool said {tool_result}", "token_delay": 0.01}])
    agent = _agent(me, agents, services, model, tools=["echo"])
    events = list(agents.StreamInteraction(pb.InteractWithAgentRequest(
        agent_id=agent.id, message="echo ping"), metadata=me.metadata(), timeout=30))
    types = [e.type for e in events]
    start, end = types.index("tool_call.started"), types.index("tool_call.ended")
    assert start < end < types.index("token") < types.index("ended")
    started = json_format.MessageToDict(events[start].tool_call)
    ended = json_format.MessageToDict(events[end].tool_call)
    assert started["name"] == agent.tools[0] and started["arguments"] == {"text": "ping"}
    assert "status" not in started
    assert ended["status"] == "COMPLETED" and ended["output"] == {"text": "ping"}
    assert events[end].step == 1 and events[types.index("token")].step == 2
    assert events[-1].result.reply == 'The tool said {"text": "ping"}'
    assert types.count("usage") == 2


def test_background_run_watched_then_cancelled_closes_the_model_connection(
        me, agents, calls, services, masterdata, model_server):
    model, script = _model(masterdata, model_server, [
        {"content": " ".join(f"w{i}" for i in range(200)), "token_delay": 0.05}])
    agent = _agent(me, agents, services, model)
    call = agents.StartInteraction(pb.InteractWithAgentRequest(agent_id=agent.id, message="go"),
                                   metadata=me.metadata(), timeout=30)
    assert call.status == pb.CALL_STATUS_ACTIVE and call.id
    watched: list[pb.InteractionEvent] = []

    def watch():
        for event in calls.WatchCall(pb.WatchCallRequest(call_id=call.id),
                                     metadata=me.metadata(), timeout=30):
            watched.append(event)

    watcher = threading.Thread(target=watch)
    watcher.start()
    deadline = time.monotonic() + 10
    while sum(e.type == "token" for e in watched) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(grpc.RpcError) as early:
        calls.GetCallResult(pb.GetCallResultRequest(call_id=call.id), metadata=me.metadata())
    assert error_reason(early.value) == "CALL_IN_PROGRESS"

    cancelled_at = time.monotonic()
    cancelled = calls.CancelCall(pb.CancelCallRequest(call_id=call.id), metadata=me.metadata())
    assert cancelled.status == pb.CALL_STATUS_CANCELLED and cancelled.reason == "CANCELLED"
    deadline = time.monotonic() + 2
    while not [d for d in model_server.disconnects if d[0] == script] and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    closed = [d for d in model_server.disconnects if d[0] == script]
    assert closed and closed[0][1] - cancelled_at < 1.0, closed
    watcher.join(10)
    assert watched[0].type == "started" and watched[-1].type == "ended"
    assert watched[-1].result.status == pb.CALL_STATUS_CANCELLED
    result = calls.GetCallResult(pb.GetCallResultRequest(call_id=call.id),
                                 metadata=me.metadata())
    assert result.status == pb.CALL_STATUS_CANCELLED and result.reason == "CANCELLED"
    with pytest.raises(grpc.RpcError) as again:
        calls.CancelCall(pb.CancelCallRequest(call_id=call.id), metadata=me.metadata())
    assert error_reason(again.value) == "CALL_ENDED"


def test_result_waits_for_a_background_run(me, agents, calls, services, masterdata,
                                           model_server):
    model, _ = _model(masterdata, model_server, [{"content": "done at last", "token_delay": 0.05}])
    agent = _agent(me, agents, services, model)
    call = agents.StartInteraction(pb.InteractWithAgentRequest(agent_id=agent.id, message="go"),
                                   metadata=me.metadata(), timeout=30)
    result = calls.GetCallResult(pb.GetCallResultRequest(call_id=call.id, wait_seconds=20),
                                 metadata=me.metadata(), timeout=30)
    assert result.status == pb.CALL_STATUS_COMPLETED and result.reply == "done at last"
    # An ended call is watched as its one `ended` event.
    events = list(calls.WatchCall(pb.WatchCallRequest(call_id=call.id), metadata=me.metadata(),
                                  timeout=10))
    assert [e.type for e in events] == ["ended"] and events[0].result.reply == "done at last"


def test_calls_whose_lease_ran_out_end_failed_at_start(me, services, tmp_path, masterdata):
    """A crash leaves a call ACTIVE with a lease nobody renews: the next start ends it."""
    agents_service = services[0]
    runs = agents_service.running.runtime.state
    db = agents_service.running.runtime.database
    row = CallRow(tenant_id=me.tenant_id, agent_id="gone", status="CALL_STATUS_ACTIVE",
                  started_at=utcnow(), lease_until=utcnow() - timedelta(seconds=1))
    fresh = CallRow(tenant_id=me.tenant_id, agent_id="alive", status="CALL_STATUS_ACTIVE",
                    started_at=utcnow(), lease_until=utcnow() + timedelta(seconds=60))

    def insert(session):
        store.calls.add(session, row)
        store.calls.add(session, fresh)
        session.commit()
        return row.id, fresh.id

    cut, alive = agents_service._run(db.write(insert))
    ended = agents_service._run(runs.sweep())
    assert (me.tenant_id, cut) in ended and (me.tenant_id, alive) not in ended
    calls = agents_service.stub(pb_grpc.CallServiceStub)
    call = calls.GetCall(pb.GetCallRequest(call_id=cut), metadata=me.metadata())
    assert call.status == pb.CALL_STATUS_FAILED and call.reason == "INTERRUPTED"
    assert "cut off" in call.error
    result = calls.GetCallResult(pb.GetCallResultRequest(call_id=cut), metadata=me.metadata())
    assert result.status == pb.CALL_STATUS_FAILED and result.reason == "INTERRUPTED"


@pytest.mark.parametrize("replica_id", ["", "agents-0"])
def test_the_only_replica_sweeps_through_two_leases_then_every_minute(replica_id, monkeypatch):
    """A named replica sweeps every LEASE_SECONDS / 3 (another replica may crash any time); the
    only one through its first two leases (the calls of the process before it), then every
    ALONE_SWEEP_SECONDS (a call whose end it could not record)."""
    import asyncio
    from types import SimpleNamespace

    from mesh.agents import runs as runs_module

    monkeypatch.setattr(runs_module, "LEASE_SECONDS", 0.3)
    monkeypatch.setattr(runs_module, "ALONE_SWEEP_SECONDS", 1.0)
    runtime = SimpleNamespace(settings=SimpleNamespace(replica_id=replica_id))
    runs = runs_module.Runs(runtime)
    swept: list[float] = []

    async def scenario():
        loop = asyncio.get_running_loop()
        began = loop.time()

        async def sweep():
            swept.append(loop.time() - began)
            return []
        runs.sweep = sweep
        keeper = asyncio.create_task(runs._keep())
        await asyncio.sleep(2.55)
        keeper.cancel()

    asyncio.run(scenario())
    if replica_id:
        assert len(swept) >= 15  # every 0.1 s, give or take the loop
    else:  # through 0.6 s, then at 1 s after the last of those, and 1 s after that
        assert 4 <= len([t for t in swept if t < 0.65]) and len(swept) <= 8, swept
        assert all(b - a >= 0.99 for a, b in zip(swept, swept[1:]) if a > 0.65), swept


def test_a_thread_of_ten_turns_sends_only_the_kept_history(me, agents, threads, services,
                                                           masterdata, model_server):
    model, script = _model(masterdata, model_server, [{"content": "reply to {user}"}])
    # 400 tokens of window, a quarter kept for the answer: each turn here is ~2 x 14 tokens.
    agent = _agent(me, agents, services, model, config={"context_window_tokens": 400})
    thread = threads.CreateThread(pb.CreateThreadRequest(thread=pb.Thread(title="ten turns")),
                                  metadata=me.metadata())
    for turn in range(1, 11):
        message = f"message number {turn:02d} " + "x" * 80
        answer = agents.InteractWithAgent(pb.InteractWithAgentRequest(
            agent_id=agent.id, thread_id=thread.id, message=message), metadata=me.metadata(),
            timeout=30)
        assert answer.status == pb.CALL_STATUS_COMPLETED, answer.error
    sent = [r["body"]["messages"] for r in model_server.requests_for(script)]
    assert len(sent) == 10
    last = sent[-1]
    assert last[0] == {"role": "system", "content": "You are helpful."}
    assert last[-1]["content"].startswith("message number 10")
    history = last[1:-1]
    assert history and len(history) < 18           # older turns were dropped ...
    assert history[0]["role"] == "user"            # ... whole, oldest first
    assert history[-1] == {"role": "assistant",
                           "content": "reply to message number 09 " + "x" * 80}
    estimate = sum(len(m["content"]) // 4 + 4 for m in last)
    assert estimate <= 400 - 100
    # The client sent only the new message each time; the thread holds all twenty.
    listed = threads.ListThreadMessages(pb.ListThreadMessagesRequest(
        thread_id=thread.id, page_size=100), metadata=me.metadata())
    assert listed.total == 20 and [m.role for m in listed.items[:2]] == ["user", "assistant"]
    assert [m.seq for m in listed.items] == list(range(1, 21))
    got = threads.GetThread(pb.GetThreadRequest(thread_id=thread.id), metadata=me.metadata())
    assert got.message_count == 20 and got.agent_id == agent.id
    other = _agent(me, agents, services, model)
    with pytest.raises(grpc.RpcError) as wrong:
        agents.InteractWithAgent(pb.InteractWithAgentRequest(
            agent_id=other.id, thread_id=thread.id, message="hi"), metadata=me.metadata())
    assert wrong.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_fallback_model_after_a_5xx_and_retry_after_honoured(me, agents, calls, services,
                                                             masterdata, model_server):
    spare, _ = _model(masterdata, model_server, [{"content": "from the spare"}])
    broken, _ = _model(masterdata, model_server, [{"status": 503, "message": "overloaded"}],
                       fallback_models=[spare.name], max_retries=1)
    agent = _agent(me, agents, services, broken)
    answer = agents.InteractWithAgent(pb.InteractWithAgentRequest(agent_id=agent.id,
                                                                  message="hi"),
                                      metadata=me.metadata(), timeout=30)
    assert answer.status == pb.CALL_STATUS_COMPLETED and answer.reply == "from the spare"
    call = calls.GetCall(pb.GetCallRequest(call_id=answer.call_id), metadata=me.metadata())
    tried = [json_format.MessageToDict(a) for a in call.model_attempts]
    assert [(a["model"], a["outcome"], a["status"]) for a in tried] == [
        (broken.name, "retried", 503), (broken.name, "failed over", 503),
        (spare.name, "ok", 200)]

    limited, _ = _model(masterdata, model_server, [{"status": 429}, {"content": "patience"}])
    agent = _agent(me, agents, services, limited)
    answer = agents.InteractWithAgent(pb.InteractWithAgentRequest(agent_id=agent.id,
                                                                  message="hi"),
                                      metadata=me.metadata(), timeout=30)
    assert answer.reply == "patience"
    call = calls.GetCall(pb.GetCallRequest(call_id=answer.call_id), metadata=me.metadata())
    assert [json_format.MessageToDict(a)["outcome"] for a in call.model_attempts] == \
        ["retried", "ok"]


def test_a_run_cancelled_before_its_first_step_still_ends(me, agents, calls, services,
                                                          masterdata, model_server):
    """Cancelling the task of a run that has not run yet (a client gone at once) still records
    its end: CANCELLED, and it is no longer kept (nor its lease renewed)."""
    model, _ = _model(masterdata, model_server, [{"content": "never"}])
    agent = _agent(me, agents, services, model)
    harness = services[0]
    runs = harness.running.runtime.state

    async def launch_and_cancel():
        from mesh.agents.interact import Interactions
        from mesh.runtime.context import Caller

        runtime = harness.running.runtime
        flow = Interactions(runtime.database, runtime.settings, runtime.peers, runtime.state)
        caller = Caller(tenant_id=me.tenant_id, user_id=me.user_id, scopes=frozenset({"*"}))
        run = await flow.launch(caller, pb.InteractWithAgentRequest(agent_id=agent.id,
                                                                    message="hi"), stream=True)
        run.stopping = "CANCELLED"
        run.task.cancel()          # before the task has run a step
        return run.call_id, await run.wait()

    call_id, result = harness._run(launch_and_cancel())
    assert result.status == pb.CALL_STATUS_CANCELLED
    assert call_id not in runs.runs
    call = calls.GetCall(pb.GetCallRequest(call_id=call_id), metadata=me.metadata())
    assert call.status == pb.CALL_STATUS_CANCELLED


def test_the_model_is_asked_before_the_call_is_written(me, agents, calls, services, masterdata,
                                                       model_server, monkeypatch):
    """Writing the call's row is not on the way to the first token (it shared the one core with
    the model request): the model is asked first, and the call is recorded all the same."""
    from mesh.agents import interact

    order: list[str] = []
    begin, next_step = interact.begin, model_server.next_step

    def recorded(*args, **kwargs):
        order.append("call written")
        return begin(*args, **kwargs)

    def asked(*args, **kwargs):
        order.append("model asked")
        return next_step(*args, **kwargs)

    monkeypatch.setattr(interact, "begin", recorded)
    monkeypatch.setattr(interact, "RECORD_AFTER", 30.0)   # a first model request may be slow
    monkeypatch.setattr(model_server, "next_step", asked)
    model, _ = _model(masterdata, model_server, [{"content": "first things first"}])
    agent = _agent(me, agents, services, model)
    events = list(agents.StreamInteraction(pb.InteractWithAgentRequest(
        agent_id=agent.id, message="go"), metadata=me.metadata(), timeout=30))
    assert order == ["model asked", "call written"]
    assert [e.type for e in events][-1] == "ended"
    call = calls.GetCall(pb.GetCallRequest(call_id=events[0].call_id), metadata=me.metadata())
    assert call.status == pb.CALL_STATUS_COMPLETED
    assert events[-1].result.reply == "first things first"


def test_a_call_waiting_for_its_model_is_shown_at_once(me, agents, calls, services, masterdata,
                                                       model_server, monkeypatch):
    """The call's row waits for the model's first answer; a client that asks for the call
    meanwhile (its id from `started`) finds it ACTIVE, in the list of active calls too."""
    from mesh.agents import interact

    monkeypatch.setattr(interact, "RECORD_AFTER", 30.0)   # only the reads may write it here
    model, _ = _model(masterdata, model_server, [{"content": "slowly", "sleep": 1.5}])
    agent = _agent(me, agents, services, model)
    stream = agents.StreamInteraction(pb.InteractWithAgentRequest(
        agent_id=agent.id, message="go"), metadata=me.metadata(), timeout=30)
    started = next(stream)
    assert started.type == "started"
    call = calls.GetCall(pb.GetCallRequest(call_id=started.call_id), metadata=me.metadata())
    assert call.status == pb.CALL_STATUS_ACTIVE and call.agent_id == agent.id
    active = calls.ListActiveCalls(pb.ListActiveCallsRequest(agent_id=agent.id),
                                   metadata=me.metadata())
    assert [c.id for c in active.items] == [started.call_id]
    rest = list(stream)
    assert rest[-1].type == "ended" and rest[-1].result.reply == "slowly"


def test_a_streamed_model_request_fails_and_falls_back_as_an_answered_one(
        me, agents, calls, services, masterdata, model_server):
    """The streamed request (ChatClient._stream: the SDK's `post`, the answer read as it comes)
    ends as the answered one does: a 5xx retried then failed over with its status, a 429
    retried, a 4xx with the server's message, an internal address refused by the egress guard,
    a slow model timed out."""
    def streamed(agent):
        events = list(agents.StreamInteraction(pb.InteractWithAgentRequest(
            agent_id=agent.id, message="hi"), metadata=me.metadata(), timeout=30))
        call = calls.GetCall(pb.GetCallRequest(call_id=events[0].call_id),
                             metadata=me.metadata())
        return "".join(e.text for e in events if e.type == "token"), call

    spare, _ = _model(masterdata, model_server, [{"content": "from the spare"}])
    broken, _ = _model(masterdata, model_server, [{"status": 503, "message": "overloaded"}],
                       fallback_models=[spare.name], max_retries=1)
    reply, call = streamed(_agent(me, agents, services, broken))
    assert reply == "from the spare" and call.status == pb.CALL_STATUS_COMPLETED
    assert [(a["model"], a["outcome"], a["status"]) for a in (
        json_format.MessageToDict(a) for a in call.model_attempts)] == [
        (broken.name, "retried", 503), (broken.name, "failed over", 503),
        (spare.name, "ok", 200)]

    limited, _ = _model(masterdata, model_server, [{"status": 429}, {"content": "patience"}])
    reply, call = streamed(_agent(me, agents, services, limited))
    assert reply == "patience"
    assert [json_format.MessageToDict(a)["outcome"] for a in call.model_attempts] == \
        ["retried", "ok"]

    refused, _ = _model(masterdata, model_server, [{"status": 400, "message": "bad field"}])
    _, call = streamed(_agent(me, agents, services, refused))
    assert call.status == pb.CALL_STATUS_FAILED and call.reason == "MODEL_ERROR"
    assert "answered HTTP 400" in call.error and "bad field" in call.error

    slow, _ = _model(masterdata, model_server, [{"sleep": 2, "content": "late"}])
    _, call = streamed(_agent(me, agents, services, slow,
                              config={"model_timeout_seconds": 0.3, "max_retries": 0}))
    assert call.reason == "MODEL_TIMEOUT" and "did not answer" in call.error

    inside = masterdata.add_model(_name("model"), provider="openai_compatible",
                                  model_id="x", endpoint_url="http://169.254.169.254/v1")
    _, call = streamed(_agent(me, agents, services, inside))
    assert call.status == pb.CALL_STATUS_FAILED and call.reason == "EGRESS_DENIED"
