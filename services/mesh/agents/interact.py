"""One interaction with an agent (`POST /api/v1/agents/{id}/interact`): the agent must be
runnable; the call is recorded ACTIVE, the turn runs (mesh/agents/runtime_loop.py), the call
ends COMPLETED or FAILED with its figures and transcript; each change goes to the live sockets,
and a failed call to the tenant's webhooks. A message with `call_id` continues that call."""

from __future__ import annotations

import logging
import time

import grpc
from google.protobuf import json_format
from sqlmodel import Session

from agentmesh.agents.v1 import agents_pb2 as pb
from mesh.agents import runtime_loop
from mesh.agents.lifecycle import RUNNABLE
from mesh.agents.models import CallRow
from mesh.agents.store import agents, calls
from mesh.runtime import events, platform_events, telemetry
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import DomainError, invalid_field
from mesh.runtime.masterdata_client import MasterData
from mesh.runtime.peers import Peers
from mesh.runtime.settings import Settings
from mesh.runtime.tables import utcnow

log = logging.getLogger("mesh.agents")


class Conflict(DomainError):
    """A request that conflicts with the resource's current state (HTTP 409)."""

    code = grpc.StatusCode.ABORTED


def begin(session: Session, caller: Caller, agent: pb.Agent, plan: runtime_loop.Plan,
          request: pb.InteractWithAgentRequest, variables: dict) -> str:
    """The call ACTIVE (a new one, or the one continued); its id."""
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


def finish(session: Session, tenant_id: str, call_id: str, turn: runtime_loop.Turn,
           duration: int) -> None:
    """The turn's outcome, figures and transcript added to the call."""
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


class Interactions:
    def __init__(self, db: Database, settings: Settings, peers: Peers) -> None:
        self.db = db
        self.settings = settings
        self.peers = peers
        self.masterdata = MasterData(peers)
        self.policy = EgressPolicy.from_settings(settings)

    async def interact(self, caller: Caller, request: pb.InteractWithAgentRequest
                       ) -> pb.InteractWithAgentResponse:
        if not request.message.strip():
            raise invalid_field("message", "is required")
        agent = await agents.fetch(self.db, caller.tenant_id, request.agent_id)
        status = pb.AgentStatus.Name(agent.status)
        if status not in RUNNABLE:
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
        call_id = await self.db.write(lambda s: begin(s, caller, agent, plan, request, variables))
        telemetry.annotate(agentmesh__call_id=call_id)  # its trace is found from the call id
        await self._publish(caller.tenant_id, call_id, "call.started")
        turn = runtime_loop.Turn()
        started = time.perf_counter()
        try:
            await runtime_loop.AgentLoop(plan, self.peers, self.policy, call_id).run(
                turn, earlier, request.message)
        except BaseException:
            if not turn.reason:  # a refusal (governance) keeps its own reason
                turn.reason, turn.error = "INTERNAL_ERROR", "the interaction failed unexpectedly"
            raise
        finally:
            duration = int((time.perf_counter() - started) * 1000)
            await self.db.write(lambda s: finish(s, caller.tenant_id, call_id, turn, duration))
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
            await platform_events.record(self.db, tenant_id, "call.failed", payload)
