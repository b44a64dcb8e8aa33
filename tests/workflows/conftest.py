"""The workflows service in-process (real runtime, real DBOS) on SQLite and on PostgreSQL."""

from __future__ import annotations

import time

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import json_format

from agentmesh.workflows.v1 import workflows_pb2 as pb
from agentmesh.workflows.v1 import workflows_pb2_grpc as pb_grpc
from mesh.workflows.service import DEFINITION
from tests.harness import Identity, ServiceHarness
from tests.support.fixtures import local_server

ENDED = {"EXECUTION_STATUS_COMPLETED", "EXECUTION_STATUS_FAILED", "EXECUTION_STATUS_CANCELLED"}


def _drop_schemas(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for schema in ("workflows", "workflows_dbos"):
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


# The tools and agents services as the engine sees them, and the effect server its HTTP steps
# call (instead of the session's `web`: it counts effects per run).
peers = local_server("tests.workflows.servers:FakePeers", scope="module")
web = local_server("tests.workflows.servers:EffectServer", scope="module")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def service(request, tmp_path_factory, peers):
    # HTTP steps call the local effect server: the egress guard must allow 127.0.0.1. Schedules
    # may fire every second here (tests/workflows/test_executions.py waits for one).
    settings = {"peers": f"tools={peers.address},agents={peers.address}",
                "egress_allow": "127.0.0.1", "schedule_min_interval_seconds": 1}
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        _drop_schemas(url)
        settings["database_url"] = url
    with ServiceHarness(DEFINITION, tmp_path_factory.mktemp("workflows"), **settings) as harness:
        harness.backend = request.param
        yield harness
    if request.param == "postgres":
        _drop_schemas(settings["database_url"])


class Client:
    """A tenant's view of the service, with helpers that build workflows from dicts."""

    def __init__(self, harness: ServiceHarness, identity: Identity | None = None) -> None:
        self.identity = identity or Identity()
        self.stub = harness.stub(pb_grpc.WorkflowServiceStub)

    def call(self, method: str, request, **kwargs):
        return getattr(self.stub, method)(request, metadata=self.identity.metadata(), **kwargs)

    def create(self, name: str, steps: list[dict], activate: bool = True, **extra) -> pb.Workflow:
        workflow = json_format.ParseDict({"name": name, "steps": steps, **extra}, pb.Workflow())
        made = self.call("CreateWorkflow", pb.CreateWorkflowRequest(workflow=workflow))
        if activate:
            made = self.call("ActivateWorkflow", pb.ActivateWorkflowRequest(workflow_id=made.id))
        return made

    def execute(self, workflow_id: str, inputs: dict | None = None, **kwargs) -> pb.Execution:
        request = pb.ExecuteWorkflowRequest(workflow_id=workflow_id, **kwargs)
        if inputs:
            request.inputs.update(inputs)
        return self.call("ExecuteWorkflow", request)

    def get(self, execution_id: str) -> pb.Execution:
        return self.call("GetExecution", pb.GetExecutionRequest(execution_id=execution_id))

    def wait(self, execution_id: str, until=None, timeout: float = 30) -> pb.Execution:
        deadline = time.monotonic() + timeout
        while True:
            execution = self.get(execution_id)
            if (until(execution) if until else execution.status in
                    {pb.ExecutionStatus.Value(s) for s in ENDED}):
                return execution
            if time.monotonic() > deadline:
                raise AssertionError(f"execution did not get there in {timeout}s: {execution}")
            time.sleep(0.05)

    def completed(self, workflow_id: str, timeout: float = 15) -> pb.ListWorkflowExecutionsResponse:
        """The workflow's COMPLETED executions, once there is one (a schedule's fire)."""
        deadline = time.monotonic() + timeout
        while True:
            listed = self.call("ListWorkflowExecutions", pb.ListWorkflowExecutionsRequest(
                workflow_id=workflow_id, status=pb.EXECUTION_STATUS_COMPLETED))
            if listed.total or time.monotonic() > deadline:
                return listed
            time.sleep(0.2)


def states(execution: pb.Execution) -> dict[str, pb.StepState]:
    return {s.step_id: s for s in execution.step_states}


def status_name(execution) -> str:
    return pb.ExecutionStatus.Name(execution.status)


def step_status(execution, step_id: str) -> str:
    return pb.StepStatus.Name(states(execution)[step_id].status)


def output(execution, step_id: str) -> dict:
    return json_format.MessageToDict(states(execution)[step_id].output)


@pytest.fixture
def client(service) -> Client:
    return Client(service)


@pytest.fixture
def rpc_error():
    return grpc.RpcError
