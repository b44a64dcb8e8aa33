"""AggregateCalls' SQL on SQLite and PostgreSQL: counts, percentiles, buckets and peak
concurrency equal what is computed by hand from the inserted calls."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from agentmesh.agents.v1 import agents_pb2 as pb
from mesh.agents.aggregates import aggregate_calls
from mesh.agents.models import AgentRow, CallRow
from tests.conftest import POSTGRES_URL

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@contextmanager
def database(kind: str, tmp_path, tables):
    """A session on SQLite or on the test PostgreSQL (a schema of its own, dropped after)."""
    if kind == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path}/a.db")
        schema = None
    else:
        schema = "agg_" + uuid.uuid4().hex[:8]
        with sa.create_engine(POSTGRES_URL).begin() as c:
            c.execute(sa.text(f"CREATE SCHEMA {schema}"))
        engine = sa.create_engine(POSTGRES_URL,
                                  connect_args={"options": f"-csearch_path={schema}"})
    for table in tables:
        table.create(engine)
    try:
        with Session(engine) as s:
            yield s
    finally:
        engine.dispose()
        if schema:
            with sa.create_engine(POSTGRES_URL).begin() as c:
                c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def session(request, tmp_path):
    if request.param == "postgresql":
        request.getfixturevalue("postgres_url")
    with database(request.param, tmp_path, (AgentRow.__table__, CallRow.__table__)) as s:
        yield s


def _call(tenant, agent, minute, seconds, status="CALL_STATUS_COMPLETED", provider="openai",
          model="m1", reason="", error=""):
    start = T0 + timedelta(minutes=minute)
    ended = None if status == "CALL_STATUS_ACTIVE" else start + timedelta(seconds=seconds)
    return CallRow(created_at=start, updated_at=start, tenant_id=tenant, agent_id=agent, status=status, provider=provider, model=model,
                   started_at=start, ended_at=ended, duration_ms=int(seconds * 1000),
                   reason=reason, error=error, prompt_tokens=10, completion_tokens=5, cost_usd=0.01)


def test_groups_percentiles_buckets_and_peaks(session):
    agent = AgentRow(tenant_id="t", name="a1", created_at=T0, updated_at=T0)
    session.add(agent)
    session.add_all([_call("t", agent.id, m, s) for m, s in ((0, 1), (1, 2), (2, 3), (3, 4))])
    session.add(_call("t", agent.id, 0, 30, status="CALL_STATUS_FAILED", provider="local",
                      reason="MODEL_ERROR", error="HTTP 500"))
    session.add(_call("t", agent.id, 61, 0, status="CALL_STATUS_ACTIVE"))
    session.add(_call("other", "x", 0, 1))
    session.commit()
    request = pb.AggregateCallsRequest(group_by=["provider", "status"])
    request.start_time.FromDatetime(T0)
    request.end_time.FromDatetime(T0 + timedelta(hours=2))
    groups = {(g.provider, g.status): g for g in aggregate_calls(session, "t", request).groups}
    ok = groups[("openai", "CALL_STATUS_COMPLETED")]
    assert (ok.calls, ok.completed, ok.ended, ok.tokens) == (4, 4, 4, 60)
    assert (ok.p50_ms, ok.p95_ms, ok.total_duration_ms) == (2000, 4000, 10000)
    failed = groups[("local", "CALL_STATUS_FAILED")]
    assert (failed.failed, failed.sample_error) == (1, "HTTP 500")
    assert groups[("openai", "CALL_STATUS_ACTIVE")].active == 1

    request = pb.AggregateCallsRequest(group_by=["bucket"], interval_seconds=3600,
                                       concurrency=True, agent_id="a1")
    request.start_time.FromDatetime(T0)
    request.end_time.FromDatetime(T0 + timedelta(hours=2))
    answer = aggregate_calls(session, "t", request)
    assert {g.bucket: g.calls for g in answer.groups} == {0: 5, 1: 1}
    # 12:00 two calls at once (1 s and 30 s); 13:01 the active one.
    assert list(answer.peaks) == [2, 1]
    total = aggregate_calls(session, "t", pb.AggregateCallsRequest())
    assert (total.groups[0].calls, total.groups[0].agents) == (6, 1)
