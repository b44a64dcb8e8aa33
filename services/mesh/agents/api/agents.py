"""AgentService: agents (CRUD, lifecycle, figures) and interacting with them. The rules are in
mesh/agents/lifecycle.py and interact.py."""

from __future__ import annotations

import asyncio
import logging

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from agentmesh.common.v1 import common_pb2
from mesh.agents import lifecycle
from mesh.agents.interact import Interactions
from mesh.agents.models import AgentRow
from mesh.agents.runs import Runs
from mesh.agents.store import (AGENT_VERSIONS, agent_message, agent_stats, agents, at_version,
                               calls, diff_message, version_message)
from mesh.runtime import limits
from mesh.runtime.context import accepted
from mesh.runtime.context import require_caller
from mesh.runtime.convert import changes, values, writable
from mesh.runtime.paging import PageRequest
from mesh.runtime.service import Runtime

log = logging.getLogger("mesh.agents")
_WRITABLE = writable(pb.Agent)


class AgentService(pb_grpc.AgentServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.runs: Runs = runtime.state
        self.interactions = Interactions(runtime.database, runtime.settings, runtime.peers,
                                         runtime.state)

    async def ListAgents(self, request: pb.ListAgentsRequest, context) -> pb.ListAgentsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        status = pb.AgentStatus.Name(request.status) if request.status else None
        result = await agents.page(self.db, caller.tenant_id, page, search=request.search,
                                   filters={"status": status, "agent_type": request.agent_type})
        return pb.ListAgentsResponse(**result.fields())

    async def CreateAgent(self, request: pb.CreateAgentRequest, context) -> pb.Agent:
        caller = require_caller(context)
        limits.check(request.agent)
        fields = values(request.agent, _WRITABLE)
        lifecycle.check_name(fields["name"])
        row = AgentRow(tenant_id=caller.tenant_id, created_by=caller.user_id, **fields)
        created = await self.db.write(lambda s: lifecycle.create(s, row))
        log.info("agent %r created (%s)", created.name, created.id)
        return agent_message(created)

    async def GetAgent(self, request: pb.GetAgentRequest, context) -> pb.Agent:
        caller = require_caller(context)
        if not request.version and not request.label:
            return await agents.fetch(self.db, caller.tenant_id, request.agent_id)

        def read(session) -> pb.Agent:
            row = agents.get(session, caller.tenant_id, request.agent_id)
            return at_version(row, AGENT_VERSIONS.resolve(session, row, request.version,
                                                          request.label))

        return await self.db.read(read)

    async def UpdateAgent(self, request: pb.UpdateAgentRequest, context) -> pb.Agent:
        caller = require_caller(context)
        limits.check(request.agent)
        update = changes(request.agent, _WRITABLE, list(request.update_mask.paths))
        if "name" in update:
            lifecycle.check_name(update["name"])
        row = await self.db.write(lambda s: lifecycle.update(s, caller, request.agent_id,
                                                             update))
        return agent_message(row)

    async def DeleteAgent(self, request: pb.DeleteAgentRequest, context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)
        name = await self.db.write(lambda s: lifecycle.delete(s, caller.tenant_id,
                                                              request.agent_id))
        log.info("agent %r deleted", name)
        return common_pb2.DeleteResponse(success=True, message=f"agent {name!r} deleted")

    async def _transition(self, context, key: str, action: str, environment: str = "") -> pb.Agent:
        caller = require_caller(context)
        row = await self.db.write(lambda s: lifecycle.transition(s, caller.tenant_id, key,
                                                                 action, environment))
        return agent_message(row)

    async def DeployAgent(self, request, context):
        return await self._transition(context, request.agent_id, "deploy", request.environment)

    async def UndeployAgent(self, request, context):
        return await self._transition(context, request.agent_id, "undeploy")

    async def ActivateAgent(self, request, context):
        return await self._transition(context, request.agent_id, "activate")

    async def DeactivateAgent(self, request, context):
        return await self._transition(context, request.agent_id, "deactivate")

    async def ArchiveAgent(self, request, context):
        return await self._transition(context, request.agent_id, "archive")

    async def GetAgentStats(self, request: pb.GetAgentStatsRequest, context) -> pb.AgentStats:
        caller = require_caller(context)
        return await self.db.read(lambda s: agent_stats(s, caller.tenant_id, request.agent_id))

    async def ListAgentVersions(self, request: pb.ListAgentVersionsRequest,
                                context) -> pb.ListAgentVersionsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        row, result = await self.db.read(lambda s: AGENT_VERSIONS.page(
            s, caller.tenant_id, request.agent_id, page))
        return pb.ListAgentVersionsResponse(**result.fields(lambda v: version_message(v, row)))

    async def GetAgentVersion(self, request: pb.GetAgentVersionRequest,
                              context) -> pb.AgentVersion:
        caller = require_caller(context)

        def read(session) -> pb.AgentVersion:
            row = agents.get(session, caller.tenant_id, request.agent_id)
            return version_message(AGENT_VERSIONS.get(session, row, request.version), row)

        return await self.db.read(read)

    async def DiffAgentVersions(self, request: pb.DiffAgentVersionsRequest,
                                context) -> common_pb2.VersionDiff:
        caller = require_caller(context)

        def read(session) -> common_pb2.VersionDiff:
            row = agents.get(session, caller.tenant_id, request.agent_id)
            older, newer = AGENT_VERSIONS.pair(session, row, request.version, request.against)
            return diff_message(row, older, newer)

        return await self.db.read(read)

    async def SetAgentLabel(self, request: pb.SetAgentLabelRequest, context) -> pb.Agent:
        caller = require_caller(context)
        return agent_message(await self.db.write(lambda s: AGENT_VERSIONS.move_label(
            s, caller, request.agent_id, request.label, request.version)))

    async def DeleteAgentLabel(self, request: pb.DeleteAgentLabelRequest,
                               context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)
        row = await self.db.write(lambda s: AGENT_VERSIONS.drop_label(
            s, caller, request.agent_id, request.label))
        return common_pb2.DeleteResponse(
            success=True, message=f"label {request.label!r} removed from agent {row.name!r}")

    async def InteractWithAgent(self, request: pb.InteractWithAgentRequest,
                                context) -> pb.InteractWithAgentResponse:
        return await self.interactions.interact(require_caller(context), request)

    async def StreamInteraction(self, request: pb.StreamInteractionRequest, context):
        """The events of the interaction as they happen; a client that leaves cancels it."""
        run = await self.interactions.launch(require_caller(context), _interaction(request),
                                             stream=True)
        try:
            async for event in run.follow():
                yield event
        finally:
            if not run.ended:
                await asyncio.shield(self.runs.cancel(run))

    async def StartInteraction(self, request: pb.StartInteractionRequest, context) -> pb.Call:
        caller = require_caller(context)
        run = await self.interactions.launch(caller, _interaction(request), stream=True,
                                             channel="run")
        await run.record_now()
        await accepted(context)
        return await calls.fetch(self.db, caller.tenant_id, run.call_id)


def _interaction(request) -> pb.InteractWithAgentRequest:
    """StreamInteractionRequest and StartInteractionRequest carry InteractWithAgentRequest's
    fields under the same numbers (the contract names each RPC's request after it)."""
    return pb.InteractWithAgentRequest.FromString(request.SerializeToString())
