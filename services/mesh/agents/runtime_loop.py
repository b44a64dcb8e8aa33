"""The agent loop behind `POST /api/v1/agents/{agent_id}/interact`.

One turn: the system prompt (the agent's master-data prompt at label `production` — or
`config.prompt_label` — rendered with the request's context; a prompt without a `production`
label is used at its current version; else the agent's inline `system_prompt`), the call's history when `call_id` is
given, the user's message; then the model is asked, with the agent's tools offered as functions.
Each tool call is executed by the tools service over gRPC, as the caller, and its result fed
back, until the model answers without tool calls or a limit is reached.

Limits, from the agent's constraints (master data, merged: the strictest wins) and its config:
* `max_steps` — model requests per turn (default 10)          -> MAX_STEPS_REACHED
* `max_tokens_per_call` — tokens (prompt plus completion) of one model request; also sent as
  its `max_tokens`; a call using more, or an answer cut off   -> MAX_TOKENS_EXCEEDED
* `allowed_tools` / `denied_tools` — only allowed, never denied tools are offered; a model that
  asks for a denied one anyway                                -> TOOL_DENIED
* `timeout_seconds` — the whole turn                          -> TIMEOUT
Model failures end the turn with MODEL_TIMEOUT, MODEL_RATE_LIMITED, MODEL_ERROR,
MODEL_UNREACHABLE or EGRESS_DENIED. Every ending is recorded on the call with its reason.
A malformed tool call (arguments that are not a JSON object), an unknown tool or a failing tool
does not end the turn: the error goes back to the model as the tool's result.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from types import SimpleNamespace
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.tools.v1 import tools_pb2 as tools_pb
from agentmesh.tools.v1 import tools_pb2_grpc as tools_grpc
from mesh.agents.model_client import ModelConnections, ModelError, ModelTurn, base_url
from mesh.agents.model_path import DEFAULT_MAX_RETRY_AFTER, DEFAULT_RETRIES, Candidate, ModelPath
from mesh.runtime.context import AGENT_HEADER
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import DomainError, FailedPrecondition, NotFound, Unavailable
from mesh.runtime.masterdata_client import Limits, MasterData, ModelSpec
from mesh.runtime.peers import Peers
from mesh.runtime.tables import utcnow

DEFAULT_MAX_STEPS = 10
DEFAULT_TIMEOUT = 300.0
TOOL_RESULT_LIMIT = 20_000
_FUNCTION_NAME = re.compile(r"[^A-Za-z0-9_-]")


class Breach(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class OfferedTool:
    key: str            # as the agent names it
    tool: tools_pb.Tool
    function: str       # the function name the model sees


@dataclass
class Plan:
    """Everything a turn needs, resolved before the call is recorded."""

    model: ModelSpec
    api_key: str
    system_prompt: str
    limits: Limits
    tools: dict[str, OfferedTool]
    denied: set[str]
    model_timeout: float
    agent: str = ""  # the agent's name: the principal of governance decisions
    # The model path (mesh.agents.model_path): the model, then its fallbacks.
    candidates: list[Candidate] = field(default_factory=list)
    # Context-window rule of a thread's history (mesh.agents.threads.window).
    context_window: int = 0
    max_history_messages: int = 0


@dataclass
class Turn:
    """What happened in one turn; filled as it goes, so a timeout keeps what was done."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    reply: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    first_response_ms: int = 0
    reason: str = ""
    error: str = ""
    model_attempts: list[dict[str, Any]] = field(default_factory=list)

    def add(self, role: str, content: str, **metadata: Any) -> None:
        self.entries.append({"role": role, "content": content, "timestamp": utcnow().isoformat(),
                             "metadata": metadata})


def _limits_from_config(config: dict[str, Any], limits: Limits) -> Limits:
    own = {k: config[k] for k in ("max_steps", "max_tokens_per_call", "timeout_seconds",
                                  "allowed_tools", "denied_tools") if k in config}
    if own:
        limits.merge(own, "agent.config")
    return limits


def _function_name(name: str, taken: set[str]) -> str:
    base = _FUNCTION_NAME.sub("_", name)[:64] or "tool"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base[:60]}_{n}", n + 1
    return candidate


def _names(tool: tools_pb.Tool, key: str) -> set[str]:
    return {key, tool.name, tool.id}


async def plan(agent: pb.Agent, context: dict[str, Any], masterdata: MasterData,
               peers: Peers) -> Plan:
    """Resolves the model, the key, the prompt, the limits and the tools; a problem here is the
    agent's configuration (FAILED_PRECONDITION), not the model's."""
    if not agent.model:
        raise FailedPrecondition(f"agent {agent.name!r} names no model",
                                 reason="AGENT_HAS_NO_MODEL", details={"agent": agent.name})

    async def resolved(coroutine, noun: str, key: str):
        try:
            return await coroutine
        except NotFound as exc:
            key = str(exc.details.get(noun, key))
            raise FailedPrecondition(f"agent {agent.name!r} names {noun} {key!r}, which does "
                                     "not exist", reason=f"{noun.upper()}_NOT_FOUND",
                                     details={"agent": agent.name, noun: key}) from None

    model = await resolved(masterdata.model(agent.model), "model", agent.model)
    config = json_format.MessageToDict(agent.config)

    async def key_of_model() -> str:
        return await resolved(masterdata.reveal_secret(model.secret_ref, f"model {model.name}"),
                              "secret", model.secret_ref) if model.secret_ref else ""

    async def prompt() -> str:
        if not agent.prompt_id:
            return agent.system_prompt
        label = str(config.get("prompt_label") or "")
        return await resolved(masterdata.render_prompt(
            agent.prompt_id, context, label or "production", label_required=bool(label)),
            "prompt", agent.prompt_id)

    async def constraints():
        return await resolved(masterdata.limits(list(agent.constraints)), "constraint",
                              ",".join(agent.constraints))

    stub = peers.stub(tools_grpc.ToolServiceStub)

    async def tool_named(key: str) -> tools_pb.Tool:
        try:
            return await stub.GetTool(tools_pb.GetToolRequest(tool_id=key))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise FailedPrecondition(f"agent {agent.name!r} names tool {key!r}, which does "
                                         "not exist", reason="TOOL_NOT_FOUND",
                                         details={"agent": agent.name, "tool": key}) from None
            raise Unavailable(f"the tools service cannot answer for tool {key!r}: "
                              f"{error.code().name}", reason="TOOLS_UNAVAILABLE",
                              details={"tool": key}) from None

    # The rest depends on the model only: asked at once, not one round trip after another
    # (each is a call to masterdata or tools on the way to the first token). The first
    # failure in this order is the one reported.
    found = await asyncio.gather(key_of_model(), prompt(), constraints(),
                                 *(tool_named(key) for key in agent.tools),
                                 return_exceptions=True)
    for outcome in found:
        if isinstance(outcome, BaseException):
            raise outcome
    api_key, system_prompt, limits, *tools = found
    limits = _limits_from_config(config, limits)

    offered: dict[str, OfferedTool] = {}
    denied: set[str] = set()
    for key, tool in zip(agent.tools, tools):
        names = _names(tool, key)
        if names & limits.denied_tools or (limits.allowed_tools is not None
                                           and not names & limits.allowed_tools):
            denied |= names | {_FUNCTION_NAME.sub("_", n) for n in names}
            continue
        function = _function_name(tool.name, set(offered))
        offered[function] = OfferedTool(key, tool, function)
    denied |= limits.denied_tools
    model_timeout = float(config.get("model_timeout_seconds") or model.parameters.get(
        "timeout_seconds") or 60)
    candidates = [_candidate(model, api_key, model_timeout, config)]
    fallbacks = config.get("fallback_models", model.parameters.get("fallback_models")) or []
    for name in [fallbacks] if isinstance(fallbacks, str) else fallbacks:
        spare = await resolved(masterdata.model(str(name)), "model", str(name))
        key = await resolved(masterdata.reveal_secret(spare.secret_ref, f"model {spare.name}"),
                             "secret", spare.secret_ref) if spare.secret_ref else ""
        candidates.append(_candidate(spare, key, float(spare.parameters.get("timeout_seconds")
                                                       or model_timeout), config))
    return Plan(model, api_key, system_prompt, limits, offered, denied, model_timeout,
                agent=agent.name, candidates=candidates,
                context_window=int(config.get("context_window_tokens") or model.context_window
                                   or 0),
                max_history_messages=int(config.get("max_history_messages") or 0))


def _candidate(spec: ModelSpec, api_key: str, timeout: float, config: dict[str, Any]) -> Candidate:
    def number(name: str, default: float) -> float:
        value = config.get(name, spec.parameters.get(name))
        return float(value) if isinstance(value, (int, float)) else default

    return Candidate(spec, api_key, timeout, retries=int(number("max_retries", DEFAULT_RETRIES)),
                     max_retry_after=number("max_retry_after_seconds", DEFAULT_MAX_RETRY_AFTER))


def history(transcript: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat messages of earlier turns, rebuilt from the transcript."""
    messages: list[dict[str, Any]] = []
    for entry in transcript:
        role, content, meta = entry.get("role"), entry.get("content", ""), entry.get("metadata") or {}
        if role == "user":
            messages.append({"role": "user", "content": content})
        elif role == "agent":
            message: dict[str, Any] = {"role": "assistant", "content": content or None}
            if meta.get("tool_calls"):
                message["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
                    "name": c["function"], "arguments": c["arguments"]}}
                    for c in meta["tool_calls"]]
            messages.append(message)
        elif role == "tool" and meta.get("tool_call_id"):
            messages.append({"role": "tool", "tool_call_id": meta["tool_call_id"],
                             "content": content})
    # An unanswered tool call (a turn that ended on a breach) would be refused by the model.
    answered = {m["tool_call_id"] for m in messages if m["role"] == "tool"}
    for message in messages:
        if message.get("tool_calls"):
            message["tool_calls"] = [c for c in message["tool_calls"] if c["id"] in answered]
            if not message["tool_calls"]:
                del message["tool_calls"]
    return [m for m in messages if m.get("content") or m.get("tool_calls") or m["role"] == "tool"]


def _functions(plan: Plan) -> list[dict[str, Any]]:
    functions = []
    for offered in plan.tools.values():
        schema = json_format.MessageToDict(offered.tool.input_schema) or {"type": "object"}
        schema.setdefault("type", "object")
        if schema.get("type") == "object":
            schema.setdefault("properties", {})
        functions.append({"type": "function", "function": {
            "name": offered.function, "description": offered.tool.description[:1024],
            "parameters": schema}})
    return functions


def _quiet(type_: str, **fields: Any) -> None:
    """The events of a turn nobody streams."""


class AgentLoop:
    """One turn. `emit(type, **fields)` is told what happens as it happens (mesh.agents.runs:
    tokens when `stream`, tool calls' starts and ends, each model request's usage)."""

    def __init__(self, plan: Plan, peers: Peers, policy: EgressPolicy, call_id: str,
                 emit=_quiet, stream: bool = False,
                 connections: ModelConnections | None = None) -> None:
        self.plan = plan
        self.peers = peers
        self.policy = policy
        self.connections = connections
        self.call_id = call_id
        self.emit = emit
        self.stream = stream

    async def run(self, turn: Turn, earlier: list[dict[str, Any]], message: str) -> None:
        """Runs the turn into `turn`, under the whole-turn timeout."""
        timeout = self.plan.limits.timeout_seconds or DEFAULT_TIMEOUT
        self.deadline = time.monotonic() + timeout
        try:
            # In this task (`wait_for` would start another for it, a turn of the loop later).
            async with asyncio.timeout(timeout):
                await self._run(turn, earlier, message)
        except TimeoutError:
            turn.reason = "TIMEOUT"
            turn.error = f"the interaction did not finish within {timeout:g} s"
        except Breach as breach:
            turn.reason, turn.error = breach.reason, breach.message
        except ModelError as exc:
            turn.reason, turn.error = exc.reason, exc.message
        except DomainError as exc:  # governance refused a model request: the caller's error
            turn.reason, turn.error = exc.reason, exc.message
            turn.add("system", turn.error, reason=turn.reason,
                     **({"decision_id": exc.details["governance"].get("decision_id", "")}
                        if "governance" in exc.details else {}))
            raise
        if turn.reason:
            turn.add("system", turn.error, reason=turn.reason)

    async def _run(self, turn: Turn, earlier: list[dict[str, Any]], message: str) -> None:
        plan = self.plan
        if plan.model.base_url:
            try:
                await self.policy.check_url(base_url(plan.model) or "")
            except DomainError as exc:
                raise ModelError(exc.reason, exc.message) from None
        messages = ([{"role": "system", "content": plan.system_prompt}]
                    if plan.system_prompt else []) + earlier
        messages.append({"role": "user", "content": message})
        turn.add("user", message)
        functions = _functions(plan)
        max_steps = plan.limits.max_steps or DEFAULT_MAX_STEPS
        model = ModelPath(plan.candidates or [Candidate(plan.model, plan.api_key,
                                                        plan.model_timeout)], self.policy,
                          connections=self.connections)
        turn.model_attempts = model.attempts
        started = time.perf_counter()

        def on_token(step: int):
            def token(text: str) -> None:
                if not turn.first_response_ms:
                    turn.first_response_ms = int((time.perf_counter() - started) * 1000)
                self.emit("token", text=text, step=step)
            return token

        try:
            for step in range(1, max_steps + 1):
                # The one model request of the loop (the model path: retries, fallbacks).
                answer = await self._model_request(model, messages, functions,
                                                   on_token(step) if self.stream else None)
                if not turn.first_response_ms:
                    turn.first_response_ms = int((time.perf_counter() - started) * 1000)
                self._count(turn, answer, step, model.answered_by.name)
                self.emit("usage", step=step, usage=pb.InteractionUsage(
                    prompt_tokens=answer.prompt_tokens,
                    completion_tokens=answer.completion_tokens, cost_usd=answer.cost_usd,
                    model=model.answered_by.name))
                limit = plan.limits.max_tokens_per_call
                used = answer.prompt_tokens + answer.completion_tokens
                if limit and used > limit:
                    raise Breach("MAX_TOKENS_EXCEEDED", f"model call {step} used {used} tokens "
                                 f"(prompt plus completion); max_tokens_per_call is {limit}")
                if answer.finish_reason == "length" and not answer.tool_calls:
                    raise Breach("MAX_TOKENS_EXCEEDED", f"the model's answer was cut off at "
                                 f"max_tokens_per_call={plan.limits.max_tokens_per_call}"
                                 if plan.limits.max_tokens_per_call else
                                 "the model's answer was cut off at its output limit")
                if not answer.tool_calls:
                    turn.reply = answer.content
                    return
                messages.append(answer.assistant_message())
                for call in answer.tool_calls:
                    messages.append(await self._tool(turn, call, step))
            raise Breach("MAX_STEPS_REACHED", f"the agent used its {max_steps} steps without a "
                         "final answer")
        finally:
            await model.close()

    async def _model_request(self, model: ModelPath, messages: list[dict[str, Any]],
                             functions: list[dict[str, Any]], on_token) -> ModelTurn:
        """One model request, governed (mesh.governance.client): decided (`call_model`) and
        checked against the budgets before it is made (403 GOVERNANCE_DENIED, 429
        BUDGET_EXCEEDED), its real tokens and cost counted after (for the model that answered:
        the model path may fall back to another)."""
        from mesh.governance import client as governance

        plan, limit = self.plan, self.plan.limits.max_tokens_per_call
        estimated = sum(len(str(m.get("content") or "")) for m in messages) // 4 + (limit or 0)
        await governance.guard_model_call(self.peers, agent=plan.agent, model=plan.model.name,
                                          estimated_tokens=estimated)
        answer = await model.complete(messages, functions, limit, on_token)
        await governance.record_model_usage(
            self.peers, agent=plan.agent, model=model.answered_by.name,
            tokens=answer.prompt_tokens + answer.completion_tokens, cost_usd=answer.cost_usd)
        return answer

    def _count(self, turn: Turn, answer: ModelTurn, step: int, model: str) -> None:
        turn.prompt_tokens += answer.prompt_tokens
        turn.completion_tokens += answer.completion_tokens
        turn.cost_usd += answer.cost_usd
        turn.add("agent", answer.content, step=step, model=model,
                 prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                 cost_usd=answer.cost_usd, latency_ms=answer.latency_ms,
                 finish_reason=answer.finish_reason,
                 tool_calls=[{"id": c.id, "function": c.name, "arguments": c.arguments_text}
                             for c in answer.tool_calls])

    async def _tool(self, turn: Turn, call, step: int = 0) -> dict[str, Any]:
        """Runs one tool call and answers the tool message for the model; its start and its
        end (with the governance decision) are emitted."""
        record: dict[str, Any] = {"id": call.id, "name": call.name,
                                  "arguments": call.arguments if call.arguments is not None
                                  else call.arguments_text}
        turn.tool_calls.append(record)
        self.emit("tool_call.started", step=step, tool_call=dict(record))
        try:
            return await self._run_tool(turn, call, record)
        finally:
            self.emit("tool_call.ended", step=step,
                      tool_call={**record, "status": record.get("status") or "CANCELLED"})

    async def _run_tool(self, turn: Turn, call, record: dict[str, Any]) -> dict[str, Any]:
        plan = self.plan
        if call.name in plan.denied:
            record.update(status="DENIED", error=f"tool {call.name!r} is denied by a constraint")
            turn.add("tool", record["error"], tool_call_id=call.id, tool=call.name,
                     status="DENIED")
            raise Breach("TOOL_DENIED", f"the model asked for tool {call.name!r}, which the "
                         "agent's constraints deny")
        offered = plan.tools.get(call.name)
        if offered is not None and not call.problem:
            await self._governed(turn, call, offered, record)
        started = time.perf_counter()
        if offered is None:
            status, content = "FAILED", {"error": f"there is no tool {call.name!r}; use one of "
                                                  f"{', '.join(plan.tools) or 'none'}"}
        elif call.problem:
            status, content = "FAILED", {"error": call.problem}
        else:
            status, content = await self._execute(offered, call.arguments, record)
        duration = int((time.perf_counter() - started) * 1000)
        record.update(status=status, duration_ms=duration,
                      **({"output": content} if status == "COMPLETED" else
                         {"error": content.get("error", "")}))
        text = json.dumps(content, ensure_ascii=False)[:TOOL_RESULT_LIMIT]
        turn.add("tool", text, tool_call_id=call.id, tool=offered.tool.name if offered else
                 call.name, arguments=record["arguments"], status=status, duration_ms=duration,
                 execution_id=record.get("execution_id", ""))
        return {"role": "tool", "tool_call_id": call.id, "content": text}

    async def _governed(self, turn: Turn, call, offered: OfferedTool,
                        record: dict[str, Any]) -> None:
        """The tenant's policies decide the tool call before it runs (mesh.governance); a
        denial ends the call, recorded with the decision. Without a governance service
        configured (AGENTMESH_PEERS), the agent's constraints and the caller's scopes decide."""
        if "governance" not in self.peers.addresses:
            return
        from mesh.governance import client as governance

        decision = await governance.check_tool_call(
            SimpleNamespace(peers=self.peers), agent=self.plan.agent, tool=offered.tool.name,
            arguments=call.arguments if isinstance(call.arguments, dict) else {})
        record["decision"] = {"id": decision.id, "allowed": decision.allowed,
                              "reason": decision.reason}
        if decision.allowed:
            return
        record.update(status="DENIED", error=decision.reason, decision_id=decision.id)
        turn.add("tool", f"denied by policy: {decision.reason}", tool_call_id=call.id,
                 tool=offered.tool.name, status="DENIED", decision_id=decision.id)
        raise Breach("TOOL_DENIED_BY_POLICY", f"governance denied tool {offered.tool.name!r}: "
                     f"{decision.reason}")

    async def _execute(self, offered: OfferedTool, arguments: dict[str, Any],
                       record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        stub = self.peers.stub(tools_grpc.ToolServiceStub)
        request = tools_pb.ExecuteToolRequest(tool_id=offered.tool.id, call_id=self.call_id)
        request.arguments.update(arguments)
        remaining = max(1.0, self.deadline - time.monotonic())
        try:
            execution = await stub.ExecuteTool(request, timeout=remaining,
                                               metadata=((AGENT_HEADER, self.plan.agent),))
        except grpc.aio.AioRpcError as error:
            return "FAILED", {"error": error.details() or error.code().name}
        record["execution_id"] = execution.id
        status = tools_pb.ToolExecutionStatus.Name(execution.status).removeprefix(
            "TOOL_EXECUTION_STATUS_")
        if status == "COMPLETED":
            return status, json_format.MessageToDict(execution.output)
        return status, {"error": execution.error}
