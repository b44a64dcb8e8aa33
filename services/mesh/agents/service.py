"""AgentService and CallService: the agents' domain rules on top of the shared runtime."""

from __future__ import annotations

import re

from sqlmodel import Session, func, select

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from agentmesh.common.v1 import common_pb2
from mesh.agents.models import AgentRow, CallRow
from mesh.runtime import limits
from mesh.runtime.context import require_caller
from mesh.runtime.convert import changes, to_message, values
from mesh.runtime.db import Database
from mesh.runtime.errors import FailedPrecondition, invalid_field
from mesh.runtime.repository import PageRequest, TenantRepository, is_uuid, utcnow
from mesh.runtime.server import ServiceDefinition
from mesh.runtime.settings import Settings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_WRITABLE = {"name", "description", "agent_type", "model", "system_prompt", "prompt_id",
             "tools", "skills", "constraints", "config", "labels"}
S = pb.AgentStatus

# Which lifecycle action is allowed from which status, and where it leads.
_TRANSITIONS: dict[str, tuple[set[int], int]] = {
    "activate": ({S.AGENT_STATUS_DRAFT, S.AGENT_STATUS_INACTIVE}, S.AGENT_STATUS_ACTIVE),
    "deactivate": ({S.AGENT_STATUS_ACTIVE}, S.AGENT_STATUS_INACTIVE),
    "deploy": ({S.AGENT_STATUS_ACTIVE}, S.AGENT_STATUS_DEPLOYED),
    "undeploy": ({S.AGENT_STATUS_DEPLOYED}, S.AGENT_STATUS_ACTIVE),
}

agents = TenantRepository(AgentRow, noun="agent", search_columns=("name", "description"),
                          order_columns=("name", "status"))
calls = TenantRepository(CallRow, noun="call", name_column=None,
                         order_columns=("started_at", "duration_ms"), default_order="-created_at")


def _check_name(name: str) -> None:
    if not name:
        raise invalid_field("name", "is required")
    if not _NAME.match(name) or is_uuid(name):
        raise invalid_field("name", "1-100 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit, and not a UUID")


def _agent(row: AgentRow) -> pb.Agent:
    return to_message(row, pb.Agent)


class AgentService(pb_grpc.AgentServiceServicer):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def ListAgents(self, request: pb.ListAgentsRequest, context) -> pb.ListAgentsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        status = pb.AgentStatus.Name(request.status) if request.status else None
        result = await self.db.read(lambda s: agents.list(
            s, caller.tenant_id, page, search=request.search,
            filters={"status": status, "agent_type": request.agent_type}))
        return pb.ListAgentsResponse(**result.fields(_agent))

    async def CreateAgent(self, request: pb.CreateAgentRequest, context) -> pb.Agent:
        caller = require_caller(context)
        limits.check(request.agent)
        fields = values(request.agent, _WRITABLE)
        _check_name(fields["name"])
        row = AgentRow(tenant_id=caller.tenant_id, created_by=caller.user_id, **fields)
        return _agent(await self.db.write(lambda s: agents.add(s, row)))

    async def GetAgent(self, request: pb.GetAgentRequest, context) -> pb.Agent:
        caller = require_caller(context)
        return _agent(await self.db.read(lambda s: agents.get(s, caller.tenant_id, request.agent_id)))

    async def UpdateAgent(self, request: pb.UpdateAgentRequest, context) -> pb.Agent:
        caller = require_caller(context)
        limits.check(request.agent)
        update = changes(request.agent, _WRITABLE, list(request.update_mask.paths))
        if "name" in update:
            _check_name(update["name"])

        def apply(session: Session) -> AgentRow:
            row = agents.get(session, caller.tenant_id, request.agent_id, lock=True)
            if row.status == "AGENT_STATUS_ARCHIVED":
                raise FailedPrecondition(f"agent {row.name!r} is archived and read-only",
                                         reason="AGENT_ARCHIVED")
            for key, value in update.items():
                setattr(row, key, value)
            row.version += 1
            return agents.save(session, row)

        return _agent(await self.db.write(apply))

    async def DeleteAgent(self, request: pb.DeleteAgentRequest, context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = agents.get(session, caller.tenant_id, request.agent_id, lock=True)
            if row.status == "AGENT_STATUS_DEPLOYED":
                raise FailedPrecondition(f"agent {row.name!r} is deployed; undeploy it first",
                                         reason="AGENT_DEPLOYED", details={"agent": row.name})
            agents.delete(session, row)
            return row.name

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"agent {name!r} deleted")

    async def _transition(self, context, key: str, action: str, environment: str = "") -> pb.Agent:
        caller = require_caller(context)
        allowed, target = _TRANSITIONS[action]

        def apply(session: Session) -> AgentRow:
            row = agents.get(session, caller.tenant_id, key, lock=True)
            current = pb.AgentStatus.Value(row.status)
            if current not in allowed:
                raise FailedPrecondition(
                    f"cannot {action} agent {row.name!r} in status {row.status}; allowed from "
                    f"{', '.join(sorted(pb.AgentStatus.Name(s) for s in allowed))}",
                    reason="INVALID_AGENT_TRANSITION",
                    details={"agent": row.name, "status": row.status, "action": action})
            row.status = pb.AgentStatus.Name(target)
            if action == "deploy":
                row.environment = environment or "production"
                row.deployed_at = utcnow()
                row.deployments += 1
            elif action == "undeploy":
                row.environment = ""
            return agents.save(session, row)

        return _agent(await self.db.write(apply))

    async def DeployAgent(self, request, context):
        return await self._transition(context, request.agent_id, "deploy", request.environment)

    async def UndeployAgent(self, request, context):
        return await self._transition(context, request.agent_id, "undeploy")

    async def ActivateAgent(self, request, context):
        return await self._transition(context, request.agent_id, "activate")

    async def DeactivateAgent(self, request, context):
        return await self._transition(context, request.agent_id, "deactivate")

    async def GetAgentStats(self, request: pb.GetAgentStatsRequest, context) -> pb.AgentStats:
        caller = require_caller(context)

        def stats(session: Session) -> pb.AgentStats:
            row = agents.get(session, caller.tenant_id, request.agent_id, lock=True)
            scoped = (CallRow.tenant_id == caller.tenant_id, CallRow.agent_id == row.id)
            by_status = dict(session.exec(select(CallRow.status, func.count()).where(*scoped)
                                          .group_by(CallRow.status)).all())
            avg, tokens, last = session.exec(select(
                func.avg(CallRow.duration_ms),
                func.sum(CallRow.prompt_tokens + CallRow.completion_tokens),
                func.max(CallRow.started_at)).where(*scoped)).one()
            out = pb.AgentStats(
                agent_id=row.id, total_calls=sum(by_status.values()),
                successful_calls=by_status.get("CALL_STATUS_COMPLETED", 0),
                failed_calls=by_status.get("CALL_STATUS_FAILED", 0),
                active_calls=by_status.get("CALL_STATUS_ACTIVE", 0),
                average_duration_ms=float(avg or 0), total_tokens=int(tokens or 0),
                deployments=row.deployments)
            if last:
                out.last_call_at.FromDatetime(last)
            return out

        return await self.db.read(stats)


def _call(row: CallRow) -> pb.Call:
    return to_message(row, pb.Call, metadata=row.call_metadata)


class CallService(pb_grpc.CallServiceServicer):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def ListCalls(self, request: pb.ListCallsRequest, context) -> pb.ListCallsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        status = pb.CallStatus.Name(request.status) if request.status else None
        result = await self.db.read(lambda s: calls.list(
            s, caller.tenant_id, page, filters={"agent_id": request.agent_id, "status": status}))
        return pb.ListCallsResponse(**result.fields(_call))

    async def ListActiveCalls(self, request, context) -> pb.ListCallsResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        result = await self.db.read(lambda s: calls.list(
            s, caller.tenant_id, page,
            filters={"agent_id": request.agent_id, "status": "CALL_STATUS_ACTIVE"}))
        return pb.ListCallsResponse(**result.fields(_call))

    async def GetCall(self, request: pb.GetCallRequest, context) -> pb.Call:
        caller = require_caller(context)
        return _call(await self.db.read(lambda s: calls.get(s, caller.tenant_id, request.call_id)))

    async def GetCallTranscript(self, request, context) -> pb.CallTranscript:
        caller = require_caller(context)
        row = await self.db.read(lambda s: calls.get(s, caller.tenant_id, request.call_id))
        transcript = pb.CallTranscript(call_id=row.id)
        for entry in row.transcript:
            transcript.entries.append(pb.TranscriptEntry(
                role=entry.get("role", ""), content=entry.get("content", "")))
        return transcript

    async def GetCallMetrics(self, request, context) -> pb.CallMetrics:
        caller = require_caller(context)
        row = await self.db.read(lambda s: calls.get(s, caller.tenant_id, request.call_id))
        return to_message(row, pb.CallMetrics, call_id=row.id, turns=len(row.transcript))


def _build(settings: Settings, db: Database | None):
    assert db is not None
    return [
        (pb_grpc.add_AgentServiceServicer_to_server, AgentService(db),
         pb.DESCRIPTOR.services_by_name["AgentService"].full_name),
        (pb_grpc.add_CallServiceServicer_to_server, CallService(db),
         pb.DESCRIPTOR.services_by_name["CallService"].full_name),
    ]


DEFINITION = ServiceDefinition(name="agents", build=_build,
                               migrations="mesh.agents:migrations")
