"""AgentService and CallService: the agents' domain rules on top of the shared runtime."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime

import grpc
from google.protobuf import json_format
from sqlmodel import Session, func, select

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from agentmesh.common.v1 import common_pb2
from mesh.agents import runtime_loop
from mesh.agents.models import AgentRow, CallRow
from mesh.runtime import events, limits, platform_events
from mesh.runtime.context import require_caller
from mesh.runtime.convert import changes, to_message, values, writable
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import DomainError, FailedPrecondition, invalid_field
from mesh.runtime.masterdata_client import MasterData
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.repository import TenantRepository
from mesh.runtime.service import Runtime, ServiceDefinition
from mesh.runtime.tables import is_uuid, utcnow

log = logging.getLogger("mesh.agents")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# The documented agent types (agents.proto, Agent.agent_type); "" means not set.
AGENT_TYPES = ("conversational", "task", "router", "supervisor", "workflow", "tool", "custom")
_WRITABLE = writable(pb.Agent)
S = pb.AgentStatus

# Which lifecycle action is allowed from which status, and where it leads.
_TRANSITIONS: dict[str, tuple[set[int], int]] = {
    "activate": ({S.AGENT_STATUS_DRAFT, S.AGENT_STATUS_INACTIVE}, S.AGENT_STATUS_ACTIVE),
    "deactivate": ({S.AGENT_STATUS_ACTIVE}, S.AGENT_STATUS_INACTIVE),
    "deploy": ({S.AGENT_STATUS_ACTIVE}, S.AGENT_STATUS_DEPLOYED),
    "undeploy": ({S.AGENT_STATUS_DEPLOYED}, S.AGENT_STATUS_ACTIVE),
    "archive": ({S.AGENT_STATUS_DRAFT, S.AGENT_STATUS_ACTIVE, S.AGENT_STATUS_INACTIVE},
                S.AGENT_STATUS_ARCHIVED),
}

agents = TenantRepository(AgentRow, noun="agent", message=pb.Agent,
                          search_columns=("name", "description"), order_columns=("name", "status"), quota="resource")
calls = TenantRepository(CallRow, noun="call", message=pb.Call, name_column=None,
                         order_columns=("started_at", "duration_ms"), default_order="-created_at")


def _check_name(name: str) -> None:
    if not name:
        raise invalid_field("name", "is required")
    if not _NAME.match(name) or is_uuid(name):
        raise invalid_field("name", "1-100 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit, and not a UUID")


def _check_agent_type(agent_type: str) -> None:
    if agent_type and agent_type not in AGENT_TYPES:
        raise invalid_field("agent_type", f"must be one of {', '.join(AGENT_TYPES)} (or empty)")


def _agent(row: AgentRow) -> pb.Agent:
    return to_message(row, pb.Agent)


class Conflict(DomainError):
    """A request that conflicts with the resource's current state (HTTP 409)."""

    code = grpc.StatusCode.ABORTED


_RUNNABLE = {"AGENT_STATUS_ACTIVE", "AGENT_STATUS_DEPLOYED"}


class AgentService(pb_grpc.AgentServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.settings = runtime.settings
        self.peers = runtime.peers
        self.masterdata = MasterData(runtime.peers)
        self.policy = EgressPolicy.from_settings(runtime.settings)

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
        _check_name(fields["name"])
        _check_agent_type(fields["agent_type"])
        row = AgentRow(tenant_id=caller.tenant_id, created_by=caller.user_id, **fields)
        created = await self.db.write(lambda s: agents.add(s, row))
        log.info("agent %r created (%s)", created.name, created.id)
        return _agent(created)

    async def GetAgent(self, request: pb.GetAgentRequest, context) -> pb.Agent:
        caller = require_caller(context)
        return await agents.fetch(self.db, caller.tenant_id, request.agent_id)

    async def UpdateAgent(self, request: pb.UpdateAgentRequest, context) -> pb.Agent:
        caller = require_caller(context)
        limits.check(request.agent)
        update = changes(request.agent, _WRITABLE, list(request.update_mask.paths))
        if "name" in update:
            _check_name(update["name"])
        if "agent_type" in update:
            _check_agent_type(update["agent_type"])

        def apply(session: Session) -> AgentRow:
            row = agents.get(session, caller.tenant_id, request.agent_id, lock=True)
            if row.status == "AGENT_STATUS_ARCHIVED":
                raise FailedPrecondition(f"agent {row.name!r} is archived and read-only",
                                         reason="AGENT_ARCHIVED")
            if all(getattr(row, key) == value for key, value in update.items()):
                return row  # a no-op update keeps version and updated_at
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
        log.info("agent %r deleted", name)
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

    async def ArchiveAgent(self, request, context):
        return await self._transition(context, request.agent_id, "archive")

    async def GetAgentStats(self, request: pb.GetAgentStatsRequest, context) -> pb.AgentStats:
        caller = require_caller(context)

        def stats(session: Session) -> pb.AgentStats:
            row = agents.get(session, caller.tenant_id, request.agent_id)
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


    async def InteractWithAgent(self, request: pb.InteractWithAgentRequest,
                                context) -> pb.InteractWithAgentResponse:
        caller = require_caller(context)
        if not request.message.strip():
            raise invalid_field("message", "is required")
        agent = await agents.fetch(self.db, caller.tenant_id, request.agent_id)
        status = pb.AgentStatus.Name(agent.status)
        if status not in _RUNNABLE:
            raise Conflict(f"agent {agent.name!r} is {status}; only ACTIVE or DEPLOYED agents "
                           "interact (activate or deploy it first)", reason="AGENT_NOT_RUNNABLE",
                           details={"agent": agent.name, "status": status})
        earlier: list = []
        if request.call_id:
            previous = await self.db.read(
                lambda s: calls.get(s, caller.tenant_id, request.call_id))
            if previous.agent_id != agent.id:
                raise invalid_field("call_id", f"call {request.call_id!r} belongs to another agent")
            earlier = runtime_loop.history(previous.transcript)
        variables = json_format.MessageToDict(request.context)
        plan = await runtime_loop.plan(agent, variables, self.masterdata, self.peers)
        call_id = await self.db.write(lambda s: self._begin(s, caller, agent, plan, request,
                                                            variables))
        await self._publish(caller.tenant_id, call_id, "call.started")
        turn = runtime_loop.Turn()
        started = time.perf_counter()
        try:
            await runtime_loop.AgentLoop(plan, self.peers, self.policy, call_id).run(
                turn, earlier, request.message)
        except BaseException:
            turn.reason, turn.error = "INTERNAL_ERROR", "the interaction failed unexpectedly"
            raise
        finally:
            duration = int((time.perf_counter() - started) * 1000)
            await self.db.write(lambda s: self._finish(s, caller.tenant_id, call_id, turn,
                                                       duration))
            await self._publish(caller.tenant_id, call_id, "call.ended")
        response = pb.InteractWithAgentResponse(
            call_id=call_id, reply=turn.reply,
            tokens=turn.prompt_tokens + turn.completion_tokens, duration_ms=duration,
            status=pb.CALL_STATUS_FAILED if turn.reason else pb.CALL_STATUS_COMPLETED,
            reason=turn.reason, error=turn.error, cost_usd=turn.cost_usd)
        for record in turn.tool_calls:
            response.tool_calls.add().update(record)
        return response

    async def _publish(self, tenant_id: str, call_id: str, type_: str) -> None:
        """The call as GET /calls/{id} shows it, to the live sockets (/ws/calls...), and a
        failed call to the tenant's webhooks (`call.failed`)."""
        try:
            call = await calls.fetch(self.db, tenant_id, call_id)
        except DomainError:
            return
        payload = json_format.MessageToDict(call, preserving_proto_field_name=True,
                                            always_print_fields_with_no_presence=True)
        await events.publish(self.settings, tenant_id, "call", call_id, type_, payload)
        if type_ == "call.ended" and call.status == pb.CALL_STATUS_FAILED:
            platform_events.emit(self.peers, tenant_id, "call.failed", payload)

    @staticmethod
    def _begin(session: Session, caller, agent: pb.Agent, plan, request, variables) -> str:
        if request.call_id:
            row = calls.get(session, caller.tenant_id, request.call_id, lock=True)
            if row.status == "CALL_STATUS_ACTIVE":
                raise Conflict(f"call {row.id!r} is answering another message; retry when it "
                               "has ended", reason="CALL_IN_PROGRESS", details={"call": row.id})
            row.status, row.ended_at = "CALL_STATUS_ACTIVE", None
            row.model, row.provider, row.reason, row.error = \
                plan.model.name, plan.model.provider, "", ""
            return calls.save(session, row).id
        row = CallRow(tenant_id=caller.tenant_id, agent_id=agent.id, status="CALL_STATUS_ACTIVE",
                      provider=plan.model.provider, model=plan.model.name, started_at=utcnow(),
                      call_metadata={"channel": "api", "caller": caller.user_id,
                                     "correlation_id": caller.correlation_id,
                                     "context": variables})
        return calls.add(session, row).id

    @staticmethod
    def _finish(session: Session, tenant_id: str, call_id: str, turn, duration: int) -> None:
        row = calls.get(session, tenant_id, call_id, lock=True)
        row.status = "CALL_STATUS_FAILED" if turn.reason else "CALL_STATUS_COMPLETED"
        row.ended_at = utcnow()
        row.duration_ms += duration
        row.prompt_tokens += turn.prompt_tokens
        row.completion_tokens += turn.completion_tokens
        row.cost_usd += turn.cost_usd
        row.tool_calls += len(turn.tool_calls)
        row.first_response_ms = row.first_response_ms or turn.first_response_ms
        row.transcript = [*row.transcript, *turn.entries]
        row.reason, row.error = turn.reason, turn.error
        calls.save(session, row)


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
        return pb.ListCallsResponse(**rows.fields(
            lambda r: to_message(r, pb.Call, metadata=r.call_metadata)))

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
        from mesh.agents.aggregates import aggregate_calls

        caller = require_caller(context)
        return await self.db.read(lambda s: aggregate_calls(s, caller.tenant_id, request))


DEFINITION = ServiceDefinition("agents", servicers=[AgentService, CallService],
                               tables=[AgentRow, CallRow])
