"""CallService: the calls of the tenant's agents, their transcripts and figures, and the
internal AggregateCalls that analytics and the alert rules read (mesh/agents/aggregates.py)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from mesh.agents.aggregates import aggregate_calls
from mesh.agents.interact import Conflict, response_of
from mesh.agents.runs import Runs
from mesh.agents.models import CallRow
from mesh.agents.store import call_message, calls
from mesh.runtime.context import require_caller
from mesh.runtime.convert import to_message
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.service import Runtime


class CallService(pb_grpc.CallServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.runs: Runs = runtime.state

    async def ListCalls(self, request: pb.ListCallsRequest, context) -> pb.ListCallsResponse:
        caller = require_caller(context)
        await self.runs.written(caller.tenant_id)
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
        await self.runs.written(caller.tenant_id)
        page = PageRequest.of(request)
        result = await calls.page(self.db, caller.tenant_id, page, filters={
            "agent_id": request.agent_id, "status": "CALL_STATUS_ACTIVE"})
        return pb.ListCallsResponse(**result.fields())

    async def GetCall(self, request: pb.GetCallRequest, context) -> pb.Call:
        caller = require_caller(context)
        await self.runs.written(caller.tenant_id, request.call_id)
        return await calls.fetch(self.db, caller.tenant_id, request.call_id)

    async def GetCallTranscript(self, request, context) -> pb.CallTranscript:
        caller = require_caller(context)
        await self.runs.written(caller.tenant_id, request.call_id)
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
        await self.runs.written(caller.tenant_id, request.call_id)
        row = await self.db.read(lambda s: calls.get(s, caller.tenant_id, request.call_id))
        return to_message(row, pb.CallMetrics, call_id=row.id, turns=len(row.transcript))

    async def AggregateCalls(self, request: pb.AggregateCallsRequest,
                             context) -> pb.AggregateCallsResponse:
        caller = require_caller(context)
        await self.runs.written(caller.tenant_id)
        return await self.db.read(lambda s: aggregate_calls(s, caller.tenant_id, request))

    async def _ended(self, tenant_id: str, call_id: str) -> pb.InteractWithAgentResponse | None:
        """The answer recorded on the call; None while it is ACTIVE."""
        await self.runs.written(tenant_id, call_id)
        row = await self.db.read(lambda s: calls.get(s, tenant_id, call_id))
        if row.status == "CALL_STATUS_ACTIVE":
            return None
        if row.result:
            return response_of(row.result)
        return pb.InteractWithAgentResponse(call_id=row.id, status=pb.CallStatus.Value(row.status),
                                            reason=row.reason, error=row.error)

    async def WatchCall(self, request: pb.WatchCallRequest, context):
        caller = require_caller(context)
        ended = await self._ended(caller.tenant_id, request.call_id)
        run = self.runs.get(request.call_id)
        if ended is None and run is not None and run.tenant_id == caller.tenant_id:
            async for event in run.follow():
                yield event
            return
        while ended is None:   # running on another replica: its end, when it comes
            await asyncio.sleep(1.0)
            ended = await self._ended(caller.tenant_id, request.call_id)
        yield pb.InteractionEvent(type="ended", call_id=request.call_id, seq=1, result=ended)

    async def GetCallResult(self, request: pb.GetCallResultRequest,
                            context) -> pb.InteractWithAgentResponse:
        caller = require_caller(context)
        ended = await self._ended(caller.tenant_id, request.call_id)
        if ended is None and request.wait_seconds > 0:
            run = self.runs.get(request.call_id)
            deadline = asyncio.get_running_loop().time() + min(request.wait_seconds, 60)
            if run is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.wait(), min(request.wait_seconds, 60))
            ended = await self._ended(caller.tenant_id, request.call_id)
            while ended is None and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.5)
                ended = await self._ended(caller.tenant_id, request.call_id)
        if ended is None:
            raise Conflict(f"call {request.call_id!r} is still ACTIVE; ask again with "
                           "wait_seconds, or watch it", reason="CALL_IN_PROGRESS",
                           details={"call": request.call_id})
        return ended

    async def CancelCall(self, request: pb.CancelCallRequest, context) -> pb.Call:
        caller = require_caller(context)
        ended = await self._ended(caller.tenant_id, request.call_id)
        if ended is not None:
            raise Conflict(f"call {request.call_id!r} has already ended "
                           f"({pb.CallStatus.Name(ended.status)})", reason="CALL_ENDED",
                           details={"call": request.call_id})
        run = self.runs.get(request.call_id)
        if run is not None and run.tenant_id == caller.tenant_id:
            await self.runs.cancel(run)
        else:
            await self.db.write(lambda s: cancel_elsewhere(s, caller.tenant_id, request.call_id))
        return await calls.fetch(self.db, caller.tenant_id, request.call_id)


def cancel_elsewhere(session, tenant_id: str, call_id: str) -> None:
    """A call another replica runs: recorded CANCELLED here (that replica's end of it does not
    overwrite a final status)."""
    row = calls.get(session, tenant_id, call_id, lock=True)
    if row.status == "CALL_STATUS_ACTIVE":
        row.status, row.reason, row.error = "CALL_STATUS_CANCELLED", "CANCELLED", \
            "the call was cancelled"
        row.ended_at, row.lease_until = datetime.now(UTC), None
        calls.save(session, row)
