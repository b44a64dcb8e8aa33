"""What one tenant may make the workflows engine do, in-process with small limits: cycles
between workflows refused at save, the depth, descendant, step and parallel-step limits at run
time, sub-workflows that need no queue slot, each tenant's share of the queue, execution and
schedule quotas. Through the gateway, with another tenant measuring meanwhile:
tests/e2e/test_fair_share.py."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlmodel import select

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.workflows.models import WorkflowRow, WorkflowVersionRow
from mesh.workflows.service import DEFINITION
from tests.harness import ServiceHarness, error_reason, field_violations
from tests.workflows.conftest import Client, _drop_schemas, states, status_name

LIMITS = {"workflow_max_depth": 2, "workflow_max_descendants": 5, "workflow_max_steps": 12,
          "workflow_max_parallel_steps": 2, "workflow_queue_concurrency": 8,
          "workflow_tenant_concurrency": 1, "tenant_max_live_executions": 6,
          "tenant_max_schedules": 2, "schedule_min_interval_seconds": 2}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def limited(request, tmp_path_factory):
    # HTTP steps call the local effect server: the egress guard must allow 127.0.0.1.
    settings = {**LIMITS, "egress_allow": "127.0.0.1"}
    if request.param == "postgres":
        settings["database_url"] = request.getfixturevalue("postgres_url")
        _drop_schemas(settings["database_url"])
    with ServiceHarness(DEFINITION, tmp_path_factory.mktemp("limited"), **settings) as harness:
        yield harness
    if request.param == "postgres":
        _drop_schemas(settings["database_url"])


@pytest.fixture
def client(limited) -> Client:
    return Client(limited)


def _slug() -> str:
    return f"w-{uuid.uuid4().hex[:8]}"


def _leaf(client: Client, slug: str | None = None) -> pb.Workflow:
    return client.create(slug or _slug(), [
        {"id": "t", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "`1`"}}])


def _calling(client: Client, target: str, slug: str | None = None, **kwargs) -> pb.Workflow:
    return client.create(slug or _slug(), [
        {"id": "call", "type": "STEP_TYPE_SUB_WORKFLOW", "sub_workflow": {"workflow_id": target}}],
        **kwargs)


def _details(error: grpc.RpcError) -> dict:
    status = rpc_status.from_call(error)
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return dict(info.metadata)
    return {}


def _refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _update_steps(client: Client, workflow_id: str, steps: list[dict], **fields):
    body = json_format.ParseDict({"steps": steps, **fields}, pb.Workflow())
    return client.call("UpdateWorkflow", pb.UpdateWorkflowRequest(
        workflow_id=workflow_id, workflow=body))


def _cancel(client: Client, *executions: pb.Execution) -> None:
    """Ends what a test left running (one may have ended meanwhile)."""
    for execution in executions:
        try:
            client.call("CancelExecution", pb.CancelExecutionRequest(execution_id=execution.id))
        except grpc.RpcError as exc:
            assert error_reason(exc) == "EXECUTION_ENDED"


def _codes(execution: pb.Execution) -> list[str]:
    return [e.code for e in execution.errors]


# ---- saved ---------------------------------------------------------------------------------

def test_a_workflow_calling_itself_is_refused_naming_the_path(client):
    slug = _slug()
    error = _refused(lambda: _calling(client, slug, slug=slug))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "WORKFLOW_CYCLE"
    assert _details(error)["path"] == f"{slug} -> {slug}"
    assert field_violations(error) == ["steps.call.sub_workflow.workflow_id"]
    assert client.call("ListWorkflows", pb.ListWorkflowsRequest()).total == 0


def test_an_update_or_rename_that_closes_a_cycle_is_refused(client):
    a = _leaf(client)
    b = _calling(client, a.slug)
    call_b = [{"id": "back", "type": "STEP_TYPE_SUB_WORKFLOW",
               "sub_workflow": {"workflow_id": b.id}}]
    error = _refused(lambda: _update_steps(client, a.id, call_b))
    assert error_reason(error) == "WORKFLOW_CYCLE"
    assert _details(error)["path"] == f"{a.slug} -> {b.slug} -> {a.slug}"
    assert client.call("GetWorkflow", pb.GetWorkflowRequest(workflow_id=a.id)).version == 1
    # c calls a slug nobody has yet; giving a workflow that slug closes c -> ... -> c.
    future = _slug()
    c = _calling(client, future)
    d = _calling(client, c.slug)
    error = _refused(lambda: _update_steps(client, d.id, [
        {"id": "call", "type": "STEP_TYPE_SUB_WORKFLOW", "sub_workflow": {"workflow_id": c.slug}}],
        slug=future))
    assert error_reason(error) == "WORKFLOW_CYCLE"
    assert _details(error)["path"] == f"{future} -> {c.slug} -> {future}"
    # Not a cycle: a diamond (two ways to the same workflow) is fine.
    leaf = _leaf(client)
    left, right = _calling(client, leaf.slug), _calling(client, leaf.slug)
    client.create(_slug(), [
        {"id": "l", "type": "STEP_TYPE_SUB_WORKFLOW", "sub_workflow": {"workflow_id": left.slug}},
        {"id": "r", "type": "STEP_TYPE_SUB_WORKFLOW", "sub_workflow": {"workflow_id": right.id}}])


def test_more_steps_than_the_limit_is_refused_at_save(client):
    steps = [{"id": f"s{i}", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "`1`"}}
             for i in range(LIMITS["workflow_max_steps"] + 1)]
    error = _refused(lambda: client.create(_slug(), steps))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "TOO_MANY_STEPS"
    assert field_violations(error) == ["steps"]
    client.create(_slug(), steps[:-1])


# ---- run -----------------------------------------------------------------------------------

def test_a_chain_deeper_than_the_limit_ends_failed_at_the_cap(client):
    # root (depth 0) -> 1 -> 2 -> 3: the execution at depth 2 may not start a third level.
    slug = _leaf(client).slug
    for _ in range(3):
        slug = _calling(client, slug).slug
    done = client.wait(client.execute(slug).id)
    assert status_name(done) == "EXECUTION_STATUS_FAILED"
    assert _codes(done) == ["SUB_WORKFLOW_DEPTH_EXCEEDED"]


def test_a_recursion_saved_before_the_check_stops_at_the_depth_limit(client, limited):
    """A workflow that calls itself cannot be saved any more; one stored before (written here
    straight into the tables) recurses until the depth limit, then every level ends FAILED."""
    workflow = _leaf(client)
    recursive = [{"id": "again", "type": "STEP_TYPE_SUB_WORKFLOW",
                  "sub_workflow": {"workflow_id": workflow.slug}}]

    def rewrite(session):
        row = session.get(WorkflowRow, workflow.id)
        row.definition = {**row.definition, "steps": recursive}
        session.add(row)
        version = session.exec(select(WorkflowVersionRow).where(
            WorkflowVersionRow.workflow_id == workflow.id)).one()
        version.workflow = {**version.workflow, "steps": recursive}
        session.add(version)
    limited._run(limited.running.runtime.database.write(rewrite))
    done = client.wait(client.execute(workflow.id).id)
    assert status_name(done) == "EXECUTION_STATUS_FAILED"
    assert _codes(done) == ["SUB_WORKFLOW_DEPTH_EXCEEDED"]
    runs = client.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
        workflow_id=workflow.id, page_size=50))
    assert runs.total == LIMITS["workflow_max_depth"] + 1
    assert {status_name(e) for e in runs.items} == {"EXECUTION_STATUS_FAILED"}


def test_an_exponential_fan_out_stops_at_the_descendant_limit(client):
    # Each level runs two copies of the next: 2 + 4 children, but at most 5 may start.
    def doubling(target: str) -> pb.Workflow:
        return client.create(_slug(), [
            {"id": "fan", "type": "STEP_TYPE_PARALLEL", "parallel": {"branches": [
                {"name": "a", "step_ids": ["a"]}, {"name": "b", "step_ids": ["b"]}]}},
            {"id": "a", "type": "STEP_TYPE_SUB_WORKFLOW", "sub_workflow": {"workflow_id": target}},
            {"id": "b", "type": "STEP_TYPE_SUB_WORKFLOW", "sub_workflow": {"workflow_id": target}}])
    levels = [_leaf(client)]
    levels.append(doubling(levels[-1].slug))
    root = doubling(levels[-1].slug)
    done = client.wait(client.execute(root.id).id)
    assert status_name(done) == "EXECUTION_STATUS_FAILED"
    assert "SUB_WORKFLOW_FANOUT_EXCEEDED" in _codes(done)
    children = sum(client.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
        workflow_id=level.id)).total for level in levels)
    assert children == LIMITS["workflow_max_descendants"]


def test_a_wide_wave_runs_at_most_the_parallel_limit_at_once(client, web):
    steps = [{"id": f"h{i}", "type": "STEP_TYPE_HTTP",
              "http": {"url": f"{web.url}/effect?sleep=0.4&name=wave-{uuid.uuid4().hex}"}}
             for i in range(4)]
    done = client.wait(client.execute(client.create(_slug(), steps).id).id)
    assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done
    moments = []
    for state in states(done).values():
        moments.append((state.started_at.ToDatetime(), 1))
        moments.append((state.ended_at.ToDatetime(), -1))
    running = most = 0
    for _, change in sorted(moments, key=lambda m: (m[0], m[1])):
        running += change
        most = max(most, running)
    assert most == LIMITS["workflow_max_parallel_steps"]


def test_a_parent_waiting_for_its_child_holds_no_queue_slot(client):
    # The tenant may run one queued execution at a time; a chain of three still completes,
    # because children start at once instead of queueing behind their waiting parents.
    slug = _leaf(client).slug
    for _ in range(2):
        slug = _calling(client, slug).slug
    done = client.wait(client.execute(slug).id, timeout=20)
    assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done


def test_retrying_a_parent_retries_its_failed_child_without_a_queue_slot(client, web):
    # The child's HTTP step fails once; the retried parent (holding the tenant's one slot)
    # retries the child, which must run without a slot of its own.
    child = client.create(_slug(), [{"id": "h", "type": "STEP_TYPE_HTTP", "http": {
        "url": f"{web.url}/flaky?fail=1&name=child-{uuid.uuid4().hex}"}}])
    parent = _calling(client, child.slug)
    failed = client.wait(client.execute(parent.id).id)
    assert status_name(failed) == "EXECUTION_STATUS_FAILED"
    assert _codes(failed) == ["SUB_WORKFLOW_FAILED"]
    client.call("RetryExecution", pb.RetryExecutionRequest(execution_id=failed.id))
    done = client.wait(failed.id, lambda e: status_name(e) != "EXECUTION_STATUS_FAILED"
                       and status_name(e) in {"EXECUTION_STATUS_COMPLETED",
                                              "EXECUTION_STATUS_CANCELLED"}, timeout=20)
    assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done


# ---- shares and quotas ---------------------------------------------------------------------

def test_a_tenants_backlog_never_delays_another_tenant(limited, web):
    busy, other = Client(limited), Client(limited)
    slow = busy.create(_slug(), [{"id": "s", "type": "STEP_TYPE_HTTP",
                                  "http": {"url": f"{web.url}/slow?seconds=3"}}])
    started = [busy.execute(slow.id) for _ in range(3)]
    low = busy.execute(slow.id, priority=pb.EXECUTION_PRIORITY_LOW)
    critical = busy.execute(slow.id, priority=pb.EXECUTION_PRIORITY_CRITICAL)
    deadline = time.monotonic() + 10
    while "EXECUTION_STATUS_RUNNING" not in (stages := [status_name(busy.get(e.id))
                                                        for e in started + [critical]]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    quick = other.create(_slug(), [{"id": "t", "type": "STEP_TYPE_TRANSFORM",
                                    "transform": {"expression": "`1`"}}])
    begun = time.monotonic()
    mine = other.execute(quick.id, priority=pb.EXECUTION_PRIORITY_CRITICAL)
    other.wait(mine.id, lambda e: status_name(e) != "EXECUTION_STATUS_QUEUED")
    assert time.monotonic() - begun < 1.0
    # The busy tenant's share is one: the rest of its backlog is still queued...
    stages = [status_name(busy.get(e.id)) for e in started + [critical, low]]
    assert sorted(stages) == ["EXECUTION_STATUS_QUEUED"] * 4 + ["EXECUTION_STATUS_RUNNING"]
    # ...and within it, the critical one goes before the others (the first to start may
    # have been dequeued before the critical one was queued).
    busy.wait(critical.id, lambda e: status_name(e) != "EXECUTION_STATUS_QUEUED", timeout=10)
    assert [status_name(busy.get(e.id)) for e in started].count("EXECUTION_STATUS_QUEUED") >= 2
    assert status_name(busy.get(low.id)) == "EXECUTION_STATUS_QUEUED"
    _cancel(busy, *started, low, critical)


def test_a_pure_workflow_waits_behind_its_tenants_backlog(client, web):
    """A pure workflow runs in the call that starts it (mesh.workflows.inline) only while its
    tenant has a free share of the queue (one here): behind a running execution it is queued,
    so it never overtakes the tenant's backlog."""
    slow = client.create(_slug(), [{"id": "s", "type": "STEP_TYPE_HTTP",
                                    "http": {"url": f"{web.url}/slow?seconds=2"}}])
    pure = _leaf(client)
    busy = client.execute(slow.id)
    behind = client.execute(pure.id)
    assert status_name(behind) == "EXECUTION_STATUS_QUEUED"
    assert status_name(client.wait(busy.id)) == "EXECUTION_STATUS_COMPLETED"
    assert status_name(client.wait(behind.id)) == "EXECUTION_STATUS_COMPLETED"
    assert status_name(client.execute(pure.id)) == "EXECUTION_STATUS_COMPLETED"


def test_a_tenant_at_its_execution_quota_gets_429_and_others_do_not(limited, web):
    full, other = Client(limited), Client(limited)
    slow = full.create(_slug(), [{"id": "s", "type": "STEP_TYPE_HTTP",
                                  "http": {"url": f"{web.url}/slow?seconds=5"}}])
    started = [full.execute(slow.id) for _ in range(LIMITS["tenant_max_live_executions"])]
    error = _refused(lambda: full.execute(slow.id))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(error) == "EXECUTION_QUOTA_EXCEEDED"
    assert _details(error)["limit"] == str(LIMITS["tenant_max_live_executions"])
    # The other tenant's pure leaf runs in the call that starts it (mesh.workflows.inline).
    assert status_name(other.execute(_leaf(other).id)) == "EXECUTION_STATUS_COMPLETED"
    _cancel(full, started[0])
    again = full.execute(slow.id)
    _cancel(full, *started[1:], again)


def _schedule(client: Client, workflow_id: str, cron: str) -> pb.Schedule:
    return client.call("CreateSchedule", pb.CreateScheduleRequest(
        workflow_id=workflow_id, schedule=pb.Schedule(cron=cron)))


def test_schedules_have_a_floor_and_a_quota_per_tenant(limited):
    client, other = Client(limited), Client(limited)
    workflow = _leaf(client)
    error = _refused(lambda: _schedule(client, workflow.id, "* * * * * *"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "SCHEDULE_TOO_FREQUENT"
    assert field_violations(error) == ["cron"]
    # Seconds 59 and 0 of the next minute are one second apart.
    assert error_reason(_refused(lambda: _schedule(client, workflow.id, "0,59 * * * * *"))) \
        == "SCHEDULE_TOO_FREQUENT"
    for _ in range(LIMITS["tenant_max_schedules"]):
        _schedule(client, workflow.id, "0 0 * * *")
    error = _refused(lambda: _schedule(client, workflow.id, "0 0 * * *"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(error) == "SCHEDULE_QUOTA_EXCEEDED"
    _schedule(other, _leaf(other).id, "0 0 * * *")


def test_a_schedule_skips_fires_while_its_previous_run_is_going(client, web):
    workflow = client.create(_slug(), [{"id": "s", "type": "STEP_TYPE_HTTP",
                                        "http": {"url": f"{web.url}/slow?seconds=5"}}])
    schedule = _schedule(client, workflow.id, "*/2 * * * * *")
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        runs = client.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
            workflow_id=workflow.id))
        assert runs.total <= 1
        time.sleep(0.2)
    assert runs.total == 1
    client.call("DeleteSchedule", pb.DeleteScheduleRequest(workflow_id=workflow.id,
                                                           schedule_id=schedule.id))
    _cancel(client, runs.items[0])


def test_shortest_interval_of_crons():
    from mesh.workflows.limits import shortest_interval

    assert shortest_interval("* * * * * *", "UTC") == 1
    assert shortest_interval("*/10 * * * * *", "UTC") == 10
    assert shortest_interval("0,59 * * * * *", "UTC") == 1
    assert shortest_interval("* * * * *", "UTC") == 60
    assert shortest_interval("0,30 * * * *", "Europe/Paris") == 1800
    assert shortest_interval("0 9 * * 1-5", "UTC") == 86400
