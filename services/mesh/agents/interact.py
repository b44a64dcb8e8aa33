"""One interaction with an agent (`POST /api/v1/agents/{id}/interact`, its streamed and
background forms, the OpenAI-compatible door): the agent must be runnable; the call is recorded
ACTIVE, the turn runs in a task of its own (a run, mesh/agents/runs.py, whose events streams
follow; mesh/agents/runtime_loop.py), the call ends COMPLETED, FAILED or CANCELLED with its
figures, transcript and answer; each change goes to the live sockets (tokens and tool calls
too), and a failed call to the tenant's webhooks. A message with `call_id` continues that call,
one with `thread_id` that thread (mesh/agents/threads.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import grpc
from google.protobuf import json_format
from sqlmodel import Session

from agentmesh.agents.v1 import agents_pb2 as pb
from mesh.agents import runtime_loop, threads
from mesh.agents.model_client import ModelConnections
from mesh.agents.lifecycle import RUNNABLE
from mesh.agents.models import CallRow
from mesh.agents.runs import INTERRUPTED, Run, Runs, lease
from mesh.agents.store import AGENT_VERSIONS, VersionFields, at_number, calls, current
from mesh.runtime import events, platform_events, telemetry
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import DomainError, invalid_field
from mesh.runtime.masterdata_client import MasterData
from mesh.runtime.peers import Peers
from mesh.runtime.settings import Settings
from mesh.runtime.tables import new_id, utcnow

log = logging.getLogger("mesh.agents")


class Conflict(DomainError):
    """A request that conflicts with the resource's current state (HTTP 409)."""

    code = grpc.StatusCode.ABORTED


def begin(session: Session, caller: Caller, agent: pb.Agent, plan: runtime_loop.Plan,
          request: pb.InteractWithAgentRequest, variables: dict, channel: str = "api",
          call_id: str = "", label: str = "") -> str:
    """The call ACTIVE (a new one, or the one continued), leased to this process; its id."""
    if request.call_id:
        row = calls.get(session, caller.tenant_id, request.call_id, lock=True)
        if row.status == "CALL_STATUS_ACTIVE":
            raise Conflict(f"call {row.id!r} is answering another message; retry when it "
                           "has ended", reason="CALL_IN_PROGRESS", details={"call": row.id})
        row.status, row.ended_at, row.lease_until = "CALL_STATUS_ACTIVE", None, lease()
        row.model, row.provider, row.reason, row.error = \
            plan.model.name, plan.model.provider, "", ""
        row.agent_version, row.agent_label = agent.version, label
        return calls.save(session, row).id
    row = CallRow(id=call_id or new_id(), tenant_id=caller.tenant_id, agent_id=agent.id,
                  status="CALL_STATUS_ACTIVE",
                  provider=plan.model.provider, model=plan.model.name, started_at=utcnow(),
                  thread_id=request.thread_id, lease_until=lease(),
                  agent_version=agent.version, agent_label=label,
                  call_metadata={"channel": "mcp" if caller.mcp_client else channel,
                                 "caller": caller.user_id,
                                 "correlation_id": caller.correlation_id,
                                 "context": variables,
                                 **({"mcp_client": caller.mcp_client,
                                     "api_key_id": caller.api_key_id}
                                    if caller.mcp_client else {})})
    return calls.add(session, row).id


async def running(db: Database, versions: VersionFields, tenant_id: str,
                  request: pb.InteractWithAgentRequest) -> tuple[pb.Agent, str]:
    """The agent as the version the interaction runs (`version`, `label`, else `production`
    when the agent has it, else `latest`), and the label that chose it. Its row is read
    afresh every time (its status, labels and current version may have just changed); the
    version's fields, which never change, once (`versions`)."""
    row = await current(db, tenant_id, request.agent_id)
    number, label = AGENT_VERSIONS.pick(row, request.version, request.label)
    return at_number(row, number, await versions.get(db, row, number)), label


def _status(turn: runtime_loop.Turn) -> str:
    if turn.reason == "CANCELLED":
        return "CALL_STATUS_CANCELLED"
    return "CALL_STATUS_FAILED" if turn.reason else "CALL_STATUS_COMPLETED"


def finish(session: Session, tenant_id: str, call_id: str, turn: runtime_loop.Turn,
           duration: int, result: dict) -> None:
    """The turn's outcome, figures and transcript added to the call."""
    row = calls.get(session, tenant_id, call_id, lock=True)
    if row.status == "CALL_STATUS_ACTIVE":   # not already ended elsewhere (CancelCall)
        row.status = _status(turn)
    row.ended_at = utcnow()
    row.lease_until = None
    row.duration_ms += duration
    row.prompt_tokens += turn.prompt_tokens
    row.completion_tokens += turn.completion_tokens
    row.cost_usd += turn.cost_usd
    row.tool_calls += len(turn.tool_calls)
    row.first_response_ms = row.first_response_ms or turn.first_response_ms
    row.transcript = [*row.transcript, *turn.entries]
    row.model_attempts = [*row.model_attempts, *turn.model_attempts]
    row.reason, row.error = turn.reason, turn.error
    row.result = result
    calls.save(session, row)


def response_of(result: dict) -> pb.InteractWithAgentResponse:
    """The answer recorded on a call (`CallRow.result`) as InteractWithAgent returns it."""
    return json_format.ParseDict(result, pb.InteractWithAgentResponse(),
                                 ignore_unknown_fields=True)


@dataclass
class Prepared:
    """An interaction checked and planned, before its call is recorded."""

    agent: pb.Agent
    plan: runtime_loop.Plan
    earlier: list = field(default_factory=list)
    variables: dict = field(default_factory=dict)
    label: str = ""   # the label that chose the agent's version ("" when a version was named)


class Interactions:
    def __init__(self, db: Database, settings: Settings, peers: Peers, runs: Runs) -> None:
        self.db = db
        self.settings = settings
        self.peers = peers
        self.runs = runs
        self.masterdata = MasterData(peers)
        self.policy = EgressPolicy.from_settings(settings)
        self.models = ModelConnections(self.policy)
        self.versions = VersionFields()
        self._tokens: dict[str, pb.InteractionEvent] = {}   # call -> tokens not yet relayed
        runs.on_interrupted = lambda tenant, call: self._publish(tenant, call, "call.ended")

    async def prepare(self, caller: Caller, request: pb.InteractWithAgentRequest,
                      history: list | None = None) -> Prepared:
        if not request.message.strip():
            raise invalid_field("message", "is required")
        if request.thread_id and request.call_id:
            raise invalid_field("thread_id", "give a thread or a call to continue, not both")
        agent, label = await running(self.db, self.versions, caller.tenant_id, request)
        status = pb.AgentStatus.Name(agent.status)
        if status not in RUNNABLE:
            raise Conflict(f"agent {agent.name!r} is {status}; only ACTIVE or DEPLOYED agents "
                           "interact (activate or deploy it first)", reason="AGENT_NOT_RUNNABLE",
                           details={"agent": agent.name, "status": status})
        earlier: list = list(history or [])
        if request.call_id:
            previous = await self.db.read(
                lambda s: calls.get(s, caller.tenant_id, request.call_id), inline=True)
            if previous.agent_id != agent.id:
                raise invalid_field("call_id", f"call {request.call_id!r} belongs to another agent")
            earlier = runtime_loop.history(previous.transcript)
        variables = json_format.MessageToDict(request.context)
        plan = await runtime_loop.plan(agent, variables, self.masterdata, self.peers)
        if request.thread_id:
            rows = await self.db.write(lambda s: threads.bind(s, caller.tenant_id,
                                                              request.thread_id, agent.id),
                                       inline=True)
            earlier = threads.window(
                rows, context_window=plan.context_window,
                reserve=plan.model.max_output_tokens,
                system_prompt=plan.system_prompt, message=request.message,
                max_messages=plan.max_history_messages)
        return Prepared(agent, plan, earlier, variables, label)

    async def launch(self, caller: Caller, request: pb.InteractWithAgentRequest, *,
                     stream: bool, history: list | None = None, channel: str = "api") -> Run:
        """Checks and plans the interaction, records its call ACTIVE and starts it in a task of
        its own: the run, whose events tell how it goes."""
        prepared = await self.prepare(caller, request, history)

        def record(session: Session, call_id: str = "") -> str:
            return begin(session, caller, prepared.agent, prepared.plan, request,
                         prepared.variables, channel, call_id, prepared.label)

        if request.call_id:   # a continued call: it must not be answering already
            run = self.runs.open(await self.db.write(record, inline=True), caller.tenant_id)
            run.recorded = asyncio.get_running_loop().create_future()
            run.recorded.set_result(run.call_id)
        else:   # a new call is recorded once the model has answered (Run.defer_record)
            call_id = new_id()
            run = self.runs.open(call_id, caller.tenant_id)
            # On a thread: it is written as the first token is relayed, which it must not hold.
            run.defer_record(lambda: self.db.write(lambda s: record(s, call_id)), RECORD_AFTER)
        run.streams = stream
        telemetry.annotate(agentmesh__call_id=run.call_id)  # its trace is found from the call id
        run.listeners.append(lambda event: self._relay(caller.tenant_id, run, event))
        run.emit("started")
        run.task = asyncio.create_task(self._execute(caller, request, prepared, run, stream))

        def ended(task: asyncio.Task) -> None:
            # Cancelled before it ran a single step: its end is recorded all the same.
            if not run.ended:
                run.task = asyncio.get_running_loop().create_task(self._execute(
                    caller, request, prepared, run, stream, cancelled=True))
        run.task.add_done_callback(ended)
        return run

    async def _started(self, caller: Caller, run: Run) -> None:
        """Once the call is recorded: `call.started` to the live sockets. A call that cannot be
        recorded is stopped."""
        try:
            await run.recorded
        except Exception:
            log.exception("call %s could not be recorded", run.call_id)
            run.stopping = "INTERNAL_ERROR"
            if run.task is not None:
                run.task.cancel()
            return
        await self._publish(caller.tenant_id, run.call_id, "call.started")
        run.announced = True
        for event in run.held:
            self._relay(caller.tenant_id, run, event)
        run.held.clear()

    async def _execute(self, caller: Caller, request: pb.InteractWithAgentRequest,
                       prepared: Prepared, run: Run, stream: bool,
                       cancelled: bool = False) -> None:
        turn = runtime_loop.Turn()
        started = time.perf_counter()
        announced = asyncio.create_task(self._started(caller, run))
        loop = runtime_loop.AgentLoop(prepared.plan, self.peers, self.policy, run.call_id,
                                      emit=run.emit, stream=stream, connections=self.models)
        try:
            if cancelled:
                raise asyncio.CancelledError
            await loop.run(turn, prepared.earlier, request.message)
        except asyncio.CancelledError:
            why = run.stopping or INTERRUPTED
            turn.reason = why
            turn.error = {"CANCELLED": "the call was cancelled",
                          "INTERNAL_ERROR": "the call could not be recorded"}.get(
                why, "the agents service stopped while the call was running")
            turn.add("system", turn.error, reason=turn.reason)
        except DomainError as refusal:  # governance or a budget refused a model request
            run.refusal = refusal
            if not turn.reason:
                turn.reason, turn.error = refusal.reason, refusal.message
        except Exception:
            log.exception("interaction %s failed", run.call_id)
            turn.reason, turn.error = "INTERNAL_ERROR", "the interaction failed unexpectedly"
        duration = int((time.perf_counter() - started) * 1000)
        response = pb.InteractWithAgentResponse(
            call_id=run.call_id, reply=turn.reply,
            tokens=turn.prompt_tokens + turn.completion_tokens, duration_ms=duration,
            status=pb.CallStatus.Value(_status(turn)), reason=turn.reason, error=turn.error,
            cost_usd=turn.cost_usd, agent_version=prepared.agent.version)
        for record in turn.tool_calls:
            response.tool_calls.add().update(record)
        result = json_format.MessageToDict(response, preserving_proto_field_name=True)
        try:
            run.record_now()
            await asyncio.gather(announced, return_exceptions=True)
            await self.db.write(lambda s: finish(s, caller.tenant_id, run.call_id, turn,
                                                 duration, result), inline=True)
            if request.thread_id:
                said = [("user", request.message)] + ([("assistant", turn.reply)]
                                                      if turn.reply else [])
                try:
                    await self.db.write(lambda s: threads.append(
                        s, caller.tenant_id, request.thread_id, run.call_id, said), inline=True)
                except Exception:
                    log.exception("call %s: its messages were not added to thread %s",
                                  run.call_id, request.thread_id)
        finally:
            self.runs.close_run(run)
            run.emit("ended", result=response)
            await self._publish(caller.tenant_id, run.call_id, "call.ended")

    async def interact(self, caller: Caller, request: pb.InteractWithAgentRequest
                       ) -> pb.InteractWithAgentResponse:
        run = await self.launch(caller, request, stream=False)
        try:
            response = await run.wait()
            if run.refusal is not None:  # recorded FAILED with its reason; the caller's error
                raise run.refusal
            return response
        except asyncio.CancelledError:   # the caller went away: so does its interaction
            await asyncio.shield(self.runs.cancel(run))
            raise

    def _relay(self, tenant_id: str, run: Run, event: pb.InteractionEvent) -> None:
        """The events of a streamed run (tokens, tool calls, usage) to the call's live sockets,
        after its `call.started`; a call answered at once (InteractWithAgent) shows only its
        start and end there. Tokens are merged over RELAY_SECONDS into one `call.token` (a bus
        message per word would cost more than the word)."""
        if not run.streams or event.type == "started":
            return
        if not run.announced and event.type != "ended":
            run.held.append(event)
            return
        if event.type == "token":
            waiting = self._tokens.get(event.call_id)
            if waiting is None:
                self._tokens[event.call_id] = waiting = pb.InteractionEvent()
                asyncio.get_running_loop().call_later(
                    RELAY_SECONDS, self._flush_tokens, tenant_id, event.call_id)
            text = waiting.text + event.text
            waiting.CopyFrom(event)
            waiting.text = text
            return
        self._flush_tokens(tenant_id, event.call_id)
        if event.type in ("started", "ended"):
            return   # call.started / call.ended carry the call itself
        self._send(tenant_id, event)

    def _flush_tokens(self, tenant_id: str, call_id: str) -> None:
        waiting = self._tokens.pop(call_id, None)
        if waiting is not None:
            self._send(tenant_id, waiting)

    def _send(self, tenant_id: str, event: pb.InteractionEvent) -> None:
        payload = json_format.MessageToDict(event, preserving_proto_field_name=True)
        task = asyncio.get_running_loop().create_task(events.publish(
            self.settings, tenant_id, "call", event.call_id, f"call.{event.type}", payload))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

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


_pending: set[asyncio.Task] = set()
RELAY_SECONDS = 0.05
RECORD_AFTER = 0.05
"""Seconds a new call waits at most for its model's first answer before its row is written."""
