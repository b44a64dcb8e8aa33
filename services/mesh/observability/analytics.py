"""What analytics reads and over which range: the request's time window and its buckets, and
the two services that aggregate their own rows in SQL (the agents' internal `AggregateCalls`,
the workflows' `AggregateExecutions`), asked as the caller (or as a tenant, for the alert rules).
Analytics keeps no copy of their data (mesh/observability/api/analytics.py shapes the
answers)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2

from agentmesh.agents.v1 import agents_pb2 as apb
from agentmesh.agents.v1 import agents_pb2_grpc as apb_grpc
from agentmesh.workflows.v1 import workflows_pb2 as wpb
from agentmesh.workflows.v1 import workflows_pb2_grpc as wpb_grpc
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


class Sources:
    """The two services analytics reads, as the caller (or as a tenant, for alerts)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @staticmethod
    def _over(request, span: Window | None):
        if span is not None:
            request.start_time.FromDatetime(span.start)
            request.end_time.FromDatetime(span.end)
            request.interval_seconds = span.interval
        return request

    async def calls(self, metadata=None, *, span: Window | None = None, **fields
                    ) -> apb.AggregateCallsResponse:
        stub = self.runtime.peers.stub(apb_grpc.CallServiceStub)
        return await stub.AggregateCalls(self._over(apb.AggregateCallsRequest(**fields), span),
                                         metadata=metadata)

    async def executions(self, metadata=None, *, span: Window | None = None, **fields
                         ) -> wpb.AggregateExecutionsResponse:
        stub = self.runtime.peers.stub(wpb_grpc.WorkflowServiceStub)
        return await stub.AggregateExecutions(
            self._over(wpb.AggregateExecutionsRequest(**fields), span), metadata=metadata)

    async def call_filter(self, agent_id: str, workflow_id: str, metadata=None) -> dict:
        """AggregateCalls filters for an agent and for the calls a workflow's executions made."""
        fields: dict = {"agent_id": agent_id}
        if workflow_id:
            runs = await self.executions(metadata, workflow_id=workflow_id, with_execution_ids=True)
            fields.update(by_execution=True, execution_ids=list(runs.execution_ids))
        return fields
