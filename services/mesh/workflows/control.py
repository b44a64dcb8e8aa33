"""What a user does to a running execution, carried to its interpreter in DBOS: cancel or
terminate it, retry it from its failed steps, answer its approval step. Each function is given
the engine (`mesh.workflows.engine.Engine`) and changes the row first, DBOS second, so the
interpreter never overwrites what the user decided.
"""

from __future__ import annotations

from dbos import DBOS, SetWorkflowID
from dbos._dbos import _get_dbos_instance

from mesh.workflows.engine import QUEUE, Engine
from mesh.workflows.models import ENDED, ExecutionRow
from mesh.workflows.projection import end, error_record
from mesh.workflows.store import iso, timeout_of, version_of

E = "EXECUTION_STATUS_"
S = "STEP_STATUS_"


async def stop_execution(engine: Engine, execution_id: str, status: str, code: str,
                         message: str) -> None:
    """Cancel or terminate: the row first (so the interpreter cannot overwrite it), then
    the DBOS workflow (preemptible steps stop, nothing new starts), then steps in progress
    in this process, then child executions."""
    def apply(row: ExecutionRow):
        if row.status in ENDED:
            return None
        now = iso()
        states = []
        for state in row.step_states:
            state = dict(state)
            if state["status"] in (S + "RUNNING", S + "WAITING_APPROVAL"):
                state["status"] = S + "CANCELLED"
                state["ended_at"] = now
            states.append(state)
        row.step_states = states
        end(row, status, error_record("", code, message))
        return row.dbos_workflow_id or row.id, [s.get("child_execution_id") for s in states
                                                if s.get("child_execution_id")]
    found = await engine.projection.update(execution_id, apply)
    if found is None:
        return
    workflow_id, children = found
    await DBOS.cancel_workflow_async(workflow_id)
    engine.cancel_steps(execution_id)
    for child in children:
        await stop_execution(engine, child, status, code, f"parent {execution_id}: {message}")


async def retry(engine: Engine, execution_id: str,
                scopes: list[str] | None = None) -> None:
    """Runs a FAILED execution again from its failed steps; `scopes`, when given, replace
    the ones its steps act within (a retry by someone else narrows them)."""
    def apply(row: ExecutionRow):
        failed = {s["step_id"] for s in row.step_states
                  if s["status"] in (S + "FAILED", S + "CANCELLED")}
        old = row.dbos_workflow_id or row.id
        ran_in_call = not row.dbos_workflow_id  # a pure workflow's run: no DBOS workflow
        if scopes is not None:
            row.scopes = scopes
        row.runs += 1
        row.dbos_workflow_id = row.id if ran_in_call else f"{row.id}.r{row.runs}"
        row.status = E + "QUEUED"
        row.ended_at = None
        row.current_phase = ""
        states = []
        for state in row.step_states:
            state = dict(state)
            if state["status"] != S + "COMPLETED":
                state.update(status=S + "PENDING", run_attempts=0, open_attempt=0,
                             ended_at=None, error="")
            states.append(state)
        row.step_states = states
        if ran_in_call:
            return None
        return old, row.dbos_workflow_id, failed, row.tenant_id, row.parent_execution_id
    retried = await engine.projection.update(execution_id, apply)
    if retried is None:  # run in the call that started it: queued now, from the start
        row = await engine.db.read(lambda s: s.get(ExecutionRow, execution_id))
        timeout = await engine.db.read(lambda s: timeout_of(
            version_of(s, row.workflow_id, row.workflow_version).workflow))
        await engine.enqueue(row.id, row.tenant_id, row.priority, timeout)
        return
    old, new, failed, tenant_id, parent = retried
    steps = await DBOS.list_workflow_steps_async(old)
    # From the earliest checkpoint of a step that did not complete: everything before it
    # is copied (not run again), that step and what follows run again.
    names = {f"step:{sid}" for sid in failed}
    start = min((s["function_id"] for s in steps if s["function_name"] in names),
                default=None)
    if start is None:  # failed before any step ran: from the first step after `load`
        start = 1
    await engine.ready.wait()
    # A root waits for its tenant's share of the queue again; a child runs at once, as it
    # did the first time (DBOS's internal queue, which has no concurrency limit).
    where = {"queue_name": None} if parent else {"queue_name": QUEUE,
                                                  "queue_partition_key": tenant_id}
    with SetWorkflowID(new):
        await DBOS.fork_workflow_async(old, start, **where)
    # Now (the queues' polls are safety nets): a root if its tenant has a slot here.
    if parent:
        engine.wake_internal_queue()
    else:
        engine.wake_queue(tenant_id)


async def requeue_in_partition(engine: Engine, execution_id: str) -> None:
    """An interpreter queued without a partition (by a build whose queue had none, so no
    partition would ever dequeue it) goes back on the queue in its tenant's partition."""
    def apply(row: ExecutionRow):
        old = row.dbos_workflow_id or row.id
        row.runs += 1
        row.dbos_workflow_id = f"{row.id}.r{row.runs}"
        return old, row.dbos_workflow_id, row.tenant_id
    old, new, tenant_id = await engine.projection.update(execution_id, apply)
    await DBOS.cancel_workflow_async(old)
    with SetWorkflowID(new):
        await DBOS.fork_workflow_async(old, 1, queue_name=QUEUE,
                                       queue_partition_key=tenant_id)
    engine.wake_queue(tenant_id)


async def send_decision(engine: Engine, execution_id: str, step_id: str,
                        decision: dict) -> None:
    """An approval step's decision, to the interpreter waiting for it (a DBOS message)."""
    row = await engine.db.read(lambda s: s.get(ExecutionRow, execution_id))
    workflow_id, topic = row.dbos_workflow_id or row.id, f"approval:{step_id}"
    await DBOS.send_async(workflow_id, decision, topic)
    wake_receiver(workflow_id, topic)


def wake_receiver(workflow_id: str, topic: str) -> None:
    """Wakes the receiver of a message just sent, when it waits in this process, instead of
    leaving it to DBOS's notification poll (SQLite: mesh.workflows.state's
    MESSAGE_POLLING_SECONDS; PostgreSQL's LISTEN/NOTIFY does it as well). DBOS internals:
    tests/workflows/test_dispatch.py checks their shape."""
    system = _get_dbos_instance()._sys_db
    key, _ = system._waiter(workflow_id, topic)
    signal = system.notifications_map.get(key)
    if signal is not None:
        signal.set()
