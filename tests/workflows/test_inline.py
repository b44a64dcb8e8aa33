"""Pure workflows run in the call that starts them (mesh.workflows.inline): the answer is the
ended execution, the same one the queued interpreter makes of the same definition; anything
else is queued as before. Governance's part (a denied step) is in tests/e2e/test_workflows.py."""

from __future__ import annotations

import uuid

import pytest
from google.protobuf import json_format

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.workflows.service import DEFINITION
from tests.harness import Identity, ServiceHarness
from tests.workflows.conftest import Client, output, states, status_name, step_status

BRANCHING = [
    {"id": "check", "type": "STEP_TYPE_CONDITION",
     "condition": {"expression": "inputs.n > `1`", "then_step_ids": ["big"],
                   "else_step_ids": ["small"]}},
    {"id": "big", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["check"],
     "inputs": {"n": "inputs.n"}, "transform": {"expression": "{size: 'big', n: args.n}"}},
    {"id": "small", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["check"],
     "transform": {"expression": "{size: 'small'}"}},
    {"id": "last", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["big", "small"],
     "name": "Summing up", "transform": {"expression": "[steps.big.output, steps.small.output]"}},
]
OUTPUTS = {"size": "steps.big.output.size || steps.small.output.size", "all": "steps.last.output"}


def _slug() -> str:
    return f"w-{uuid.uuid4().hex[:8]}"


class Queued(Client):
    """The same service as if AGENTMESH_WORKFLOW_INLINE were false: its executions queued."""

    def __init__(self, harness: ServiceHarness) -> None:
        super().__init__(harness)
        self.settings = harness.settings

    def execute(self, *args, **kwargs) -> pb.Execution:
        self.settings.workflow_inline = False
        try:
            return super().execute(*args, **kwargs)
        finally:
            self.settings.workflow_inline = True


@pytest.fixture
def queued(service) -> Queued:
    return Queued(service)


def _shape(execution: pb.Execution) -> dict:
    """What a user reads of an ended execution, without its ids and times."""
    return {
        "status": status_name(execution), "progress": execution.progress,
        "outputs": json_format.MessageToDict(execution.outputs),
        "steps": {sid: (pb.StepStatus.Name(s.status), json_format.MessageToDict(s.output),
                        s.attempts, bool(s.started_at.seconds), bool(s.ended_at.seconds),
                        s.error)
                  for sid, s in states(execution).items()},
        "phases": list(execution.phases_completed),
        "errors": [(e.step_id, e.code) for e in execution.errors],
        "version": execution.workflow_version, "current_phase": execution.current_phase,
        "timed": bool(execution.started_at.seconds and execution.ended_at.seconds),
    }


@pytest.mark.parametrize("n", [5, 0])
def test_a_pure_workflow_answers_ended_as_the_queued_interpreter_would(client, queued, n):
    now = client.create(_slug(), BRANCHING, outputs=OUTPUTS)
    later = queued.create(_slug(), BRANCHING, outputs=OUTPUTS)
    answered = client.execute(now.id, {"n": n})
    assert status_name(answered) == "EXECUTION_STATUS_COMPLETED"
    assert answered.workflow_id == now.id and answered.workflow_slug == now.slug
    assert client.get(answered.id) == answered  # written as answered, in one go
    done = queued.wait(queued.execute(later.id, {"n": n}).id)
    assert _shape(answered) == _shape(done)
    taken, skipped = ("big", "small") if n else ("small", "big")
    assert step_status(answered, skipped) == "STEP_STATUS_SKIPPED"
    assert output(answered, taken)["size"] == taken
    assert json_format.MessageToDict(answered.outputs)["size"] == taken
    # the stream of an ended execution: its last state, at once
    events = list(client.call("WatchExecution", pb.WatchExecutionRequest(
        execution_id=answered.id), timeout=5))
    assert events and events[-1].status == answered.status


def test_a_failing_expression_fails_it_in_the_call_and_a_retry_runs_it_queued(client, queued):
    steps = [{"id": "ok", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "`1`"}},
             {"id": "bad", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["ok"],
              "transform": {"expression": "abs(inputs.word)"}},
             {"id": "after", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["bad"],
              "transform": {"expression": "`2`"}}]
    now, later = client.create(_slug(), steps), queued.create(_slug(), steps)
    failed = client.execute(now.id, {"word": "text"})
    assert status_name(failed) == "EXECUTION_STATUS_FAILED"
    assert [(e.step_id, e.code) for e in failed.errors] == [("bad", "EXPRESSION_FAILED")]
    assert step_status(failed, "after") == "STEP_STATUS_SKIPPED"
    assert _shape(failed) == _shape(queued.wait(queued.execute(later.id, {"word": "text"}).id))
    # A retry queues an interpreter (the inline run left no DBOS workflow to fork): it runs
    # the steps again and fails the same way, as a second run.
    retried = client.call("RetryExecution", pb.RetryExecutionRequest(execution_id=failed.id))
    assert status_name(retried) in ("EXECUTION_STATUS_QUEUED", "EXECUTION_STATUS_RUNNING",
                                    "EXECUTION_STATUS_FAILED")
    again = client.wait(failed.id, lambda e: len(e.errors) == 2 and status_name(e) in (
        "EXECUTION_STATUS_FAILED", "EXECUTION_STATUS_COMPLETED"))
    assert status_name(again) == "EXECUTION_STATUS_FAILED"
    assert [e.code for e in again.errors] == ["EXPRESSION_FAILED", "EXPRESSION_FAILED"]


def test_an_idempotency_key_answers_the_first_run(client):
    workflow = client.create(_slug(), BRANCHING, outputs=OUTPUTS)
    key = uuid.uuid4().hex
    first = client.execute(workflow.id, {"n": 5}, idempotency_key=key)
    second = client.execute(workflow.id, {"n": 0}, idempotency_key=key)
    assert second.id == first.id and second.outputs == first.outputs


def test_what_is_not_pure_is_queued(client, web):
    unbounded = client.create(_slug(), [  # sort_by's cost is not bounded by the document
        {"id": "s", "type": "STEP_TYPE_TRANSFORM",
         "transform": {"expression": "sort_by(inputs.items, &@)"}}])
    effect = client.create(_slug(), [
        {"id": "t", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "`1`"}},
        {"id": "h", "type": "STEP_TYPE_HTTP", "depends_on": ["t"],
         "http": {"url": f"{web.url}/effect"}}])
    for workflow, inputs in ((unbounded, {"items": [3, 1, 2]}), (effect, None)):
        started = client.execute(workflow.id, inputs)
        assert status_name(started) == "EXECUTION_STATUS_QUEUED"
        assert status_name(client.wait(started.id)) == "EXECUTION_STATUS_COMPLETED"


def test_a_run_that_builds_past_the_limit_is_queued_instead(client):
    """Each step doubles its input by reference ({a: x, b: x}): cheap to evaluate, 2^n to
    write. Past AGENTMESH_RENDER_MAX_BYTES (1 MiB) the run in the call stops, nothing written,
    and the execution is queued (where the sandbox evaluates multi-selects)."""
    steps = [{"id": "s0", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "inputs"}}]
    for i in range(1, 10):
        steps.append({"id": f"s{i}", "type": "STEP_TYPE_TRANSFORM", "depends_on": [f"s{i-1}"],
                      "transform": {"expression": f"{{a: steps.s{i-1}.output, "
                                                  f"b: steps.s{i-1}.output}}"}})
    workflow = client.create(_slug(), steps)
    started = client.execute(workflow.id, {"text": "x" * 8192})
    assert status_name(started) == "EXECUTION_STATUS_QUEUED"
    client.call("CancelExecution", pb.CancelExecutionRequest(execution_id=started.id))
    assert status_name(client.wait(started.id)) == "EXECUTION_STATUS_CANCELLED"
    small = client.execute(workflow.id, {"text": "x"})  # 2^9 references of a few bytes
    assert status_name(small) == "EXECUTION_STATUS_COMPLETED"


def test_nothing_of_an_ended_run_is_kept_in_the_process(client, queued):
    """The engine tracks a run's step tasks (to cancel them) only while they run: after many
    executions, in the call and queued, nothing of them is left in its maps."""
    from mesh.workflows import state

    workflow = client.create(_slug(), BRANCHING, outputs=OUTPUTS)
    for n in range(20):
        client.execute(workflow.id, {"n": n})
    later = queued.create(_slug(), BRANCHING, outputs=OUTPUTS)
    queued.wait(queued.execute(later.id, {"n": 1}).id)
    assert state.running()._tasks == {}


def test_an_execution_run_in_its_call_is_audited_and_counted_as_any_row(service):
    """A run in the call is inserted as values, without the ORM's flush (and its audit hook):
    its start is in the audit trail all the same, with who started it and what, and the
    tenant's row count (an unfiltered list's total) counts it. With an idempotency key it goes
    through the ORM: both ways give the same event."""
    from sqlmodel import select

    from mesh.runtime.audit import AuditEvent
    from mesh.runtime.tables import RowCount

    me = Identity()
    client = Client(service, me)
    workflow = client.create(_slug(), BRANCHING, outputs=OUTPUTS)
    plain = client.execute(workflow.id, {"n": 5})
    keyed = client.execute(workflow.id, {"n": 0}, idempotency_key=uuid.uuid4().hex)
    assert status_name(plain) == status_name(keyed) == "EXECUTION_STATUS_COMPLETED"

    db = service.running.runtime.database
    with db.session() as session:
        events = {e.resource_id: e for e in session.exec(select(AuditEvent).where(
            AuditEvent.tenant_id == me.tenant_id,
            AuditEvent.resource_type == "execution")).all()}
        counted = session.exec(select(RowCount.n).where(
            RowCount.table_name == "executions", RowCount.tenant_id == me.tenant_id)).one()
    assert counted == 2
    assert set(events) == {plain.id, keyed.id}
    for execution, n in ((plain, 5), (keyed, 0)):
        event = events[execution.id]
        assert (event.action, event.actor, event.service) == (
            "execution.create", me.user_id, "workflows")
        assert event.after["workflow_id"] == workflow.id and event.after["inputs"] == {"n": n}
        assert "outputs" not in event.after and "step_states" not in event.after
        assert event.before is None and event.correlation_id
    assert set(events[plain.id].after) == set(events[keyed.id].after)



def test_runs_of_one_definition_share_its_parse_and_an_update_runs_the_new_one(client, service):
    """Definitions are parsed once per distinct definition (definition.parsed_graph): two
    tenants' identical workflows and repeated runs each answer their own inputs from one
    parse, and an update's new expression runs on the next execution, the other tenant's
    workflow unchanged."""
    from mesh.workflows import definition

    steps = [{"id": "echo", "type": "STEP_TYPE_TRANSFORM",
              "transform": {"expression": "{n: inputs.n, by: 'first'}"}}]
    other = Client(service, Identity())
    mine, theirs = client.create(_slug(), steps), other.create(_slug(), steps)
    client.execute(mine.id, {"n": 1})  # parsed here, if no earlier test ran this definition
    before = definition._parsed_graph.cache_info()
    runs = [client.execute(mine.id, {"n": 4}), other.execute(theirs.id, {"n": 5}),
            client.execute(mine.id, {"n": 6})]
    assert [output(e, "echo") for e in runs] == [{"n": n, "by": "first"} for n in (4, 5, 6)]
    after = definition._parsed_graph.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (3, 0)

    changed = [{**steps[0], "transform": {"expression": "{n: inputs.n, by: 'second'}"}}]
    client.call("UpdateWorkflow", pb.UpdateWorkflowRequest(
        workflow_id=mine.id, workflow=json_format.ParseDict({"steps": changed}, pb.Workflow()),
        update_mask={"paths": ["steps"]}))
    assert output(client.execute(mine.id, {"n": 4}), "echo") == {"n": 4, "by": "second"}
    assert output(other.execute(theirs.id, {"n": 4}), "echo") == {"n": 4, "by": "first"}
