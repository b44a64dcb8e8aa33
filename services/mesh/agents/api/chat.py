"""ChatCompletionService: the OpenAI-compatible door (`/api/v1/openai/v1`). `model` names one of
the tenant's agents; the agent runs as InteractWithAgent runs it (its own model, prompt, tools,
constraints, governance; its tool calls stay inside the platform), recorded as a call with
channel "openai", and its answer comes back as a chat completion or, streamed, as chunks.

The request's last user message is the message answered; the messages before it are the
history (system and developer messages as system messages after the agent's own prompt;
assistant messages by their text; tool messages are the client's own business and left out).
Sampling fields (`temperature`, `max_tokens`, `tools`, ...) are accepted and ignored: the
agent's configuration decides. A call that fails is an error (409 ABORTED with the call's
reason; streamed: a last event with `error`, which the SDK raises).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from google.protobuf import json_format
from sqlmodel import select

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from mesh.agents.interact import Conflict, Interactions
from mesh.agents.lifecycle import RUNNABLE
from mesh.agents.models import AgentRow
from mesh.agents.runs import Run, Runs
from mesh.runtime.context import Caller, require_caller
from mesh.runtime.errors import invalid_field
from mesh.runtime.service import Runtime

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def text_of(content: Any) -> str:
    """A message's content as text: a string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content
                       if isinstance(part, dict) and part.get("type", "text") == "text")
    return "" if content is None else str(content)


def conversation(request) -> tuple[str, list[dict[str, str]]]:
    """The message to answer and the history before it."""
    messages = [(m.role, text_of(json_format.MessageToDict(m).get("content")))
                for m in request.messages]
    last = max((i for i, (role, _) in enumerate(messages) if role == "user"), default=None)
    if last is None or not messages[last][1].strip():
        raise invalid_field("messages", "needs a user message with text (the one answered)")
    for role, _ in messages:
        if role not in (*_ROLES, "tool"):
            raise invalid_field("messages", f"unknown role {role!r}; use system, developer, "
                                "user, assistant or tool")
    history = [{"role": _ROLES[role], "content": text} for role, text in messages[:last]
               if role in _ROLES and text]
    return messages[last][1], history


def agent_ref(model: str) -> dict:
    """The agent a `model` names: `name`, `name@label` (`helper@production`) or
    `name@version` (`helper@3`); an agent's name has no '@'."""
    name, _, at = model.partition("@")
    if not at:
        return {"agent_id": model}
    if at.isdigit():
        return {"agent_id": name, "version": int(at)}
    return {"agent_id": name, "label": at}


class ChatCompletionService(pb_grpc.ChatCompletionServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.runs: Runs = runtime.state
        self.interactions = Interactions(runtime.database, runtime.settings, runtime.peers,
                                         runtime.state)

    async def _launch(self, caller: Caller, request,  # Create- or StreamChatCompletionRequest
                      stream: bool) -> Run:
        if request.n > 1:
            raise invalid_field("n", "only one choice is served")
        message, history = conversation(request)
        interaction = pb.InteractWithAgentRequest(message=message, **agent_ref(request.model))
        return await self.interactions.launch(caller, interaction, stream=stream,
                                              history=history, channel="openai")

    async def CreateChatCompletion(self, request: pb.CreateChatCompletionRequest,
                                   context) -> pb.ChatCompletion:
        caller = require_caller(context)
        run = await self._launch(caller, request, stream=False)
        try:
            result = await run.wait()
        except asyncio.CancelledError:
            await asyncio.shield(self.runs.cancel(run))
            raise
        if result.status != pb.CALL_STATUS_COMPLETED:
            raise Conflict(f"the agent's call {run.call_id} ended "
                           f"{pb.CallStatus.Name(result.status)}: {result.error}",
                           reason=result.reason or "CALL_FAILED",
                           details={"call": run.call_id})
        usage = _usage(run)
        return pb.ChatCompletion(
            id=f"chatcmpl-{run.call_id}", object="chat.completion", created=int(time.time()),
            model=request.model, call_id=run.call_id, usage=usage,
            choices=[pb.ChatCompletionChoice(index=0, finish_reason="stop",
                                             message=pb.ChatCompletionMessage(
                                                 role="assistant", content=result.reply))])

    async def StreamChatCompletion(self, request: pb.StreamChatCompletionRequest, context):
        caller = require_caller(context)
        run = await self._launch(caller, request, stream=True)
        created = int(time.time())

        def chunk(**fields) -> pb.ChatCompletionChunk:
            return pb.ChatCompletionChunk(id=f"chatcmpl-{run.call_id}",
                                          object="chat.completion.chunk", created=created,
                                          model=request.model, call_id=run.call_id, **fields)

        include_usage = bool(json_format.MessageToDict(request.stream_options)
                             .get("include_usage"))
        try:
            yield chunk(choices=[pb.ChatCompletionChunkChoice(
                index=0, delta=pb.ChatCompletionDelta(role="assistant", content=""))])
            async for event in run.follow():
                if event.type == "token" and event.text:
                    yield chunk(choices=[pb.ChatCompletionChunkChoice(
                        index=0, delta=pb.ChatCompletionDelta(content=event.text))])
                elif event.type == "ended":
                    result = event.result
                    if result.status != pb.CALL_STATUS_COMPLETED:
                        yield chunk(error=pb.ChatCompletionError(
                            message=f"the agent's call ended {pb.CallStatus.Name(result.status)}"
                                    f": {result.error}", type="agent_error",
                            code=result.reason or "CALL_FAILED"))
                        return
                    yield chunk(choices=[pb.ChatCompletionChunkChoice(
                        index=0, delta=pb.ChatCompletionDelta(), finish_reason="stop")])
                    if include_usage:
                        yield chunk(usage=_usage(run))
        finally:
            if not run.ended:
                await asyncio.shield(self.runs.cancel(run))

    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ModelList:
        caller = require_caller(context)
        rows = await self.db.read(lambda s: s.exec(select(AgentRow).where(
            AgentRow.tenant_id == caller.tenant_id, AgentRow.status.in_(RUNNABLE))
            .order_by(AgentRow.name)).all())
        return pb.ModelList(object="list", data=[pb.OpenAIModel(
            id=row.name, object="model", owned_by=caller.tenant_id,
            created=int(row.created_at.timestamp()) if row.created_at else 0) for row in rows])


def _usage(run: Run) -> pb.ChatCompletionUsage:
    prompt = sum(e.usage.prompt_tokens for e in run.events if e.type == "usage")
    completion = sum(e.usage.completion_tokens for e in run.events if e.type == "usage")
    return pb.ChatCompletionUsage(prompt_tokens=prompt, completion_tokens=completion,
                                  total_tokens=prompt + completion)
