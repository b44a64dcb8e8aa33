"""No stuck runs across a restart of the service (in-process; the kill -9 test through
`agentmesh up` is tests/e2e/test_workflows.py). Each test runs its own service (DBOS is one per
process, so none of them uses the module-wide `service` fixture)."""

from __future__ import annotations

import time
import uuid

import grpc

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.workflows.models import ExecutionRow, WorkflowRow
from mesh.workflows.service import DEFINITION
from mesh.workflows.store import executions, new_execution
from tests.harness import Identity, ServiceHarness
from tests.workflows.conftest import Client, states, status_name, step_status


def test_an_execution_never_enqueued_is_run_after_a_restart(tmp_path):
    identity = Identity()
    first = ServiceHarness(DEFINITION, tmp_path)
    try:
        client = Client(first, identity)
        wf = client.create(f"Flow {uuid.uuid4().hex[:6]}", [
            {"id": "a", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "inputs"}}])
        db = first.running.runtime.database

        def insert(session):  # a crash between the insert and the enqueue leaves this row
            row = new_execution(session.get(WorkflowRow, wf.id), {"x": 1},
                                "EXECUTION_PRIORITY_NORMAL", identity.user_id)
            row.dbos_workflow_id = row.id
            return executions.add(session, row).id
        execution_id = first._run(db.write(insert))
        assert status_name(client.get(execution_id)) == "EXECUTION_STATUS_QUEUED"
    finally:
        first.close()
    second = ServiceHarness(DEFINITION, tmp_path)
    try:
        done = Client(second, identity).wait(execution_id)
        assert status_name(done) == "EXECUTION_STATUS_COMPLETED"
    finally:
        second.close()


def test_an_interrupted_approval_wait_survives_a_restart(tmp_path):
    identity = Identity()
    first = ServiceHarness(DEFINITION, tmp_path)
    try:
        client = Client(first, identity)
        wf = client.create(f"Flow {uuid.uuid4().hex[:6]}", [
            {"id": "prep", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "inputs"}},
            {"id": "ask", "type": "STEP_TYPE_APPROVAL", "depends_on": ["prep"], "approval": {}},
            {"id": "after", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["ask"],
             "transform": {"expression": "steps.prep.output"}}])
        execution = client.execute(wf.id, {"v": 7})
        client.wait(execution.id, lambda e: step_status(e, "ask") == "STEP_STATUS_WAITING_APPROVAL")
    finally:
        first.close()
    second = ServiceHarness(DEFINITION, tmp_path)
    try:
        client = Client(second, identity)
        client.call("ApproveStep", pb.ApproveStepRequest(execution_id=execution.id, step_id="ask"))
        done = client.wait(execution.id)
        assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done
        assert states(done)["prep"].attempts == 1  # replayed from its checkpoint, not re-run
    finally:
        second.close()


def test_a_cancel_cut_off_by_a_crash_is_finished_on_restart(tmp_path):
    identity = Identity()
    first = ServiceHarness(DEFINITION, tmp_path)
    try:
        client = Client(first, identity)
        wf = client.create(f"Flow {uuid.uuid4().hex[:6]}", [
            {"id": "ask", "type": "STEP_TYPE_APPROVAL", "approval": {}}])
        execution = client.execute(wf.id)
        client.wait(execution.id, lambda e: step_status(e, "ask") == "STEP_STATUS_WAITING_APPROVAL")

        def cancel_row_only(session):  # the row was written, then the process died
            row = session.get(ExecutionRow, execution.id)
            row.status = "EXECUTION_STATUS_CANCELLED"
            session.add(row)
        first._run(first.running.runtime.database.write(cancel_row_only))
    finally:
        first.close()
    second = ServiceHarness(DEFINITION, tmp_path)
    try:
        from dbos import DBOS

        status = second._run(DBOS.get_workflow_status_async(execution.id))
        assert status.status == "CANCELLED"
        assert status_name(Client(second, identity).get(execution.id)) == \
            "EXECUTION_STATUS_CANCELLED"
    finally:
        second.close()


def test_a_replica_that_never_comes_back_is_recovered_by_another(tmp_path, monkeypatch):
    """Replica `workflows-a` stops with an execution waiting for approval and is never started
    again (a pod gone for good). Replica `workflows-b`, on the same database, sees its heartbeat
    grow old and takes the execution over: approved there, it completes from its checkpoints."""
    from datetime import timedelta

    from mesh.runtime.tables import utcnow
    from mesh.workflows import recovery
    from mesh.workflows.models import ExecutorRow

    monkeypatch.setattr(recovery, "HEARTBEAT_SECONDS", 0.5)
    identity = Identity()
    first = ServiceHarness(DEFINITION, tmp_path, replica_id="workflows-a")
    try:
        client = Client(first, identity)
        wf = client.create(f"Flow {uuid.uuid4().hex[:6]}", [
            {"id": "prep", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "inputs"}},
            {"id": "ask", "type": "STEP_TYPE_APPROVAL", "depends_on": ["prep"], "approval": {}},
            {"id": "after", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["ask"],
             "transform": {"expression": "steps.prep.output"}}])
        execution = client.execute(wf.id, {"v": 7})
        client.wait(execution.id, lambda e: step_status(e, "ask") == "STEP_STATUS_WAITING_APPROVAL")
        db = first.running.runtime.database
    finally:
        first.close()

    def age(session):  # as if `workflows-a` had been gone for a while
        row = session.get(ExecutorRow, "workflows-a")
        row.heartbeat_at = utcnow() - timedelta(seconds=recovery.EXECUTOR_LOST_AFTER_SECONDS + 5)
        session.add(row)
    with db.session(write=True) as session, session.begin():
        age(session)
    second = ServiceHarness(DEFINITION, tmp_path, replica_id="workflows-b")
    try:
        client = Client(second, identity)
        done = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # approve once b runs the interpreter again
            try:
                client.call("ApproveStep", pb.ApproveStepRequest(execution_id=execution.id,
                                                                 step_id="ask"))
            except grpc.RpcError:
                pass
            done = client.get(execution.id)
            if status_name(done) == "EXECUTION_STATUS_COMPLETED":
                break
            time.sleep(0.3)
        assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done
        assert states(done)["prep"].attempts == 1  # replayed from its checkpoint, not re-run
        with second.running.runtime.database.session() as session:
            assert session.get(ExecutorRow, "workflows-a") is None  # claimed once
            assert session.get(ExecutorRow, "workflows-b") is not None
    finally:
        second.close()


def test_a_sub_workflow_started_at_once_is_recovered_after_a_restart(tmp_path):
    """Children are not queued (they start at once as DBOS workflows of their own): one cut
    off by a restart is recovered like any other, and its parent completes."""
    identity = Identity()
    first = ServiceHarness(DEFINITION, tmp_path)
    try:
        client = Client(first, identity)
        child = client.create(f"Child {uuid.uuid4().hex[:6]}", [
            {"id": "ask", "type": "STEP_TYPE_APPROVAL", "approval": {}}])
        parent = client.create(f"Parent {uuid.uuid4().hex[:6]}", [
            {"id": "call", "type": "STEP_TYPE_SUB_WORKFLOW",
             "sub_workflow": {"workflow_id": child.slug}}])
        execution = client.execute(parent.id)
        running = client.wait(execution.id, lambda e: states(e)["call"].child_execution_id != "")
        child_id = states(running)["call"].child_execution_id
        client.wait(child_id, lambda e: step_status(e, "ask") == "STEP_STATUS_WAITING_APPROVAL")
    finally:
        first.close()
    second = ServiceHarness(DEFINITION, tmp_path)
    try:
        client = Client(second, identity)
        deadline = time.monotonic() + 30
        while True:  # approve once the recovered child waits again
            try:
                client.call("ApproveStep", pb.ApproveStepRequest(execution_id=child_id,
                                                                 step_id="ask"))
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        done = client.wait(execution.id)
        assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done
    finally:
        second.close()


def test_an_execution_queued_before_the_tenant_partitions_runs_after_a_restart(tmp_path):
    """A build whose queue had no partitions queued executions without a partition key; on the
    partitioned queue no partition would ever take them, so the restart puts them back in
    their tenant's partition."""
    from dbos import SetWorkflowID

    from mesh.workflows.state import interpret

    identity = Identity()
    first = ServiceHarness(DEFINITION, tmp_path)
    try:
        client = Client(first, identity)
        wf = client.create(f"Flow {uuid.uuid4().hex[:6]}", [
            {"id": "a", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "inputs"}}])
        db = first.running.runtime.database

        def insert(session):
            row = new_execution(session.get(WorkflowRow, wf.id), {"x": 1},
                                "EXECUTION_PRIORITY_NORMAL", identity.user_id)
            row.dbos_workflow_id = row.id
            return executions.add(session, row).id
        execution_id = first._run(db.write(insert))

        async def enqueue_without_partition():
            with SetWorkflowID(execution_id):
                await first.running.runtime.state.queue.enqueue_async(interpret, execution_id)
        first._run(enqueue_without_partition())
        time.sleep(1.0)
        assert status_name(client.get(execution_id)) == "EXECUTION_STATUS_QUEUED"
    finally:
        first.close()
    second = ServiceHarness(DEFINITION, tmp_path)
    try:
        done = Client(second, identity).wait(execution_id)
        assert status_name(done) == "EXECUTION_STATUS_COMPLETED", done
    finally:
        second.close()
