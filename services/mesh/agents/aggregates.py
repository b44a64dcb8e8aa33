"""AggregateCalls (internal): the tenant's calls counted, summed and ranked in SQL, for the
observability service's analytics and alerts. Only figures leave the service, never rows."""

from __future__ import annotations

import math
from datetime import UTC

import sqlalchemy as sa
from sqlmodel import Session, select

from agentmesh.agents.v1 import agents_pb2 as pb
from mesh.agents.models import AgentRow, CallRow
from mesh.runtime.aggregates import bucket_of, dialect_of, nearest_rank
from mesh.runtime.errors import invalid_field

ACTIVE, COMPLETED, FAILED = "CALL_STATUS_ACTIVE", "CALL_STATUS_COMPLETED", "CALL_STATUS_FAILED"
_KEYS = {"agent": CallRow.agent_id, "provider": CallRow.provider, "model": CallRow.model,
         "status": CallRow.status, "reason": CallRow.reason}
MAX_BUCKETS = 1000


def _range(request: pb.AggregateCallsRequest):
    start = request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time") else None
    end = request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None
    return start, end


def _buckets(request, start, end) -> int:
    if start is None or end is None or request.interval_seconds <= 0:
        raise invalid_field("interval_seconds", "buckets need start_time, end_time and an interval")
    count = math.ceil((end - start).total_seconds() / request.interval_seconds)
    if count > MAX_BUCKETS:
        raise invalid_field("interval_seconds", f"more than {MAX_BUCKETS} buckets")
    return max(count, 0)


def aggregate_calls(session: Session, tenant_id: str,
                    request: pb.AggregateCallsRequest) -> pb.AggregateCallsResponse:
    dialect = dialect_of(session)
    start, end = _range(request)
    scope = [CallRow.tenant_id == tenant_id]
    if request.agent_id:
        scope.append(CallRow.agent_id.in_(select(AgentRow.id).where(
            AgentRow.tenant_id == tenant_id,
            sa.or_(AgentRow.id == request.agent_id, AgentRow.name == request.agent_id))))
    if request.provider:
        scope.append(CallRow.provider == request.provider)
    if request.status:
        scope.append(CallRow.status == request.status)
    if request.by_execution:
        scope.append(CallRow.execution_id.in_(list(request.execution_ids)))
    in_range = list(scope)
    if start is not None:
        in_range.append(CallRow.started_at >= start)
    if end is not None:
        in_range.append(CallRow.started_at < end)

    keys = []
    for name in request.group_by:
        if name == "bucket":
            _buckets(request, start, end)
            keys.append(bucket_of(CallRow.started_at, start, request.interval_seconds, dialect)
                        .label("bucket"))
        elif name in _KEYS:
            keys.append(_KEYS[name].label(name))
        else:
            raise invalid_field("group_by", f"unknown key {name!r}; use {sorted(_KEYS)} or bucket")

    ended = sa.case((CallRow.status != ACTIVE, 1), else_=0)
    inner = select(
        *keys, CallRow.status.label("st"), CallRow.duration_ms.label("ms"), CallRow.agent_id.label("aid"),
        (CallRow.prompt_tokens + CallRow.completion_tokens).label("tokens"),
        CallRow.cost_usd.label("cost"), CallRow.started_at.label("at"), ended.label("ended"),
        sa.func.row_number().over(partition_by=[*keys, ended], order_by=CallRow.duration_ms)
        .label("pos"),
        sa.func.count().over(partition_by=[*keys, ended]).label("n"),
        sa.func.first_value(CallRow.error).over(
            partition_by=keys or None,
            order_by=[sa.case((CallRow.status == FAILED, 0), else_=1), CallRow.started_at.desc()])
        .label("sample"),
    ).where(*in_range).subquery()
    c = inner.c
    is_ended = c.ended == 1
    group_cols = [c[k.name] for k in keys]
    rows = session.execute(select(
        *group_cols, sa.func.count().label("calls"),
        sa.func.sum(sa.case((c.st == COMPLETED, 1), else_=0)),
        sa.func.sum(sa.case((c.st == FAILED, 1), else_=0)),
        sa.func.sum(sa.case((c.st == ACTIVE, 1), else_=0)),
        sa.func.sum(c.ended),
        sa.func.sum(sa.case((is_ended, c.ms), else_=0)),
        sa.func.sum(c.tokens), sa.func.sum(c.cost),
        *(nearest_rank(c.ms, c.pos, c.n, p, where=is_ended) for p in (0.5, 0.95, 0.99)),
        sa.func.max(c.at), sa.func.max(sa.case((c.st == FAILED, c.sample), else_=None)),
        sa.func.count(sa.distinct(c.aid)),
    ).group_by(*group_cols)).all()

    answer = pb.AggregateCallsResponse()
    names: dict[str, str] = {}
    if "agent" in request.group_by and rows:
        index = [k.name for k in keys].index("agent")
        ids = {row[index] for row in rows}
        names = dict(session.execute(select(AgentRow.id, AgentRow.name).where(
            AgentRow.tenant_id == tenant_id, AgentRow.id.in_(ids))).all())
    for row in rows:
        by_key = dict(zip((k.name for k in keys), row[:len(keys)], strict=True))
        (count, completed, failed, active, n_ended, total_ms, tokens, cost, p50, p95, p99,
         last, sample, distinct_agents) = row[len(keys):]
        group = answer.groups.add(
            agent_id=by_key.get("agent") or "", agent_name=names.get(by_key.get("agent") or "", ""),
            provider=by_key.get("provider") or "", model=by_key.get("model") or "",
            status=by_key.get("status") or "", reason=by_key.get("reason") or "",
            bucket=int(by_key.get("bucket") or 0), calls=count, completed=int(completed or 0),
            failed=int(failed or 0), active=int(active or 0), ended=int(n_ended or 0),
            total_duration_ms=float(total_ms or 0), tokens=int(tokens or 0),
            cost_usd=float(cost or 0), p50_ms=float(p50 or 0), p95_ms=float(p95 or 0),
            p99_ms=float(p99 or 0), sample_error=sample or "", agents=int(distinct_agents or 0))
        if last is not None:
            group.last_started_at.FromDatetime(last if last.tzinfo else last.replace(tzinfo=UTC))
    if request.concurrency:
        answer.peaks.extend(_peaks(session, dialect, scope, start, end, request.interval_seconds,
                                   _buckets(request, start, end)))
    return answer


def _peaks(session: Session, dialect: str, scope: list, start, end, interval: int,
           buckets: int) -> list[int]:
    """The most calls in progress at once in each bucket: a running sum over the calls' starts
    (+1, clamped to `start`) and ends (-1), its maximum per bucket, carried across buckets
    without events."""
    at_start = sa.literal(start, CallRow.started_at.type)
    live = [*scope, CallRow.started_at < end,
            sa.or_(CallRow.ended_at.is_(None), CallRow.ended_at >= start)]
    starts = select(sa.case((CallRow.started_at < at_start, at_start),
                            else_=CallRow.started_at).label("t"),
                    sa.literal(1).label("d")).where(*live)
    ends = select(CallRow.ended_at.label("t"), sa.literal(-1).label("d")).where(
        *live, CallRow.ended_at.is_not(None), CallRow.ended_at < end)
    events = sa.union_all(starts, ends).subquery()
    running = select(events.c.t, events.c.d, sa.func.sum(events.c.d).over(
        order_by=[events.c.t, events.c.d]).label("now")).subquery()
    bucket = bucket_of(running.c.t, start, interval, dialect).label("b")
    per_bucket = {b: (int(top), int(moved)) for b, top, moved in session.execute(
        select(bucket, sa.func.max(running.c.now), sa.func.sum(running.c.d)).group_by(bucket))}
    peaks, carry = [], 0
    for b in range(buckets):
        if b in per_bucket:
            top, moved = per_bucket[b]
            peaks.append(max(carry, top))
            carry += moved
        else:
            peaks.append(carry)
    return peaks
