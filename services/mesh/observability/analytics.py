"""AnalyticsService: figures over the tenant's calls (agents service) and workflow executions
(workflows service). Both services aggregate their own rows in SQL (the internal
`AggregateCalls` and `AggregateExecutions`); this service only asks, combines and shapes the
answers — it keeps no copy of their data."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2

from agentmesh.agents.v1 import agents_pb2 as apb
from agentmesh.agents.v1 import agents_pb2_grpc as apb_grpc
from agentmesh.observability.v1 import observability_pb2 as pb
from agentmesh.observability.v1 import observability_pb2_grpc as pb_grpc
from agentmesh.workflows.v1 import workflows_pb2 as wpb
from agentmesh.workflows.v1 import workflows_pb2_grpc as wpb_grpc
from mesh.runtime.context import require_caller
from mesh.runtime.errors import invalid_field
from mesh.runtime.service import Runtime
from mesh.runtime.tables import utcnow

MAX_BUCKETS = 1000
# Default bucket widths, the smallest giving at most 100 buckets over the range.
_WIDTHS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
ACTIVE = "CALL_STATUS_ACTIVE"
EXECUTION_FAILED = "EXECUTION_STATUS_FAILED"


@dataclass
class Window:
    start: datetime
    end: datetime
    interval: int = 0  # seconds; 0 = no buckets

    @property
    def buckets(self) -> int:
        return max(0, math.ceil((self.end - self.start).total_seconds() / self.interval)) \
            if self.interval else 0

    def bucket_start(self, index: int) -> datetime:
        return self.start + timedelta(seconds=index * self.interval)

    def stamp(self, message, interval_field: str | None = "interval") -> None:
        message.start_time.FromDatetime(self.start)
        message.end_time.FromDatetime(self.end)
        if interval_field and self.interval:
            getattr(message, interval_field).CopyFrom(duration_pb2.Duration(seconds=self.interval))


def window(request, *, default: timedelta = timedelta(hours=24), buckets: bool = True,
           optional_interval: bool = False) -> Window:
    """The range of a request: `[start_time, end_time)`, by default the `default` span up to now;
    the bucket width from `interval` or chosen from the range."""
    end = request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else utcnow()
    if request.HasField("start_time"):
        start = request.start_time.ToDatetime(tzinfo=UTC)
    else:
        try:
            start = end - default
        except OverflowError:  # an end in year 1
            start = datetime.min.replace(tzinfo=UTC)
    if end < start:
        raise invalid_field("end_time", "must not precede start_time")
    result = Window(start.replace(microsecond=0), end)
    if not buckets:
        return result
    given = request.interval.ToTimedelta().total_seconds() if request.HasField("interval") else 0
    if given < 0:
        raise invalid_field("interval", "must be positive")
    if not given and optional_interval:
        return result
    span = (end - start).total_seconds()
    if given:
        result.interval = max(1, math.ceil(given))
        if result.buckets > MAX_BUCKETS:
            raise invalid_field("interval", f"the range would have more than {MAX_BUCKETS} "
                                f"buckets of {result.interval} s")
    else:
        result.interval = next((w for w in _WIDTHS if span / w <= 100),
                               max(1, math.ceil(span / 100)))
    return result


def _limit(value: int) -> int:
    return 20 if value <= 0 else min(value, 100)


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


class Sources:
    """The two services analytics reads, as the caller (or as a tenant, for alerts)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def calls(self, metadata=None, *, span: Window | None = None, **fields
                    ) -> apb.AggregateCallsResponse:
        request = apb.AggregateCallsRequest(**fields)
        if span is not None:
            request.start_time.FromDatetime(span.start)
            request.end_time.FromDatetime(span.end)
            request.interval_seconds = span.interval
        stub = self.runtime.peers.stub(apb_grpc.CallServiceStub)
        return await stub.AggregateCalls(request, metadata=metadata)

    async def executions(self, metadata=None, *, span: Window | None = None, **fields
                         ) -> wpb.AggregateExecutionsResponse:
        request = wpb.AggregateExecutionsRequest(**fields)
        if span is not None:
            request.start_time.FromDatetime(span.start)
            request.end_time.FromDatetime(span.end)
            request.interval_seconds = span.interval
        stub = self.runtime.peers.stub(wpb_grpc.WorkflowServiceStub)
        return await stub.AggregateExecutions(request, metadata=metadata)

    async def call_filter(self, agent_id: str, workflow_id: str, metadata=None) -> dict:
        """AggregateCalls filters for an agent and for the calls a workflow's executions made."""
        fields: dict = {"agent_id": agent_id}
        if workflow_id:
            runs = await self.executions(metadata, workflow_id=workflow_id, with_execution_ids=True)
            fields.update(by_execution=True, execution_ids=list(runs.execution_ids))
        return fields


def _one(groups) -> object | None:
    return groups[0] if groups else None


class AnalyticsService(pb_grpc.AnalyticsServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.sources = Sources(runtime)

    async def GetAnalyticsSummary(self, request, context) -> pb.AnalyticsSummary:
        require_caller(context)
        span = window(request, buckets=False)
        src = self.sources
        filters = await src.call_filter(request.agent_id, request.workflow_id)
        calls, active, runs = await asyncio.gather(
            src.calls(span=span, **filters), src.calls(status=ACTIVE, **filters),
            src.executions(span=span, workflow_id=request.workflow_id))
        out = pb.AnalyticsSummary()
        span.stamp(out, None)
        if (c := _one(calls.groups)) is not None:
            out.total_calls, out.completed_calls, out.failed_calls = c.calls, c.completed, c.failed
            out.success_rate = _rate(c.completed, c.ended)
            out.average_duration_ms = c.total_duration_ms / c.ended if c.ended else 0.0
            out.total_tokens, out.total_cost_usd, out.active_agents = c.tokens, c.cost_usd, c.agents
        if (a := _one(active.groups)) is not None:
            out.active_calls = a.calls
        if (r := _one(runs.groups)) is not None:
            out.workflow_executions, out.failed_workflow_executions = r.executions, r.failed
        return out

    async def GetCallVolume(self, request, context) -> pb.CallVolume:
        require_caller(context)
        span = window(request)
        filters = await self.sources.call_filter(request.agent_id, request.workflow_id)
        answer = await self.sources.calls(span=span, group_by=["bucket"], **filters)
        by_bucket = {g.bucket: g for g in answer.groups}
        out = pb.CallVolume(total=sum(g.calls for g in answer.groups))
        span.stamp(out)
        for index in range(span.buckets):
            g = by_bucket.get(index)
            point = out.points.add(total=g.calls if g else 0, completed=g.completed if g else 0,
                                   failed=g.failed if g else 0)
            point.timestamp.FromDatetime(span.bucket_start(index))
        return out

    async def GetWorkflowAnalytics(self, request, context) -> pb.WorkflowAnalytics:
        require_caller(context)
        span = window(request, buckets=False)
        answer = await self.sources.executions(span=span, group_by=["workflow"],
                                               workflow_id=request.workflow_id,
                                               agent_id=request.agent_id)
        out = pb.WorkflowAnalytics(total_executions=sum(g.executions for g in answer.groups))
        span.stamp(out, None)
        for g in list(answer.groups)[:_limit(request.limit)]:
            ended = g.completed + g.failed
            entry = out.workflows.add(
                workflow_id=g.workflow_id, workflow_name=g.workflow_name, executions=g.executions,
                completed=g.completed, failed=g.failed, running=g.running,
                success_rate=_rate(g.completed, ended),
                average_duration_ms=g.total_duration_ms / g.ended if g.ended else 0.0,
                p95_duration_ms=g.p95_ms)
            entry.last_execution_at.CopyFrom(g.last_created_at)
        return out

    async def GetProviderLatency(self, request, context) -> pb.ProviderLatency:
        require_caller(context)
        span = window(request, optional_interval=True)
        src = self.sources
        filters = await src.call_filter(request.agent_id, request.workflow_id)
        filters["provider"] = request.provider
        asks = [src.calls(span=span, group_by=["provider"], **filters),
                src.calls(span=span, group_by=["provider", "model"], **filters)]
        if span.interval:
            asks.append(src.calls(span=span, group_by=["provider", "bucket"], **filters))
        providers, models, *series = await asyncio.gather(*asks)
        out = pb.ProviderLatency()
        span.stamp(out)
        for p in sorted(providers.groups, key=lambda g: g.provider):
            entry = out.providers.add(
                provider=p.provider, requests=p.calls, errors=p.failed, p50_ms=p.p50_ms,
                p95_ms=p.p95_ms, p99_ms=p.p99_ms,
                average_ms=p.total_duration_ms / p.ended if p.ended else 0.0)
            for m in sorted((m for m in models.groups if m.provider == p.provider),
                            key=lambda g: g.model):
                entry.models.add(model=m.model, requests=m.calls, errors=m.failed,
                                 p50_ms=m.p50_ms, p95_ms=m.p95_ms, p99_ms=m.p99_ms,
                                 average_ms=m.total_duration_ms / m.ended if m.ended else 0.0)
            if series:
                mine = {g.bucket: g for g in series[0].groups if g.provider == p.provider}
                for index in range(span.buckets):
                    g = mine.get(index)
                    point = entry.points.add(p50_ms=g.p50_ms if g else 0.0,
                                             p95_ms=g.p95_ms if g else 0.0,
                                             requests=g.calls if g else 0)
                    point.timestamp.FromDatetime(span.bucket_start(index))
        return out

    async def GetErrorStats(self, request, context) -> pb.ErrorStats:
        require_caller(context)
        span = window(request)
        src = self.sources
        filters = await src.call_filter(request.agent_id, request.workflow_id)
        filters["provider"] = request.provider
        # Executions fail on their own only when the question is not about an agent or provider.
        with_runs = not (request.agent_id or request.provider)
        asks = [src.calls(span=span, group_by=["reason"], status="CALL_STATUS_FAILED", **filters),
                src.calls(span=span, group_by=["bucket"], **filters),
                src.calls(span=span, **filters)]
        if with_runs:
            asks += [src.executions(span=span, group_by=["status"], workflow_id=request.workflow_id),
                     src.executions(span=span, group_by=["bucket", "status"],
                                    workflow_id=request.workflow_id)]
        by_reason, call_buckets, call_total, *runs = await asyncio.gather(*asks)
        out = pb.ErrorStats()
        span.stamp(out)
        groups = [(g.reason or "UNKNOWN", g.calls, g.last_started_at, g.sample_error)
                  for g in by_reason.groups]
        failed = sum(g[1] for g in groups)
        ended = sum(g.ended for g in call_total.groups)
        per_bucket = {g.bucket: g.failed for g in call_buckets.groups}
        if runs:
            by_status, run_buckets = runs
            for g in by_status.groups:
                ended += g.ended
                if g.status == EXECUTION_FAILED and g.executions:
                    failed += g.executions
                    groups.append(("WORKFLOW_EXECUTION_FAILED", g.executions, g.last_created_at,
                                   ""))
            for g in run_buckets.groups:
                if g.status == EXECUTION_FAILED:
                    per_bucket[g.bucket] = per_bucket.get(g.bucket, 0) + g.executions
        out.total_errors, out.error_rate = failed, _rate(failed, ended)
        groups.sort(key=lambda g: (-g[1], g[0]))
        for error_type, count, last, sample in groups[:_limit(request.limit)]:
            item = out.by_type.add(error_type=error_type, count=count, sample_message=sample)
            item.last_seen_at.CopyFrom(last)
        for index in range(span.buckets):
            point = out.points.add(count=per_bucket.get(index, 0))
            point.timestamp.FromDatetime(span.bucket_start(index))
        return out

    async def GetActiveCallStats(self, request, context) -> pb.ActiveCallStats:
        require_caller(context)
        span = window(request, default=timedelta(hours=1))
        src = self.sources
        filters = await src.call_filter(request.agent_id, request.workflow_id)
        by_agent, by_provider, concurrency = await asyncio.gather(
            src.calls(status=ACTIVE, group_by=["agent"], **filters),
            src.calls(status=ACTIVE, group_by=["provider"], **filters),
            src.calls(span=span, concurrency=True, **filters))
        out = pb.ActiveCallStats(total=sum(g.calls for g in by_agent.groups))
        out.timestamp.FromDatetime(utcnow())
        if span.interval:
            out.interval.CopyFrom(duration_pb2.Duration(seconds=span.interval))
        for g in sorted(by_agent.groups, key=lambda g: (-g.calls, g.agent_name)):
            out.by_agent.add(key=g.agent_id, name=g.agent_name, count=g.calls)
        for g in sorted(by_provider.groups, key=lambda g: (-g.calls, g.provider)):
            out.by_provider.add(key=g.provider, count=g.calls)
        for index, peak in enumerate(concurrency.peaks):
            point = out.points.add(peak=peak)
            point.timestamp.FromDatetime(span.bucket_start(index))
        return out
