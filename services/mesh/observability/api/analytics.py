"""AnalyticsService: figures over the tenant's calls (agents service) and workflow executions
(workflows service), asked of them (mesh/observability/analytics.py) and combined and shaped
here."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from google.protobuf import duration_pb2

from agentmesh.observability.v1 import observability_pb2 as pb
from agentmesh.observability.v1 import observability_pb2_grpc as pb_grpc
from mesh.observability.analytics import ACTIVE, EXECUTION_FAILED, Sources, window
from mesh.runtime.context import require_caller
from mesh.runtime.service import Runtime
from mesh.runtime.tables import utcnow


def _limit(value: int) -> int:
    return 20 if value <= 0 else min(value, 100)


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


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
