"""Queued executions start when there is work (mesh.workflows.dispatch), not at DBOS's next
poll: with the poll an hour apart, an execution still starts at once, and one waiting for its
tenant's only slot starts as soon as that slot frees; the tenant's share still holds."""

from __future__ import annotations

import inspect
import time
import uuid

import pytest

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.workflows import state
from mesh.workflows.service import DEFINITION
from tests.harness import ServiceHarness
from tests.workflows.conftest import Client, _drop_schemas, status_name

HOUR = 3600.0


def test_the_dbos_calls_the_dispatcher_makes_keep_their_shape():
    """dispatch.py calls DBOS internals (the ones its queue thread calls); a DBOS upgrade that
    changes them fails here rather than leaving executions to the poll."""
    from dbos._core import execute_dequeued_workflow
    from dbos._sys_db import SystemDatabase

    claim = inspect.signature(SystemDatabase.start_queued_workflows).parameters
    assert list(claim)[:7] == ["self", "queue", "executor_id", "app_version",
                               "queue_partition_key", "local_running_count",
                               "partition_local_running_count"]
    assert "owner_xid" in claim
    assert list(inspect.signature(execute_dequeued_workflow).parameters) == [
        "dbos", "status", "owner_xid"]
    for name in ("get_queue_partitions", "get_workflow_statuses", "get_workflow_status",
                 "is_lock_conflict", "is_serialization_conflict"):
        assert callable(getattr(SystemDatabase, name)), name
    # state._slow_dbos_polls: the internal queue's interval, read at each of its polls, and
    # the background jobs' interval, read when DBOS launches.
    from dbos import _workflow_commands
    from dbos._dbos import DBOSRegistry
    from dbos._queue import Queue

    assert isinstance(_workflow_commands._BACKGROUND_JOBS_INTERVAL_SEC, float)
    assert "_BACKGROUND_JOBS_INTERVAL_SEC" in inspect.getsource(
        _workflow_commands.background_jobs_thread)
    assert callable(DBOSRegistry.get_internal_queue)
    assert "queue._polling_interval_sec" in inspect.getsource(
        __import__("dbos._queue", fromlist=["queue_worker_thread"]).queue_worker_thread)
    assert "_polling_interval_sec" in inspect.getsource(Queue.__init__)
    assert callable(Queue._has_partition_limits)  # the internal queue: no partitions
    # state._slow_queue_manager and state._waking_on_fire: the queue manager's thread target
    # (its own waits on the stop event it is handed, which its workers get too) and the
    # function every schedule fire is enqueued through.
    from dbos import _dbos as dbos_module
    from dbos import _queue, _scheduler

    manager = inspect.getsource(_queue.queue_thread)
    assert list(inspect.signature(_queue.queue_thread).parameters) == ["stop_event", "dbos"]
    assert "stop_event.wait(timeout=check_interval)" in manager
    assert "args=(stop_event, dbos, queue)" in manager
    assert "target=queue_thread" in inspect.getsource(dbos_module.DBOS._launch)
    # state._scheduler_woken: the scheduler thread's target, which waits its interval on the
    # stop event it is handed.
    assert list(inspect.signature(_scheduler.dynamic_scheduler_loop).parameters) == [
        "stop_event", "polling_interval_sec"]
    assert "stop_event.wait(timeout=poll_timeout())" in inspect.getsource(
        _scheduler.dynamic_scheduler_loop)
    assert "target=dynamic_scheduler_loop" in inspect.getsource(dbos_module.DBOS._launch)
    assert isinstance(_scheduler._STARTUP_FAST_POLL_DURATION_SEC, float)
    assert "INTERNAL_QUEUE_NAME" in inspect.getsource(
        inspect.unwrap(_scheduler._enqueue_scheduled_workflow))
    assert inspect.getsource(_scheduler).count("_enqueue_scheduled_workflow(") >= 3
    # control.wake_receiver: the waiter's key, and the map of waiting receivers.
    assert list(inspect.signature(SystemDatabase._waiter).parameters) == [
        "self", "workflow_id", "name"]
    from dbos._sys_db import ThreadSafeEventDict

    assert callable(ThreadSafeEventDict.get)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def slow_poll(request, tmp_path_factory):
    """The workflows service with DBOS's queue, messages and schedule list polled once an hour
    and one slot per tenant."""
    # Every execution queued (a pure one would run in the call, mesh.workflows.inline).
    settings = {"workflow_tenant_concurrency": 1, "workflow_queue_concurrency": 4,
                "workflow_inline": False, "schedule_min_interval_seconds": 1}
    if request.param == "postgres":
        settings["database_url"] = request.getfixturevalue("postgres_url")
        _drop_schemas(settings["database_url"])
    patch = pytest.MonkeyPatch()
    patch.setattr(state, "QUEUE_POLLING_SECONDS", HOUR)
    patch.setattr(state, "ALONE_QUEUE_POLLING_SECONDS", HOUR)
    patch.setattr(state, "MESSAGE_POLLING_SECONDS", HOUR)
    patch.setattr(state, "DBOS_POLLING_SECONDS", HOUR)  # the internal queue on PostgreSQL
    patch.setattr(state, "ALONE_SCHEDULES_SECONDS", HOUR)  # the schedule list
    from dbos import _scheduler
    patch.setattr(_scheduler, "_STARTUP_FAST_POLL_DURATION_SEC", 0.0)  # its first minute too
    try:
        with ServiceHarness(DEFINITION, tmp_path_factory.mktemp("dispatch"),
                            **settings) as harness:
            yield harness
    finally:
        patch.undo()
    if request.param == "postgres":
        _drop_schemas(settings["database_url"])


def _until(client: Client, execution_id: str, status: str, timeout: float = 10) -> float:
    """Seconds until the execution reaches `status` (fails after `timeout`)."""
    begun = time.monotonic()
    client.wait(execution_id, lambda e: status_name(e) == status, timeout=timeout)
    return time.monotonic() - begun


def test_an_execution_starts_at_once_and_a_freed_slot_is_taken_at_once(slow_poll):
    client = Client(slow_poll)
    quick = client.create(f"q-{uuid.uuid4().hex[:8]}", [
        {"id": "t", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "`1`"}}])
    done = client.execute(quick.id)
    assert _until(client, done.id, "EXECUTION_STATUS_COMPLETED") < 10  # the poll: an hour

    gated = client.create(f"g-{uuid.uuid4().hex[:8]}", [
        {"id": "ask", "type": "STEP_TYPE_APPROVAL", "approval": {}}])
    first = client.execute(gated.id)
    _until(client, first.id, "EXECUTION_STATUS_WAITING_APPROVAL")
    second = client.execute(gated.id)
    time.sleep(1.0)
    # The tenant's one slot is held by the first (waiting is running): the second waits...
    assert status_name(client.get(second.id)) == "EXECUTION_STATUS_QUEUED"
    # ...while another tenant's execution starts at once.
    other = Client(slow_poll)
    theirs = other.create(f"o-{uuid.uuid4().hex[:8]}", [
        {"id": "t", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "`2`"}}])
    assert _until(other, other.execute(theirs.id).id, "EXECUTION_STATUS_COMPLETED") < 10
    # Approving the first ends it and frees the slot: the second starts now, not in an hour.
    # The decision wakes the waiting interpreter (control.wake_receiver): DBOS's message poll
    # is an hour apart here too.
    client.call("ApproveStep", pb.ApproveStepRequest(execution_id=first.id, step_id="ask"))
    assert _until(client, first.id, "EXECUTION_STATUS_COMPLETED") < 10
    assert _until(client, second.id, "EXECUTION_STATUS_WAITING_APPROVAL") < 10
    client.call("CancelExecution", pb.CancelExecutionRequest(execution_id=second.id))


def test_a_retried_execution_starts_at_once(slow_poll):
    """A retry forks the interpreter onto the queue (DBOS's fork, which wakes nobody): the
    engine claims it at once, not at the queue's next poll (an hour here)."""
    client = Client(slow_poll)
    gated = client.create(f"r-{uuid.uuid4().hex[:8]}", [
        {"id": "ask", "type": "STEP_TYPE_APPROVAL", "approval": {}}])
    execution = client.execute(gated.id)
    _until(client, execution.id, "EXECUTION_STATUS_WAITING_APPROVAL")
    client.call("RejectStep", pb.RejectStepRequest(execution_id=execution.id, step_id="ask"))
    _until(client, execution.id, "EXECUTION_STATUS_FAILED")
    client.call("RetryExecution", pb.RetryExecutionRequest(execution_id=execution.id))
    assert _until(client, execution.id, "EXECUTION_STATUS_WAITING_APPROVAL") < 10
    client.call("CancelExecution", pb.CancelExecutionRequest(execution_id=execution.id))


def test_a_schedule_fires_at_once(slow_poll):
    """A new schedule is taken up at once (DBOS's scheduler thread is woken, not left to its
    next read of the schedule list, an hour here), and a fire goes on DBOS's internal queue
    from a scheduler thread; the engine claims it at once, not at that queue's next poll."""
    client = Client(slow_poll)
    wf = client.create(f"s-{uuid.uuid4().hex[:8]}", [
        {"id": "tick", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "`1`"}}])
    schedule = client.call("CreateSchedule", pb.CreateScheduleRequest(
        workflow_id=wf.id, schedule=pb.Schedule(cron="* * * * * *")))
    try:
        listed = client.completed(wf.id)
        assert listed.total >= 1
    finally:
        client.call("DeleteSchedule", pb.DeleteScheduleRequest(workflow_id=wf.id,
                                                               schedule_id=schedule.id))


def test_the_scheduler_thread_wakes_when_the_schedules_change_and_ends_with_its_engine(
        monkeypatch):
    """state._scheduler_woken: DBOS's scheduler loop, waiting an hour between reads of the
    schedule list, reads it again at once when this engine changes a schedule, and ends when
    the engine stops (DBOS's destroy joins it)."""
    import threading
    from types import SimpleNamespace

    waits: list[float] = []

    def scheduler_loop(stop_event, polling_interval_sec):
        while not stop_event.is_set():
            began = time.monotonic()
            stopped = stop_event.wait(timeout=polling_interval_sec)
            waits.append(time.monotonic() - began)
            if stopped:
                break

    engine = SimpleNamespace(stopping=False)
    monkeypatch.setattr(state, "_running", engine)
    thread = threading.Thread(target=state._scheduler_woken(scheduler_loop),
                              args=(threading.Event(), HOUR), daemon=True)
    thread.start()
    time.sleep(0.2)
    state._schedules_changed.set()  # a schedule created or deleted
    time.sleep(0.2)
    engine.stopping = True
    state._schedules_changed.set()  # what close() does
    thread.join(5)
    assert not thread.is_alive()
    assert len(waits) == 2 and max(waits) < 1, waits


def test_the_queue_manager_waits_longer_and_its_workers_do_not():
    """state._slow_queue_manager stretches only the manager thread's own waits."""
    import threading

    seen: dict[str, float] = {}
    stop = threading.Event()

    def manager(stop_event, dbos):
        def worker():
            begun = time.monotonic()
            stop_event.wait(timeout=0.05)
            seen["worker"] = time.monotonic() - begun
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        begun = time.monotonic()
        stop_event.wait(timeout=0.05)
        seen["manager"] = time.monotonic() - begun

    patch = pytest.MonkeyPatch()
    patch.setattr(state, "QUEUE_MANAGER_SECONDS", 0.5)
    try:
        state._slow_queue_manager(manager)(stop, None)
    finally:
        patch.undo()
    assert seen["worker"] < 0.4 <= seen["manager"]
