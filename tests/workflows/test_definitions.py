"""Workflow definitions through the real service: CRUD by id or slug, versions, lifecycle,
validation errors that name the step, tenancy."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format

from agentmesh.workflows.v1 import workflows_pb2 as pb
from tests.harness import Identity, error_reason, field_violations
from tests.workflows.conftest import Client

TRANSFORM = {"id": "a", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "inputs"}}


def _name():
    return f"Flow {uuid.uuid4().hex[:8]}"


def _invalid(client: Client, steps: list[dict], **extra) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        client.create(_name(), steps, activate=False, **extra)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return caught.value


def test_create_get_update_versions_by_id_and_slug(client):
    made = client.create("Nightly Report", [TRANSFORM], activate=False,
                         description="d", labels={"team": "ops"})
    assert made.slug.startswith("nightly-report") and made.version == 1
    assert made.status == pb.WORKFLOW_STATUS_DRAFT and made.created_by == client.identity.user_id
    for key in (made.id, made.slug):
        got = client.call("GetWorkflow", pb.GetWorkflowRequest(workflow_id=key))
        assert got.id == made.id and got.steps[0].transform.expression == "inputs"
    body = json_format.ParseDict({"description": "new", "steps": [
        TRANSFORM, {"id": "b", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["a"],
                    "transform": {"expression": "steps.a.output"}}]}, pb.Workflow())
    updated = client.call("UpdateWorkflow", pb.UpdateWorkflowRequest(
        workflow_id=made.slug, workflow=body))
    assert updated.version == 2 and updated.description == "new" and len(updated.steps) == 2
    assert updated.name == "Nightly Report" and dict(updated.labels) == {"team": "ops"}
    masked = client.call("UpdateWorkflow", pb.UpdateWorkflowRequest(
        workflow_id=made.id, workflow=pb.Workflow(name="Renamed", description="ignored"),
        update_mask=field_mask_pb2.FieldMask(paths=["name"])))
    assert masked.version == 3 and masked.name == "Renamed" and masked.description == "new"
    listed = client.call("ListWorkflowVersions", pb.ListWorkflowVersionsRequest(
        workflow_id=made.id))
    assert [v.version for v in listed.items] == [3, 2, 1] and listed.total == 3
    first = client.call("GetWorkflowVersion", pb.GetWorkflowVersionRequest(
        workflow_id=made.slug, version=1))
    assert len(first.workflow.steps) == 1 and first.workflow.description == "d"
    with pytest.raises(grpc.RpcError) as caught:
        client.call("GetWorkflowVersion", pb.GetWorkflowVersionRequest(workflow_id=made.id,
                                                                       version=9))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_lifecycle_list_types_and_delete(client):
    made = client.create(_name(), [TRANSFORM], activate=False)
    with pytest.raises(grpc.RpcError) as caught:
        client.execute(made.id)
    assert error_reason(caught.value) == "WORKFLOW_NOT_ACTIVE"
    with pytest.raises(grpc.RpcError) as caught:
        client.call("DeactivateWorkflow", pb.DeactivateWorkflowRequest(workflow_id=made.id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    active = client.call("ActivateWorkflow", pb.ActivateWorkflowRequest(workflow_id=made.slug))
    assert active.status == pb.WORKFLOW_STATUS_ACTIVE
    types = client.call("ListWorkflowTypes", pb.ListWorkflowTypesRequest(search=made.slug))
    assert [t.workflow_type for t in types.items] == [made.slug]
    listed = client.call("ListWorkflows", pb.ListWorkflowsRequest(
        status=pb.WORKFLOW_STATUS_ACTIVE, search=made.slug))
    assert listed.total == 1 and listed.items[0].id == made.id
    inactive = client.call("DeactivateWorkflow", pb.DeactivateWorkflowRequest(workflow_id=made.id))
    assert inactive.status == pb.WORKFLOW_STATUS_INACTIVE
    deleted = client.call("DeleteWorkflow", pb.DeleteWorkflowRequest(workflow_id=made.id))
    assert deleted.success and "deleted" in deleted.message
    with pytest.raises(grpc.RpcError) as caught:
        client.call("GetWorkflow", pb.GetWorkflowRequest(workflow_id=made.id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_duplicate_slug_and_bad_slug(client):
    made = client.create(_name(), [TRANSFORM], activate=False)
    with pytest.raises(grpc.RpcError) as caught:
        client.create("x", [TRANSFORM], slug=made.slug)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    for slug in ("executions", "Upper", str(uuid.uuid4())):
        with pytest.raises(grpc.RpcError) as caught:
            client.create("x", [TRANSFORM], slug=slug)
        assert field_violations(caught.value) == ["slug"]


@pytest.mark.parametrize("steps, field, words", [
    # a REQUIRED enum at its zero value: refused before the handler (mesh.runtime.limits)
    ([{"id": "a", "type": "STEP_TYPE_UNSPECIFIED"}], "steps[0].type", "is required"),
    # a number StepType does not define: refused before the handler too
    ([{"id": "a", "type": 42}], "steps[0].type", "42 is not a value of StepType"),
    ([{"id": "a", "type": "STEP_TYPE_TOOL", "transform": {"expression": "x"}}],
     "steps.a.tool", "needs the `tool` config"),
    ([TRANSFORM, {"id": "b", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["ghost"],
                  "transform": {"expression": "x"}}], "steps.b.depends_on", "'ghost'"),
    ([TRANSFORM, {"id": "b", "type": "STEP_TYPE_TRANSFORM",
                  "transform": {"expression": "steps.ghost.output"}}],
     "steps.b.transform.expression", "'ghost', which does not exist"),
    ([{"id": "a", "type": "STEP_TYPE_TRANSFORM", "inputs": {"v": "steps.b.output"},
       "transform": {"expression": "args.v"}},
      {"id": "b", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["a"],
       "transform": {"expression": "inputs"}}],
     "steps.a.inputs.v", "does not run before it"),
    ([{"id": "a", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["c"],
       "transform": {"expression": "inputs"}},
      {"id": "b", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["a"],
       "transform": {"expression": "inputs"}},
      {"id": "c", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["b"],
       "transform": {"expression": "inputs"}}], "depends_on", "dependency cycle"),
    ([TRANSFORM, TRANSFORM], "steps.a.id", "defined twice"),
    ([{"id": "a", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "a ||| b"}}],
     "steps.a.transform.expression", "not a valid expression"),
    ([{"id": "p", "type": "STEP_TYPE_PARALLEL", "parallel": {"branches": [
        {"name": "x", "step_ids": ["nope"]}]}}], "steps.p.parallel", "'nope'"),
    ([{"id": "t", "type": "STEP_TYPE_TOOL", "tool": {"tool_id": "missing-tool"}}],
     "steps.t.tool.tool_id", "does not exist"),
    ([{"id": "g", "type": "STEP_TYPE_AGENT", "agent": {"agent_id": "missing-agent",
                                                        "prompt": "hi"}}],
     "steps.g.agent.agent_id", "does not exist"),
])
def test_validation_errors_name_the_step(client, steps, field, words):
    error = _invalid(client, steps)
    assert error_reason(error) in ("INVALID_WORKFLOW", "INVALID_ARGUMENT")
    fields = field_violations(error)
    assert any(f.endswith(field) or f == field for f in fields), fields
    assert words in error.details(), error.details()


def test_update_is_validated_and_keeps_the_old_version(client):
    made = client.create(_name(), [TRANSFORM], activate=False)
    body = json_format.ParseDict({"steps": [{"id": "a", "type": "STEP_TYPE_TRANSFORM",
                                             "depends_on": ["a"],
                                             "transform": {"expression": "x"}}]}, pb.Workflow())
    with pytest.raises(grpc.RpcError) as caught:
        client.call("UpdateWorkflow", pb.UpdateWorkflowRequest(workflow_id=made.id, workflow=body))
    assert "step 'a' depends on itself" in caught.value.details()
    assert client.call("GetWorkflow", pb.GetWorkflowRequest(workflow_id=made.id)).version == 1


def test_other_tenant_sees_nothing(service, client):
    made = client.create(_name(), [TRANSFORM])
    other = Client(service, Identity())
    requests = [
        ("GetWorkflow", pb.GetWorkflowRequest(workflow_id=made.id)),
        ("GetWorkflow", pb.GetWorkflowRequest(workflow_id=made.slug)),
        ("UpdateWorkflow", pb.UpdateWorkflowRequest(workflow_id=made.id,
                                                    workflow=pb.Workflow(description="x"))),
        ("DeleteWorkflow", pb.DeleteWorkflowRequest(workflow_id=made.id)),
        ("ActivateWorkflow", pb.ActivateWorkflowRequest(workflow_id=made.id)),
        ("DeactivateWorkflow", pb.DeactivateWorkflowRequest(workflow_id=made.id)),
        ("ExecuteWorkflow", pb.ExecuteWorkflowRequest(workflow_id=made.id)),
        ("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(workflow_id=made.id)),
        ("GetWorkflowStats", pb.GetWorkflowStatsRequest(workflow_id=made.id)),
        ("ListWorkflowVersions", pb.ListWorkflowVersionsRequest(workflow_id=made.id)),
        ("GetWorkflowVersion", pb.GetWorkflowVersionRequest(workflow_id=made.id, version=1)),
        ("ListSchedules", pb.ListSchedulesRequest(workflow_id=made.id)),
        ("CreateSchedule", pb.CreateScheduleRequest(workflow_id=made.id,
                                                    schedule=pb.Schedule(cron="* * * * *"))),
    ]
    for method, request in requests:
        with pytest.raises(grpc.RpcError) as caught:
            other.call(method, request)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND, method
    # Seed 000's route: another tenant's workflow is no type of this one (400, as any unknown).
    with pytest.raises(grpc.RpcError) as caught:
        other.call("SubmitWorkflow", pb.SubmitWorkflowRequest(workflow_type=made.slug,
                                                              requirements="x"))
    assert error_reason(caught.value) == "UNKNOWN_WORKFLOW_TYPE"
    assert other.call("ListWorkflows", pb.ListWorkflowsRequest()).total == 0
