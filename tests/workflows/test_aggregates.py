"""AggregateExecutions' SQL on SQLite and PostgreSQL: counts, durations and the agent filter
equal what is computed by hand from the inserted executions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.workflows.aggregates import aggregate_executions
from mesh.workflows.models import ExecutionRow, WorkflowRow
from tests.agents.test_aggregates import database

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TABLES = (WorkflowRow.__table__, ExecutionRow.__table__)


@pytest.fixture(params=["sqlite", "postgresql"])
def session(request, tmp_path):
    if request.param == "postgresql":
        request.getfixturevalue("postgres_url")
    with database(request.param, tmp_path, TABLES) as s:
        yield s


def _run(workflow, minute, seconds, status):
    created = T0 + timedelta(minutes=minute)
    ended = None if status == "EXECUTION_STATUS_RUNNING" else created + timedelta(seconds=seconds)
    return ExecutionRow(tenant_id="t", workflow_id=workflow.id, status=status, created_at=created,
                        updated_at=created, started_at=created, ended_at=ended)


def test_per_workflow_counts_durations_and_agent_filter(session):
    uses = WorkflowRow(tenant_id="t", name="Uses", slug="uses", created_at=T0, updated_at=T0,
                       definition={"steps": [{"id": "s", "agent": {"agent_id": "a1"}}]})
    other = WorkflowRow(tenant_id="t", name="Other", slug="other", created_at=T0, updated_at=T0)
    session.add_all([uses, other])
    session.add_all([_run(uses, 0, 1, "EXECUTION_STATUS_COMPLETED"),
                     _run(uses, 1, 3, "EXECUTION_STATUS_COMPLETED"),
                     _run(uses, 2, 2, "EXECUTION_STATUS_FAILED"),
                     _run(other, 3, 0, "EXECUTION_STATUS_RUNNING")])
    session.commit()
    request = pb.AggregateExecutionsRequest(group_by=["workflow"], with_execution_ids=True)
    request.start_time.FromDatetime(T0)
    request.end_time.FromDatetime(T0 + timedelta(hours=1))
    answer = aggregate_executions(session, "t", request)
    first, second = answer.groups
    assert (first.workflow_name, first.executions, first.completed, first.failed) == ("Uses", 3, 2, 1)
    assert first.total_duration_ms == pytest.approx(6000, abs=1)
    assert first.p95_ms == pytest.approx(3000, abs=1)
    assert (second.workflow_name, second.running, second.ended) == ("Other", 1, 0)
    assert len(answer.execution_ids) == 4
    request.agent_id = "a1"
    assert [g.workflow_name for g in aggregate_executions(session, "t", request).groups] == ["Uses"]
