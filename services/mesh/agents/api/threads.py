"""ThreadService: conversations kept on the server (mesh/agents/threads.py has the rules and the
context window)."""

from __future__ import annotations

from google.protobuf import json_format

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from agentmesh.common.v1 import common_pb2
from mesh.agents import threads
from mesh.agents.models import ThreadRow
from mesh.agents.store import agents
from mesh.runtime import limits
from mesh.runtime.context import require_caller
from mesh.runtime.errors import invalid_field
from mesh.runtime.paging import PageRequest
from mesh.runtime.service import Runtime


class ThreadService(pb_grpc.ThreadServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database

    async def CreateThread(self, request: pb.CreateThreadRequest, context) -> pb.Thread:
        caller = require_caller(context)
        limits.check(request.thread)
        if not request.thread.title.strip():
            raise invalid_field("title", "is required")
        agent_id = ""
        if request.thread.agent_id:
            agent_id = (await agents.fetch(self.db, caller.tenant_id, request.thread.agent_id)).id
        row = ThreadRow(tenant_id=caller.tenant_id, agent_id=agent_id, title=request.thread.title,
                        thread_metadata=json_format.MessageToDict(request.thread.metadata))
        created = await self.db.write(lambda s: threads.threads.add(s, row))
        return threads.thread_message(created)

    async def ListThreads(self, request: pb.ListThreadsRequest, context) -> pb.ListThreadsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        result = await threads.threads.page(self.db, caller.tenant_id, page,
                                            filters={"agent_id": request.agent_id})
        return pb.ListThreadsResponse(**result.fields())

    async def GetThread(self, request: pb.GetThreadRequest, context) -> pb.Thread:
        caller = require_caller(context)
        return await threads.threads.fetch(self.db, caller.tenant_id, request.thread_id)

    async def ListThreadMessages(self, request: pb.ListThreadMessagesRequest,
                                 context) -> pb.ListThreadMessagesResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        return await self.db.read(lambda s: threads.messages_page(
            s, caller.tenant_id, request.thread_id, page.page, page.page_size))

    async def DeleteThread(self, request: pb.DeleteThreadRequest,
                           context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)
        await self.db.write(lambda s: threads.delete(s, caller.tenant_id, request.thread_id))
        return common_pb2.DeleteResponse(success=True,
                                         message=f"thread {request.thread_id!r} deleted")
