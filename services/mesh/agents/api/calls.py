"""CallService: the calls of the tenant's agents, their transcripts and figures, and the
internal AggregateCalls that analytics and the alert rules read (mesh/agents/aggregates.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from mesh.agents.aggregates import aggregate_calls
from mesh.agents.models import CallRow
from mesh.agents.store import call_message, calls
from mesh.runtime.context import require_caller
from mesh.runtime.convert import to_message
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.service import Runtime


class CallService(pb_grpc.CallServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database

    async def ListCalls(self, request: pb.ListCallsRequest, context) -> pb.ListCallsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        status = pb.CallStatus.Name(request.status) if request.status else None
        filters = {"agent_id": request.agent_id, "status": status}
        where = []
        if request.HasField("started_after"):
            where.append(CallRow.started_at >= request.started_after.ToDatetime(tzinfo=UTC))
        if request.HasField("started_before"):
            where.append(CallRow.started_at < request.started_before.ToDatetime(tzinfo=UTC))
        if not where:
            result = await calls.page(self.db, caller.tenant_id, page, filters=filters)
            return pb.ListCallsResponse(**result.fields())
        rows: Page = await self.db.read(lambda s: calls.list(
            s, caller.tenant_id, page, filters=filters, where=tuple(where)))
        return pb.ListCallsResponse(**rows.fields(call_message))

    async def ListActiveCalls(self, request, context) -> pb.ListCallsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        result = await calls.page(self.db, caller.tenant_id, page, filters={
            "agent_id": request.agent_id, "status": "CALL_STATUS_ACTIVE"})
        return pb.ListCallsResponse(**result.fields())

    async def GetCall(self, request: pb.GetCallRequest, context) -> pb.Call:
        caller = require_caller(context)
        return await calls.fetch(self.db, caller.tenant_id, request.call_id)

    async def GetCallTranscript(self, request, context) -> pb.CallTranscript:
        caller = require_caller(context)
        row = await self.db.read(lambda s: calls.get(s, caller.tenant_id, request.call_id))
        transcript = pb.CallTranscript(call_id=row.id)
        for entry in row.transcript:
            item = transcript.entries.add(role=entry.get("role", ""),
                                          content=entry.get("content", ""))
            if entry.get("timestamp"):
                item.timestamp.FromDatetime(datetime.fromisoformat(entry["timestamp"]))
            if entry.get("metadata"):
                item.metadata.update(entry["metadata"])
        return transcript

    async def GetCallMetrics(self, request, context) -> pb.CallMetrics:
        caller = require_caller(context)
        row = await self.db.read(lambda s: calls.get(s, caller.tenant_id, request.call_id))
        return to_message(row, pb.CallMetrics, call_id=row.id, turns=len(row.transcript))

    async def AggregateCalls(self, request: pb.AggregateCallsRequest,
                             context) -> pb.AggregateCallsResponse:
        caller = require_caller(context)
        return await self.db.read(lambda s: aggregate_calls(s, caller.tenant_id, request))
