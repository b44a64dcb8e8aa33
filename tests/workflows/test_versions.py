"""A workflow's version labels (mesh.runtime.versions, WORKFLOW_VERSIONS): labels point at its
immutable versions, an execution runs the version its label names (default `production`, else
`latest`) and records it with the label, a schedule's next fire follows the label, and a diff
names what changed."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from google.protobuf import json_format

from agentmesh.workflows.v1 import workflows_pb2 as pb
from tests.harness import error_reason

# service, client: tests/workflows/conftest.py


def _step(value: str) -> dict:
    return {"id": "a", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": f"'{value}'"}}


@pytest.fixture
def versioned(client):
    """An active workflow with three versions: version n outputs "vn"."""
    wf = client.create(f"Flow {uuid.uuid4().hex[:8]}", [_step("v1")])
    for n in (2, 3):
        client.call("UpdateWorkflow", pb.UpdateWorkflowRequest(
            workflow_id=wf.id, workflow=json_format.ParseDict({"steps": [_step(f"v{n}")]},
                                                              pb.Workflow())))
    return wf


def _ran(client, execution) -> tuple[int, str, str]:
    ended = client.wait(execution.id)
    return (ended.workflow_version, ended.workflow_label,
            json_format.MessageToDict(ended.outputs)["value"])


def test_an_execution_runs_the_labelled_version_and_records_it(client, versioned):
    wf = versioned
    assert _ran(client, client.execute(wf.id)) == (3, "latest", "v3")
    labelled = client.call("SetWorkflowLabel", pb.SetWorkflowLabelRequest(
        workflow_id=wf.slug, label="production", version=2))
    assert dict(labelled.version_labels) == {"production": 2} and labelled.version == 3
    assert _ran(client, client.execute(wf.id)) == (2, "production", "v2")
    # Rollback: move the label back.
    client.call("SetWorkflowLabel", pb.SetWorkflowLabelRequest(
        workflow_id=wf.id, label="production", version=1))
    assert _ran(client, client.execute(wf.id)) == (1, "production", "v1")
    # A start may name a version or a label.
    assert _ran(client, client.execute(wf.id, version=3)) == (3, "", "v3")
    assert _ran(client, client.execute(wf.id, label="latest")) == (3, "latest", "v3")
    with pytest.raises(grpc.RpcError) as caught:
        client.execute(wf.id, label="staging")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "LABEL_NOT_FOUND"
    listed = client.call("ListWorkflowVersions", pb.ListWorkflowVersionsRequest(
        workflow_id=wf.id))
    assert [(v.version, list(v.labels)) for v in listed.items] == [
        (3, ["latest"]), (2, []), (1, ["production"])]
    client.call("DeleteWorkflowLabel", pb.DeleteWorkflowLabelRequest(
        workflow_id=wf.id, label="production"))
    assert not client.call("GetWorkflow", pb.GetWorkflowRequest(workflow_id=wf.id)).version_labels
    with pytest.raises(grpc.RpcError) as caught:
        client.call("SetWorkflowLabel", pb.SetWorkflowLabelRequest(
            workflow_id=wf.id, label="latest", version=1))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_diff_names_what_changed(client, versioned):
    diff = client.call("DiffWorkflowVersions", pb.DiffWorkflowVersionsRequest(
        workflow_id=versioned.id, version=3, against=1))
    assert (diff.from_version, diff.to_version) == (1, 3)
    assert [c.field for c in diff.changes] == ["steps"]
    assert json_format.MessageToDict(diff.changes[0].after)[0]["transform"] == {
        "expression": "'v3'"}


def test_a_schedule_runs_the_version_its_label_points_at(client, versioned):
    wf = versioned
    client.call("SetWorkflowLabel", pb.SetWorkflowLabelRequest(
        workflow_id=wf.id, label="production", version=2))
    schedule = client.call("CreateSchedule", pb.CreateScheduleRequest(
        workflow_id=wf.id, schedule=pb.Schedule(cron="* * * * * *")))

    def next_fire(after: set[str]) -> pb.Execution:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            listed = client.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
                workflow_id=wf.id, status=pb.EXECUTION_STATUS_COMPLETED, page_size=100))
            fresh = [e for e in listed.items if e.id not in after and e.schedule_id]
            if fresh:
                return fresh[0]
            time.sleep(0.2)
        raise AssertionError("the schedule did not fire")

    first = next_fire(set())
    assert (first.workflow_version, first.workflow_label) == (2, "production")
    client.call("SetWorkflowLabel", pb.SetWorkflowLabelRequest(
        workflow_id=wf.id, label="production", version=1))
    time.sleep(1.2)   # a fire already made before the move may still end
    seen = {e.id for e in client.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
        workflow_id=wf.id, page_size=100)).items}
    moved = next_fire(seen)
    assert (moved.workflow_version, moved.workflow_label) == (1, "production")
    assert json_format.MessageToDict(moved.outputs) == {"value": "v1"}
    client.call("DeleteSchedule", pb.DeleteScheduleRequest(workflow_id=wf.id,
                                                           schedule_id=schedule.id))


def test_a_read_by_version_or_label(client, versioned):
    client.call("SetWorkflowLabel", pb.SetWorkflowLabelRequest(
        workflow_id=versioned.id, label="production", version=2))
    for kwargs, expression, number in [({"label": "production"}, "'v2'", 2),
                                       ({"version": 1}, "'v1'", 1),
                                       ({"label": "latest"}, "'v3'", 3), ({}, "'v3'", 3)]:
        got = client.call("GetWorkflow", pb.GetWorkflowRequest(workflow_id=versioned.slug,
                                                               **kwargs))
        assert (got.steps[0].transform.expression, got.version) == (expression, number)
        assert got.id == versioned.id and dict(got.version_labels) == {"production": 2}
    with pytest.raises(grpc.RpcError) as caught:
        client.call("GetWorkflow", pb.GetWorkflowRequest(workflow_id=versioned.id, label="x"))
    assert error_reason(caught.value) == "LABEL_NOT_FOUND"


def test_a_schedule_pinned_to_a_label_follows_it_and_skips_when_it_is_gone(client, versioned):
    wf = versioned
    client.call("SetWorkflowLabel", pb.SetWorkflowLabelRequest(
        workflow_id=wf.id, label="nightly", version=1))
    with pytest.raises(grpc.RpcError) as caught:   # what it names must exist
        client.call("CreateSchedule", pb.CreateScheduleRequest(
            workflow_id=wf.id, schedule=pb.Schedule(cron="* * * * * *", label="nope")))
    assert error_reason(caught.value) == "LABEL_NOT_FOUND"
    schedule = client.call("CreateSchedule", pb.CreateScheduleRequest(
        workflow_id=wf.id, schedule=pb.Schedule(cron="* * * * * *", label="nightly")))
    assert schedule.label == "nightly"
    deadline = time.monotonic() + 15
    while True:
        listed = client.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
            workflow_id=wf.id, status=pb.EXECUTION_STATUS_COMPLETED, page_size=100))
        fired = [e for e in listed.items if e.schedule_id == schedule.id]
        if fired:
            break
        assert time.monotonic() < deadline, "the schedule did not fire"
        time.sleep(0.2)
    assert (fired[0].workflow_version, fired[0].workflow_label) == (1, "nightly")
    client.call("DeleteWorkflowLabel", pb.DeleteWorkflowLabelRequest(workflow_id=wf.id,
                                                                     label="nightly"))
    time.sleep(1.5)   # a fire made before the label went may still be queued
    before = client.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
        workflow_id=wf.id)).total
    time.sleep(2.0)
    assert client.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
        workflow_id=wf.id)).total == before   # skipped, not failed
    client.call("DeleteSchedule", pb.DeleteScheduleRequest(workflow_id=wf.id,
                                                           schedule_id=schedule.id))
