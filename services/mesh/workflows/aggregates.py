"""Executions counted in SQL: AggregateExecutions (internal: the tenant's executions counted and
ranked for the observability service's analytics and alerts; only figures and, when asked, ids
leave), a workflow's stats, the tenant's counts for the platform's statistics, and the estimate
of how long a run takes."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, func, select

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.runtime.aggregates import bucket_of, dialect_of, epoch, nearest_rank
from mesh.runtime.errors import invalid_field
from mesh.runtime.tables import aware
from mesh.workflows.models import LIVE, ExecutionRow, WorkflowRow
from mesh.workflows.store import workflows

E = "EXECUTION_STATUS_"
_KEYS = {"workflow": ExecutionRow.workflow_id, "status": ExecutionRow.status}
MAX_BUCKETS = 1000
MAX_IDS = 10_000


def _names_agent(node: Any, agent: str) -> bool:
    """Whether a workflow definition (proto JSON) has an agent step naming `agent`."""
    if isinstance(node, dict):
        step = node.get("agent")
        if isinstance(step, dict) and step.get("agent_id") == agent:
            return True
        return any(_names_agent(v, agent) for v in node.values())
    if isinstance(node, list):
        return any(_names_agent(v, agent) for v in node)
    return False


def aggregate_executions(session: Session, tenant_id: str,
                         request: pb.AggregateExecutionsRequest) -> pb.AggregateExecutionsResponse:
    dialect = dialect_of(session)
    start = request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time") else None
    end = request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None
    where = [ExecutionRow.tenant_id == tenant_id]
    if start is not None:
        where.append(ExecutionRow.created_at >= start)
    if end is not None:
        where.append(ExecutionRow.created_at < end)
    if request.workflow_id:
        where.append(ExecutionRow.workflow_id.in_(select(WorkflowRow.id).where(
            WorkflowRow.tenant_id == tenant_id,
            sa.or_(WorkflowRow.id == request.workflow_id,
                   WorkflowRow.slug == request.workflow_id))))
    if request.agent_id:  # a filter over the tenant's definitions, not an aggregate
        using = [row_id for row_id, definition in session.execute(
            select(WorkflowRow.id, WorkflowRow.definition).where(
                WorkflowRow.tenant_id == tenant_id)) if _names_agent(definition, request.agent_id)]
        where.append(ExecutionRow.workflow_id.in_(using))

    keys = []
    for name in request.group_by:
        if name == "bucket":
            if start is None or end is None or request.interval_seconds <= 0:
                raise invalid_field("interval_seconds", "buckets need a range and an interval")
            if math.ceil((end - start).total_seconds() / request.interval_seconds) > MAX_BUCKETS:
                raise invalid_field("interval_seconds", f"more than {MAX_BUCKETS} buckets")
            keys.append(bucket_of(ExecutionRow.created_at, start, request.interval_seconds,
                                  dialect).label("bucket"))
        elif name in _KEYS:
            keys.append(_KEYS[name].label(name))
        else:
            raise invalid_field("group_by", f"unknown key {name!r}; use workflow, status or bucket")

    has_ended = sa.and_(ExecutionRow.ended_at.is_not(None), ExecutionRow.started_at.is_not(None))
    ended = sa.case((has_ended, 1), else_=0)
    duration = sa.case((has_ended, (epoch(ExecutionRow.ended_at, dialect)
                                    - epoch(ExecutionRow.started_at, dialect)) * 1000.0),
                       else_=None)
    inner = select(
        *keys, ExecutionRow.status.label("st"), ExecutionRow.created_at.label("at"),
        ended.label("ended"), duration.label("ms"),
        sa.func.row_number().over(partition_by=[*keys, ended], order_by=duration).label("pos"),
        sa.func.count().over(partition_by=[*keys, ended]).label("n"),
    ).where(*where).subquery()
    c = inner.c
    group_cols = [c[k.name] for k in keys]
    count = sa.func.count().label("executions")
    query = select(
        *group_cols, count,
        sa.func.sum(sa.case((c.st == E + "COMPLETED", 1), else_=0)),
        sa.func.sum(sa.case((c.st == E + "FAILED", 1), else_=0)),
        sa.func.sum(sa.case((c.st.in_(LIVE), 1), else_=0)),
        sa.func.sum(c.ended), sa.func.sum(sa.case((c.ended == 1, c.ms), else_=0)),
        nearest_rank(c.ms, c.pos, c.n, 0.95, where=c.ended == 1), sa.func.max(c.at),
    ).group_by(*group_cols).order_by(count.desc())
    if request.limit > 0:
        query = query.limit(request.limit)
    rows = session.execute(query).all()

    names: dict[str, str] = {}
    if "workflow" in request.group_by and rows:
        index = [k.name for k in keys].index("workflow")
        names = dict(session.execute(select(WorkflowRow.id, WorkflowRow.name).where(
            WorkflowRow.tenant_id == tenant_id,
            WorkflowRow.id.in_({row[index] for row in rows}))).all())
    answer = pb.AggregateExecutionsResponse()
    for row in rows:
        by_key = dict(zip((k.name for k in keys), row[:len(keys)], strict=True))
        executions, completed, failed, running, n_ended, total_ms, p95, last = row[len(keys):]
        group = answer.groups.add(
            workflow_id=by_key.get("workflow") or "",
            workflow_name=names.get(by_key.get("workflow") or "", ""),
            status=by_key.get("status") or "", bucket=int(by_key.get("bucket") or 0),
            executions=executions, completed=int(completed or 0), failed=int(failed or 0),
            running=int(running or 0), ended=int(n_ended or 0),
            total_duration_ms=float(total_ms or 0), p95_ms=float(p95 or 0))
        if last is not None:
            group.last_created_at.FromDatetime(last if last.tzinfo else last.replace(tzinfo=UTC))
    if request.with_execution_ids:
        answer.execution_ids.extend(session.execute(
            select(ExecutionRow.id).where(*where).limit(MAX_IDS)).scalars())
    return answer


def workflow_stats(session: Session, tenant_id: str, workflow_key: str) -> pb.WorkflowStats:
    row = workflows.get(session, tenant_id, workflow_key)
    scoped = (ExecutionRow.tenant_id == tenant_id, ExecutionRow.workflow_id == row.id)
    by_status = dict(session.exec(select(ExecutionRow.status, func.count())
                                  .where(*scoped).group_by(ExecutionRow.status)).all())
    ended = session.exec(select(ExecutionRow.started_at, ExecutionRow.ended_at).where(
        *scoped, ExecutionRow.ended_at.is_not(None),
        ExecutionRow.started_at.is_not(None))).all()
    last = session.exec(select(func.max(ExecutionRow.created_at)).where(*scoped)).one()
    durations = [(aware(e) - aware(s)).total_seconds() * 1000 for s, e in ended]
    out = pb.WorkflowStats(
        workflow_id=row.id, total_executions=sum(by_status.values()),
        successful_executions=by_status.get(E + "COMPLETED", 0),
        failed_executions=by_status.get(E + "FAILED", 0),
        cancelled_executions=by_status.get(E + "CANCELLED", 0),
        running_executions=sum(by_status.get(s, 0) for s in LIVE),
        average_duration_ms=sum(durations) / len(durations) if durations else 0.0)
    if last:
        out.last_executed_at.FromDatetime(aware(last))
    return out


def count_executions(session: Session, tenant_id: str,
                     since: datetime | None) -> pb.ExecutionCounts:
    """The tenant's executions since a time (all without one), and those not ended."""
    scoped = select(func.count()).select_from(ExecutionRow).where(
        ExecutionRow.tenant_id == tenant_id)
    recent = scoped.where(ExecutionRow.created_at >= since) if since else scoped
    return pb.ExecutionCounts(since=session.exec(recent).one(),
                              running=session.exec(scoped.where(
                                  ExecutionRow.status.in_(LIVE))).one())


def typical_duration(session: Session, workflow_id: str) -> timedelta | None:
    """The mean duration of the workflow's last 20 completed executions (None without one)."""
    recent = session.exec(select(ExecutionRow.started_at, ExecutionRow.ended_at).where(
        ExecutionRow.workflow_id == workflow_id,
        ExecutionRow.status == E + "COMPLETED").order_by(
        ExecutionRow.ended_at.desc()).limit(20)).all()
    durations = [(aware(e) - aware(s)) for s, e in recent if s and e]
    return sum(durations, timedelta()) / len(durations) if durations else None
