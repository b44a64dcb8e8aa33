"""Executions on DBOS through the real service (SQLite and PostgreSQL): multi-step graphs,
retries and timeouts visible in step state, cancel, terminate, retry from the failed step,
approvals, sub-workflows, schedules, idempotency keys, the watch stream, tenancy."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from google.protobuf import json_format

from agentmesh.workflows.v1 import workflows_pb2 as pb
from tests.harness import Identity, error_reason
from tests.workflows.conftest import Client, output, states, status_name, step_status


def _name():
    return f"Flow {uuid.uuid4().hex[:8]}"


def http_step(step_id: str, url: str, **extra) -> dict:
    return {"id": step_id, "type": "STEP_TYPE_HTTP", "http": {"url": url}, **extra}


def test_graph_with_condition_parallel_tool_agent_runs_to_completion(client, peers):
    wf = client.create(_name(), [
        {"id": "prepare", "type": "STEP_TYPE_TRANSFORM",
         "transform": {"expression": "{topic: inputs.topic, n: length(inputs.items)}"}},
        {"id": "fetch", "type": "STEP_TYPE_TOOL", "depends_on": ["prepare"],
         "inputs": {"q": "steps.prepare.output.topic"}, "tool": {"tool_id": "search"}},
        {"id": "check", "type": "STEP_TYPE_CONDITION", "depends_on": ["fetch"],
         "condition": {"expression": "length(steps.fetch.output.items) > 2",
                       "then_step_ids": ["fanout"], "else_step_ids": ["nothing"]}},
        {"id": "nothing", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "'none'"}},
        {"id": "fanout", "type": "STEP_TYPE_PARALLEL", "parallel": {"branches": [
            {"name": "left", "step_ids": ["l1", "l2"]}, {"name": "right", "step_ids": ["r1"]}]}},
        {"id": "l1", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "`1`"}},
        {"id": "l2", "type": "STEP_TYPE_TRANSFORM", "inputs": {"v": "steps.l1.output"},
         "transform": {"expression": "sum([args.v, `10`])"}},
        {"id": "r1", "type": "STEP_TYPE_TOOL", "tool": {"tool_id": "calc"},
         "inputs": {"x": "inputs.topic"}},
        {"id": "summarize", "type": "STEP_TYPE_AGENT", "depends_on": ["fanout"],
         "inputs": {"left": "steps.fanout.output.left"},
         "agent": {"agent_id": "writer", "prompt": "Summarize {{left}}"}},
    ], outputs={"summary": "steps.summarize.output.reply", "left": "steps.fanout.output.left"})
    execution = client.execute(wf.id, {"topic": "dbos", "items": [1, 2]})
    assert status_name(execution) == "EXECUTION_STATUS_QUEUED"
    assert execution.workflow_version == 1 and execution.progress == 0
    done = client.wait(execution.id)
    assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done
    outputs = json_format.MessageToDict(done.outputs)
    assert outputs == {"summary": "agent says: Summarize 11", "left": 11}
    assert step_status(done, "nothing") == "STEP_STATUS_SKIPPED"
    assert done.progress == 100 and done.started_at.seconds and done.ended_at.seconds
    assert "fetch" in done.phases_completed and "nothing" not in done.phases_completed
    assert output(done, "fetch")["echo"] == {"q": "dbos"}
    # The tool got an idempotency key of execution id + step id + attempt, and the tenant.
    keys = [key for tool, key, _ in peers.tools.calls if tool == "search"]
    assert f"{execution.id}:fetch:1" in keys
    assert client.identity.tenant_id in peers.tools.tenants
    partial = json_format.MessageToDict(done.partial_results)
    assert partial["prepare"] == {"topic": "dbos", "n": 2}


def test_retry_policy_attempts_and_errors_visible(client, web):
    name = uuid.uuid4().hex
    wf = client.create(_name(), [http_step("flaky", f"{web.url}/flaky?fail=2&name={name}",
                                           retry_policy={"max_attempts": 4,
                                                         "initial_backoff": "0.05s"})])
    done = client.wait(client.execute(wf.id).id)
    assert status_name(done) == "EXECUTION_STATUS_COMPLETED"
    state = states(done)["flaky"]
    assert state.attempts == 3 and output(done, "flaky")["attempt"] == 3
    assert [e.code for e in done.errors] == ["HTTP_5XX", "HTTP_5XX"]
    assert all(e.step_id == "flaky" for e in done.errors)


def test_retryable_errors_limit_retries(client, web):
    wf = client.create(_name(), [http_step("bad", f"{web.url}/status?code=400", retry_policy={
        "max_attempts": 3, "initial_backoff": "0.05s", "retryable_errors": ["HTTP_5XX"]})])
    done = client.wait(client.execute(wf.id).id)
    assert status_name(done) == "EXECUTION_STATUS_FAILED"
    assert states(done)["bad"].attempts == 1 and done.errors[0].code == "HTTP_4XX"


@pytest.mark.parametrize("url", ["http://127.0.0.2:9/", "http://169.254.169.254/latest",
                                 "http://10.0.0.1/", "http://[::1]:9/"])
def test_an_http_step_to_a_refused_address_fails_once_with_egress_denied(client, url):
    """The service allows 127.0.0.1 only: anything else internal is refused before a
    connection is made, and a retry policy does not try again."""
    wf = client.create(_name(), [http_step("probe", url, retry_policy={
        "max_attempts": 3, "initial_backoff": "0.05s"})])
    done = client.wait(client.execute(wf.id).id)
    assert status_name(done) == "EXECUTION_STATUS_FAILED"
    assert states(done)["probe"].attempts == 1
    assert [e.code for e in done.errors] == ["EGRESS_DENIED"]


def test_step_timeout_per_attempt(client, web):
    wf = client.create(_name(), [http_step("slow", f"{web.url}/slow?seconds=5", timeout="0.3s",
                                           retry_policy={"max_attempts": 2,
                                                         "initial_backoff": "0.05s"})])
    started = time.monotonic()
    done = client.wait(client.execute(wf.id).id)
    assert time.monotonic() - started < 4
    assert status_name(done) == "EXECUTION_STATUS_FAILED"
    state = states(done)["slow"]
    assert state.attempts == 2 and pb.StepStatus.Name(state.status) == "STEP_STATUS_FAILED"
    assert [e.code for e in done.errors] == ["TIMEOUT", "TIMEOUT"]
    assert "longer than 0.3s" in state.error


def test_cancel_stops_a_running_step_within_a_second(client, web):
    wf = client.create(_name(), [
        http_step("long", f"{web.url}/slow?seconds=20"),
        {"id": "after", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["long"],
         "transform": {"expression": "'never'"}}])
    execution = client.execute(wf.id)
    client.wait(execution.id, lambda e: step_status(e, "long") == "STEP_STATUS_RUNNING")
    started = time.monotonic()
    cancelled = client.call("CancelExecution", pb.CancelExecutionRequest(
        execution_id=execution.id, reason="changed my mind"))
    assert time.monotonic() - started < 1.0
    assert status_name(cancelled) == "EXECUTION_STATUS_CANCELLED"
    assert step_status(cancelled, "long") == "STEP_STATUS_CANCELLED"
    assert cancelled.errors[-1].code == "CANCELLED"
    assert cancelled.errors[-1].message == "changed my mind"
    time.sleep(1.0)
    later = client.get(execution.id)
    assert status_name(later) == "EXECUTION_STATUS_CANCELLED"
    assert step_status(later, "after") == "STEP_STATUS_PENDING"
    with pytest.raises(grpc.RpcError) as caught:
        client.call("CancelExecution", pb.CancelExecutionRequest(execution_id=execution.id))
    assert error_reason(caught.value) == "EXECUTION_ENDED"


def test_terminate_then_retry_from_the_failed_step(client, web):
    name = uuid.uuid4().hex
    web.fail_until[name] = 1
    wf = client.create(_name(), [
        http_step("first", f"{web.url}/effect?name={name}-first"),
        http_step("second", f"{web.url}/flaky?name={name}", depends_on=["first"]),
        {"id": "third", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["second"],
         "transform": {"expression": "steps.second.output.attempt"}}])
    execution = client.execute(wf.id)
    failed = client.wait(execution.id)
    assert status_name(failed) == "EXECUTION_STATUS_FAILED"
    assert step_status(failed, "second") == "STEP_STATUS_FAILED"
    assert step_status(failed, "third") == "STEP_STATUS_SKIPPED"
    web.fail_until[name] = 0
    retried = client.call("RetryExecution", pb.RetryExecutionRequest(execution_id=execution.id))
    assert retried.id == execution.id
    done = client.wait(execution.id)
    assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done
    assert states(done)["second"].attempts == 2
    assert web.by_name[f"{name}-first"] == 1  # the completed step did not run again
    with pytest.raises(grpc.RpcError) as caught:
        client.call("RetryExecution", pb.RetryExecutionRequest(execution_id=execution.id))
    assert error_reason(caught.value) == "EXECUTION_NOT_FAILED"

    long = client.create(_name(), [
        http_step("before", f"{web.url}/effect?name={name}-before"),
        http_step("long", f"{web.url}/slow?seconds=1.5", depends_on=["before"])])
    running = client.execute(long.id)
    client.wait(running.id, lambda e: step_status(e, "long") == "STEP_STATUS_RUNNING")
    terminated = client.call("TerminateExecution", pb.TerminateExecutionRequest(
        execution_id=running.id))
    assert status_name(terminated) == "EXECUTION_STATUS_FAILED"
    assert terminated.errors[-1].code == "TERMINATED"
    assert step_status(terminated, "long") == "STEP_STATUS_CANCELLED"
    # A terminated execution can be retried: from the step that was stopped.
    client.call("RetryExecution", pb.RetryExecutionRequest(execution_id=running.id))
    done = client.wait(running.id)
    assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done
    assert web.by_name[f"{name}-before"] == 1 and states(done)["long"].attempts == 2


def test_retry_after_a_rejected_approval_asks_again(client):
    wf = client.create(_name(), [
        {"id": "first", "type": "STEP_TYPE_APPROVAL", "approval": {}},
        {"id": "second", "type": "STEP_TYPE_APPROVAL", "depends_on": ["first"], "approval": {}}])
    execution = client.execute(wf.id)
    for step in ("first", "second"):
        client.wait(execution.id, lambda e: step_status(e, step) == "STEP_STATUS_WAITING_APPROVAL")
        method = "ApproveStep" if step == "first" else "RejectStep"
        request = getattr(pb, f"{method}Request")(execution_id=execution.id, step_id=step)
        client.call(method, request)
    assert status_name(client.wait(execution.id)) == "EXECUTION_STATUS_FAILED"
    client.call("RetryExecution", pb.RetryExecutionRequest(execution_id=execution.id))
    waiting = client.wait(execution.id, lambda e: step_status(e, "second") ==
                          "STEP_STATUS_WAITING_APPROVAL")
    assert step_status(waiting, "first") == "STEP_STATUS_COMPLETED"  # not asked again
    client.call("ApproveStep", pb.ApproveStepRequest(execution_id=execution.id, step_id="second"))
    done = client.wait(execution.id)
    assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done
    assert len(states(done)["second"].decisions) == 2


def test_approval_approve_reject_and_timeout(client):
    approver = client.identity.user_id
    wf = client.create(_name(), [
        {"id": "ask", "type": "STEP_TYPE_APPROVAL", "inputs": {"amount": "inputs.amount"},
         "approval": {"approvers": [approver], "message": "Pay {{amount}}?"}},
        {"id": "pay", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["ask"],
         "transform": {"expression": "steps.ask.output"}}])
    execution = client.execute(wf.id, {"amount": 12})
    waiting = client.wait(execution.id, lambda e: status_name(e) ==
                          "EXECUTION_STATUS_WAITING_APPROVAL")
    assert step_status(waiting, "ask") == "STEP_STATUS_WAITING_APPROVAL"
    assert waiting.current_phase == "ask"
    stranger = Client.__new__(Client)
    stranger.identity = Identity(tenant_id=client.identity.tenant_id)
    stranger.stub = client.stub
    with pytest.raises(grpc.RpcError) as caught:
        stranger.call("ApproveStep", pb.ApproveStepRequest(execution_id=execution.id,
                                                           step_id="ask"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    approved = client.call("ApproveStep", pb.ApproveStepRequest(
        execution_id=execution.id, step_id="ask", comment="looks right"))
    decision = states(approved)["ask"].decisions[0]
    assert decision.user_id == approver and decision.approved and decision.comment == "looks right"
    done = client.wait(execution.id)
    assert status_name(done) == "EXECUTION_STATUS_COMPLETED"
    assert output(done, "pay") == {"approved": True, "approvers": [approver]}

    rejected = client.execute(wf.id, {"amount": 99})
    client.wait(rejected.id, lambda e: step_status(e, "ask") == "STEP_STATUS_WAITING_APPROVAL")
    client.call("RejectStep", pb.RejectStepRequest(execution_id=rejected.id, step_id="ask",
                                                   comment="too much"))
    failed = client.wait(rejected.id)
    assert status_name(failed) == "EXECUTION_STATUS_FAILED"
    assert failed.errors[-1].code == "APPROVAL_REJECTED" and "too much" in failed.errors[-1].message
    assert states(failed)["ask"].decisions[0].approved is False
    with pytest.raises(grpc.RpcError) as caught:
        client.call("ApproveStep", pb.ApproveStepRequest(execution_id=rejected.id, step_id="ask"))
    assert error_reason(caught.value) == "STEP_NOT_WAITING"

    timed = client.create(_name(), [{"id": "ask", "type": "STEP_TYPE_APPROVAL",
                                     "timeout": "0.5s", "approval": {}}])
    out = client.wait(client.execute(timed.id).id)
    assert status_name(out) == "EXECUTION_STATUS_FAILED"
    assert out.errors[-1].code == "APPROVAL_TIMEOUT"


def test_sub_workflow_runs_a_child_execution(client):
    child = client.create(_name(), [{"id": "double", "type": "STEP_TYPE_TRANSFORM",
                                     "transform": {"expression": "{v: sum([inputs.x, inputs.x])}"}}])
    parent = client.create(_name(), [
        {"id": "call", "type": "STEP_TYPE_SUB_WORKFLOW", "inputs": {"x": "inputs.x"},
         "sub_workflow": {"workflow_id": child.slug}}])
    done = client.wait(client.execute(parent.id, {"x": 21}).id)
    assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done
    assert output(done, "call") == {"v": 42}
    child_id = states(done)["call"].child_execution_id
    child_execution = client.get(child_id)
    assert child_execution.parent_execution_id == done.id
    assert child_execution.workflow_id == child.id


def test_executions_record_their_version(client):
    wf = client.create(_name(), [{"id": "a", "type": "STEP_TYPE_TRANSFORM",
                                  "transform": {"expression": "'v1'"}}])
    first = client.wait(client.execute(wf.id).id)
    body = json_format.ParseDict({"steps": [{"id": "a", "type": "STEP_TYPE_TRANSFORM",
                                             "transform": {"expression": "'v2'"}}]}, pb.Workflow())
    client.call("UpdateWorkflow", pb.UpdateWorkflowRequest(workflow_id=wf.id, workflow=body))
    second = client.wait(client.execute(wf.id).id)
    assert (first.workflow_version, second.workflow_version) == (1, 2)
    assert json_format.MessageToDict(first.outputs) == {"value": "v1"}
    assert json_format.MessageToDict(second.outputs) == {"value": "v2"}
    listed = client.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
        workflow_id=wf.slug))
    assert [e.id for e in listed.items] == [second.id, first.id]
    stats = client.call("GetWorkflowStats", pb.GetWorkflowStatsRequest(workflow_id=wf.id))
    assert stats.total_executions == 2 and stats.successful_executions == 2
    assert stats.last_executed_at.seconds


def test_idempotency_key_and_input_schema(client):
    wf = client.create(_name(), [{"id": "a", "type": "STEP_TYPE_TRANSFORM",
                                  "transform": {"expression": "inputs"}}],
                       input_schema={"type": "object", "required": ["n"],
                                     "properties": {"n": {"type": "integer"}}})
    key = uuid.uuid4().hex
    first = client.execute(wf.id, {"n": 1}, idempotency_key=key)
    again = client.execute(wf.id, {"n": 1}, idempotency_key=key)
    assert first.id == again.id and again.idempotency_key == key
    assert client.execute(wf.id, {"n": 1}).id != first.id
    with pytest.raises(grpc.RpcError) as caught:
        client.execute(wf.id, {"n": "one"})
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs.n" in caught.value.details()


def test_submit_and_status_in_the_seed_shape(client):
    wf = client.create(_name(), [{"id": "plan", "name": "Planning", "type": "STEP_TYPE_TRANSFORM",
                                  "transform": {"expression": "inputs.requirements"}}])
    submitted = client.call("SubmitWorkflow", pb.SubmitWorkflowRequest(
        requirements="build a thing", workflow_type=wf.slug, priority="high"))
    assert submitted.status == "queued" and submitted.session_id
    assert submitted.message == "Workflow queued for execution" and submitted.created_at.seconds
    client.wait(submitted.session_id)
    progress = client.call("GetWorkflowStatus", pb.GetWorkflowStatusRequest(
        execution_id=submitted.session_id))
    assert progress.session_id == submitted.session_id and progress.progress == 100
    assert progress.status == "completed"
    assert list(progress.phases_completed) == ["Planning"]
    assert json_format.MessageToDict(progress.partial_results) == {"plan": "build a thing"}
    assert client.get(submitted.session_id).priority == pb.EXECUTION_PRIORITY_HIGH
    with pytest.raises(grpc.RpcError) as caught:
        client.call("SubmitWorkflow", pb.SubmitWorkflowRequest(requirements="x",
                                                               workflow_type="no-such-type"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "UNKNOWN_WORKFLOW_TYPE"
    with pytest.raises(grpc.RpcError) as caught:
        client.call("SubmitWorkflow", pb.SubmitWorkflowRequest(
            requirements="x", workflow_type=wf.slug, priority="EXECUTION_PRIORITY_HIGH"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as caught:
        client.call("SubmitWorkflow", pb.SubmitWorkflowRequest(requirements=" ",
                                                               workflow_type=wf.slug))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_watch_streams_changes_while_running_and_resumes(client, web):
    wf = client.create(_name(), [
        http_step("one", f"{web.url}/slow?seconds=0.4"),
        http_step("two", f"{web.url}/slow?seconds=0.4", depends_on=["one"]),
        http_step("three", f"{web.url}/slow?seconds=0.4", depends_on=["two"])])
    execution = client.execute(wf.id)
    received = []
    for event in client.call("WatchExecution", pb.WatchExecutionRequest(
            execution_id=execution.id)):
        received.append((time.monotonic(), event))
    events = [e for _, e in received]
    assert events[-1].status == pb.EXECUTION_STATUS_COMPLETED
    assert all(e.status != pb.EXECUTION_STATUS_COMPLETED for e in events[:-1])
    ids = [e.event_id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    progress = [e.progress for e in events]
    assert progress == sorted(progress) and len({p for p in progress}) >= 3
    # Events arrived while it ran, not all at the end.
    assert received[-1][0] - received[0][0] > 0.8
    # Resuming after the last event gives the final state only once more if it changed: none.
    replay = list(client.call("WatchExecution", pb.WatchExecutionRequest(
        execution_id=execution.id, last_event_id=ids[2])))
    assert len(replay) == 1 and replay[0].event_id == ids[-1]


def test_schedule_fires(client):
    wf = client.create(_name(), [{"id": "tick", "type": "STEP_TYPE_TRANSFORM",
                                  "transform": {"expression": "inputs.who"}}])
    schedule = client.call("CreateSchedule", pb.CreateScheduleRequest(
        workflow_id=wf.id, schedule=json_format.ParseDict(
            {"cron": "* * * * * *", "timezone": "Europe/Paris", "inputs": {"who": "cron"}},
            pb.Schedule())))
    assert schedule.timezone == "Europe/Paris"
    listed = client.completed(wf.id)
    assert listed.total >= 1
    assert listed.items[0].schedule_id == schedule.id
    assert json_format.MessageToDict(listed.items[0].outputs) == {"value": "cron"}
    got = client.call("ListSchedules", pb.ListSchedulesRequest(workflow_id=wf.id))
    assert got.items[0].fired >= 1 and got.items[0].last_fired_at.seconds
    client.call("DeleteSchedule", pb.DeleteScheduleRequest(workflow_id=wf.id,
                                                           schedule_id=schedule.id))
    time.sleep(1.5)
    before = client.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
        workflow_id=wf.id)).total
    time.sleep(2.0)
    assert client.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
        workflow_id=wf.id)).total == before
    with pytest.raises(grpc.RpcError) as caught:
        client.call("CreateSchedule", pb.CreateScheduleRequest(
            workflow_id=wf.id, schedule=pb.Schedule(cron="every day")))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_failing_tool_and_unavailable_agent(client):
    wf = client.create(_name(), [{"id": "t", "type": "STEP_TYPE_TOOL",
                                  "tool": {"tool_id": "broken"}}])
    done = client.wait(client.execute(wf.id).id)
    assert status_name(done) == "EXECUTION_STATUS_FAILED"
    assert done.errors[0].code == "TOOL_FAILED" and "the tool broke" in done.errors[0].message


def test_a_tool_call_still_running_elsewhere_is_waited_for_not_failed(client, peers):
    """The tools service answers IDEMPOTENCY_KEY_IN_PROGRESS while an earlier call with the
    step's key runs (after a crash, until that call's claim runs out): the step waits and asks
    again, within the same attempt and with the same key."""
    wf = client.create(_name(), [{"id": "t", "type": "STEP_TYPE_TOOL", "tool": {"tool_id": "busy"}}])
    busy_before = sum(c[0] == "busy" for c in peers.tools.calls)
    done = client.wait(client.execute(wf.id).id)
    assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done
    assert states(done)["t"].attempts == 1
    mine = [key for tool, key, _ in peers.tools.calls if key.startswith(done.id)]
    assert mine == [f"{done.id}:t:1"] * (3 if busy_before == 0 else 1)


def test_other_tenant_gets_404_on_every_execution_route(service, client):
    wf = client.create(_name(), [{"id": "ask", "type": "STEP_TYPE_APPROVAL", "approval": {}}])
    execution = client.execute(wf.id)
    client.wait(execution.id, lambda e: status_name(e) == "EXECUTION_STATUS_WAITING_APPROVAL")
    other = Client(service, Identity())
    eid = execution.id
    for method, request in [
        ("GetExecution", pb.GetExecutionRequest(execution_id=eid)),
        ("GetWorkflowStatus", pb.GetWorkflowStatusRequest(execution_id=eid)),
        ("CancelExecution", pb.CancelExecutionRequest(execution_id=eid)),
        ("TerminateExecution", pb.TerminateExecutionRequest(execution_id=eid)),
        ("RetryExecution", pb.RetryExecutionRequest(execution_id=eid)),
        ("ApproveStep", pb.ApproveStepRequest(execution_id=eid, step_id="ask")),
        ("RejectStep", pb.RejectStepRequest(execution_id=eid, step_id="ask")),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            other.call(method, request)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND, method
    with pytest.raises(grpc.RpcError) as caught:
        list(other.call("WatchExecution", pb.WatchExecutionRequest(execution_id=eid)))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert status_name(client.get(eid)) == "EXECUTION_STATUS_WAITING_APPROVAL"
    client.call("CancelExecution", pb.CancelExecutionRequest(execution_id=eid))


def test_workflow_timeout_fails_the_execution(client, web):
    wf = client.create(_name(), [http_step("slow", f"{web.url}/slow?seconds=10")], timeout="1s")
    started = time.monotonic()
    done = client.wait(client.execute(wf.id).id, timeout=20)
    assert time.monotonic() - started < 8
    assert status_name(done) == "EXECUTION_STATUS_FAILED", done
    assert done.errors[-1].code == "TIMEOUT"


def test_delete_archives_a_workflow_with_executions(client):
    wf = client.create(_name(), [{"id": "a", "type": "STEP_TYPE_TRANSFORM",
                                  "transform": {"expression": "inputs"}}])
    execution = client.wait(client.execute(wf.id).id)
    deleted = client.call("DeleteWorkflow", pb.DeleteWorkflowRequest(workflow_id=wf.id))
    assert "archived" in deleted.message
    archived = client.call("GetWorkflow", pb.GetWorkflowRequest(workflow_id=wf.id))
    assert archived.status == pb.WORKFLOW_STATUS_ARCHIVED
    assert client.get(execution.id).id == execution.id
    with pytest.raises(grpc.RpcError) as caught:
        client.call("UpdateWorkflow", pb.UpdateWorkflowRequest(
            workflow_id=wf.id, workflow=pb.Workflow(description="x")))
    assert error_reason(caught.value) == "WORKFLOW_ARCHIVED"


def test_min_approvals_counts_distinct_approvers(client):
    wf = client.create(_name(), [{"id": "ask", "type": "STEP_TYPE_APPROVAL",
                                  "approval": {"min_approvals": 2}}])
    execution = client.execute(wf.id)
    client.wait(execution.id, lambda e: step_status(e, "ask") == "STEP_STATUS_WAITING_APPROVAL")
    second = Client.__new__(Client)
    second.identity = Identity(tenant_id=client.identity.tenant_id)
    second.stub = client.stub
    request = pb.ApproveStepRequest(execution_id=execution.id, step_id="ask", comment="ok")
    client.call("ApproveStep", request)
    client.call("ApproveStep", request)  # the same approver twice counts once
    time.sleep(0.8)
    assert step_status(client.get(execution.id), "ask") == "STEP_STATUS_WAITING_APPROVAL"
    second.call("ApproveStep", request)
    done = client.wait(execution.id)
    assert status_name(done) == "EXECUTION_STATUS_COMPLETED"
    assert sorted(output(done, "ask")["approvers"]) == sorted(
        [client.identity.user_id, second.identity.user_id])
    assert len(states(done)["ask"].decisions) == 3


def test_cancel_reaches_child_executions(client, web):
    child = client.create(f"Child {uuid.uuid4().hex[:6]}", [
        {"id": "slow", "type": "STEP_TYPE_HTTP", "http": {"url": f"{web.url}/slow?seconds=20"}}])
    parent = client.create(f"Parent {uuid.uuid4().hex[:6]}", [
        {"id": "sub", "type": "STEP_TYPE_SUB_WORKFLOW",
         "sub_workflow": {"workflow_id": child.id}}])
    execution = client.execute(parent.id)
    running = client.wait(execution.id, lambda e: states(e)["sub"].child_execution_id != "")
    child_id = states(running)["sub"].child_execution_id
    client.wait(child_id, lambda e: step_status(e, "slow") == "STEP_STATUS_RUNNING")
    client.call("CancelExecution", pb.CancelExecutionRequest(execution_id=execution.id))
    assert status_name(client.get(child_id)) == "EXECUTION_STATUS_CANCELLED"
    assert step_status(client.get(child_id), "slow") == "STEP_STATUS_CANCELLED"


# ---- who steps act as ---------------------------------------------------------------------------
def _errors(execution) -> list[tuple[str, str]]:
    return [(e.step_id, e.code) for e in execution.errors]


def test_steps_act_as_the_starter_within_its_scopes(service, peers):
    """A tool step needs the starter's `tools:execute` (it ran with fixed scopes nobody
    granted); the execution records who started it, the key, and the scopes in force."""
    tenant = Identity().tenant_id
    runner = Client(service, Identity(tenant_id=tenant, scopes="workflows:*"))
    keyed = Client(service, Identity(tenant_id=tenant, scopes="workflows:* tools:execute",
                                     api_key_id="key-1"))
    wf = runner.create(_name(), [{"id": "t", "type": "STEP_TYPE_TOOL",
                                  "tool": {"tool_id": "search"}}])
    refused = runner.wait(runner.execute(wf.id).id)
    assert status_name(refused) == "EXECUTION_STATUS_FAILED"
    assert step_status(refused, "t") == "STEP_STATUS_FAILED"
    assert _errors(refused) == [("t", "SCOPE_NOT_HELD")]  # once: not retried
    assert "tools:execute" in states(refused)["t"].error
    assert not any(key.startswith(refused.id) for _, key, _ in peers.tools.calls)
    assert list(refused.scopes) == ["workflows:*"] and refused.api_key_id == ""
    assert refused.created_by == runner.identity.user_id

    ran = keyed.wait(keyed.execute(wf.id).id)
    assert status_name(ran) == "EXECUTION_STATUS_COMPLETED", ran
    assert list(ran.scopes) == ["tools:execute", "workflows:*"] and ran.api_key_id == "key-1"
    (called,) = [who for key, who in peers.tools.identities.items() if key.startswith(ran.id)]
    assert called == {"user-id": keyed.identity.user_id, "scopes": "tools:execute workflows:*",
                      "api-key-id": "key-1"}

    # A retry by someone holding more does not widen what the steps may do.
    admin = Client(service, Identity(tenant_id=tenant, scopes="*"))
    admin.call("RetryExecution", pb.RetryExecutionRequest(execution_id=refused.id))
    again = admin.wait(refused.id, until=lambda e: e.status == pb.EXECUTION_STATUS_FAILED
                       and len(e.errors) == 2)
    assert _errors(again)[-1] == ("t", "SCOPE_NOT_HELD") and list(again.scopes) == ["workflows:*"]


def test_a_sub_workflow_inherits_the_starter_and_its_scopes(service):
    tenant = Identity().tenant_id
    runner = Client(service, Identity(tenant_id=tenant, scopes="workflows:execute workflows:write"
                                                               " workflows:read",
                                      api_key_id="key-2"))
    child = runner.create(_name(), [{"id": "t", "type": "STEP_TYPE_TOOL",
                                     "tool": {"tool_id": "search"}}])
    parent = runner.create(_name(), [{"id": "sub", "type": "STEP_TYPE_SUB_WORKFLOW",
                                      "sub_workflow": {"workflow_id": child.id}}])
    done = runner.wait(runner.execute(parent.id).id)
    assert status_name(done) == "EXECUTION_STATUS_FAILED"
    kid = runner.get(states(done)["sub"].child_execution_id)
    assert _errors(kid) == [("t", "SCOPE_NOT_HELD")]
    assert (kid.created_by, kid.api_key_id, list(kid.scopes)) == (
        done.created_by, "key-2", list(done.scopes))


def test_a_schedule_runs_as_its_creator_with_the_scopes_it_recorded(service):
    tenant = Identity().tenant_id
    writer = Client(service, Identity(tenant_id=tenant, scopes="workflows:write workflows:read"))
    wf = writer.create(_name(), [{"id": "t", "type": "STEP_TYPE_TOOL",
                                  "tool": {"tool_id": "search"}}])
    schedule = pb.Schedule(cron="* * * * * *")
    with pytest.raises(grpc.RpcError) as caught:  # it would run the workflow as its creator
        writer.call("CreateSchedule", pb.CreateScheduleRequest(workflow_id=wf.id,
                                                               schedule=schedule))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "SCOPE_NOT_HELD"
    creator = Client(service, Identity(tenant_id=tenant, scopes="workflows:*", api_key_id="k3"))
    made = creator.call("CreateSchedule", pb.CreateScheduleRequest(workflow_id=wf.id,
                                                                   schedule=schedule))
    assert list(made.scopes) == ["workflows:*"] and made.api_key_id == "k3"
    deadline = time.monotonic() + 15
    while True:
        listed = creator.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
            workflow_id=wf.id, status=pb.EXECUTION_STATUS_FAILED))
        if listed.total or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    creator.call("DeleteSchedule", pb.DeleteScheduleRequest(workflow_id=wf.id,
                                                            schedule_id=made.id))
    fired = listed.items[0]
    assert fired.schedule_id == made.id and fired.created_by == creator.identity.user_id
    assert (fired.api_key_id, list(fired.scopes)) == ("k3", ["workflows:*"])
    assert _errors(fired) == [("t", "SCOPE_NOT_HELD")]
