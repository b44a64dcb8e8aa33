"""Model calls: one client for every OpenAI-compatible chat-completions endpoint.

Supported: any provider that speaks the OpenAI chat-completions protocol with tool calling —
`openai` (no `endpoint_url` needed), `openai_compatible` (vLLM, LM Studio, LiteLLM, OpenRouter,
Groq, Together, Mistral, a gateway...), `ollama` (its root URL; `/v1` is added), `anthropic`
through Anthropic's OpenAI-compatible endpoint (`/v1` is added), and Azure OpenAI when
`endpoint_url` is the resource's `/openai/v1` URL — through the `openai` package with `base_url`
from the model record and the API key from the model's secret. Other wire protocols can come later behind the same
`complete()`.

The client retries 429 and 5xx answers with exponential backoff (the `openai` client's own
retries, honouring `Retry-After`), bounds each request by a timeout, and every request goes
through the egress guard's client (mesh.runtime.egress, an httpx2 client the SDK takes as its
own) like tools do: a refused endpoint fails the call with EGRESS_DENIED. Each answer carries its token
usage and cost, from the model's prices per million tokens.

In a traced call each model request is a CLIENT span with OpenTelemetry's GenAI conventions
(`chat gpt-4o-mini`: `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
`gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`, ...; `mesh.runtime.telemetry`). The
messages themselves are never recorded on it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from mesh.runtime import telemetry
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import DomainError
from mesh.runtime.masterdata_client import ModelSpec
from mesh.runtime.redaction import SecretMask

DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 2
# The SDK's switch for an answer handed over unread (what `with_streaming_response` sets).
_RAW_RESPONSE = "X-Stainless-Raw-Response"
_PASSED_PARAMETERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed",
                      "stop")
# GenAI conventions: `gen_ai.provider.name` of a model record's provider (the well-known values;
# other providers keep their own name) and the request attributes of its parameters.
_GEN_AI_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "azure": "azure.ai.openai",
                     "azure_openai": "azure.ai.openai", "groq": "groq", "mistral": "mistral_ai",
                     "deepseek": "deepseek"}
_GEN_AI_PARAMETERS = {"temperature": "gen_ai.request.temperature",
                      "top_p": "gen_ai.request.top_p",
                      "presence_penalty": "gen_ai.request.presence_penalty",
                      "frequency_penalty": "gen_ai.request.frequency_penalty",
                      "seed": "gen_ai.request.seed", "stop": "gen_ai.request.stop_sequences"}


class ModelError(Exception):
    """The model could not answer; `reason` is the call's reason. `status` is the HTTP status
    when the server answered one, `retry_after` its Retry-After in seconds, `streamed` whether
    part of the answer had already been passed on (then nothing may be retried)."""

    def __init__(self, reason: str, message: str, *, status: int = 0,
                 retry_after: float | None = None, streamed: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.streamed = streamed

    @property
    def transient(self) -> bool:
        """A 429, a 5xx, a timeout or an unreachable server: worth a retry or a fallback."""
        return self.reason in ("MODEL_TIMEOUT", "MODEL_RATE_LIMITED", "MODEL_UNREACHABLE") or \
            self.status >= 500


def _retry_after(response) -> float | None:
    """Retry-After (seconds or an HTTP date) or retry-after-ms of an answer, in seconds."""
    headers = getattr(response, "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value:
            try:
                return float(value)
            except ValueError:
                from email.utils import parsedate_to_datetime

                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
    return None


@dataclass
class ToolCall:
    id: str
    name: str
    arguments_text: str
    arguments: dict[str, Any] | None = None
    problem: str = ""          # why the arguments cannot be used (malformed JSON, not an object)


@dataclass
class ModelTurn:
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: int = 0
    response_id: str = ""      # the provider's id of the answer
    response_model: str = ""   # the model that answered, as the provider names it

    def assistant_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.name, "arguments": c.arguments_text}} for c in self.tool_calls]
        return message


def base_url(spec: ModelSpec) -> str | None:
    """The chat-completions base URL of a model: its `endpoint_url`, with `/v1` added for the
    providers whose record holds the server's root (Ollama, Anthropic's compatible API)."""
    url = (spec.base_url or "").rstrip("/")
    if url and spec.provider in ("ollama", "anthropic") and not url.endswith("/v1"):
        url += "/v1"
    return url or None


def _parse_arguments(text: str) -> tuple[dict[str, Any] | None, str]:
    try:
        value = json.loads(text or "{}")
    except ValueError as exc:
        return None, f"the arguments are not valid JSON ({exc.msg} at {exc.pos}): {text[:200]}"
    if not isinstance(value, dict):
        return None, "the arguments must be a JSON object"
    return value, ""


class ModelConnections:
    """Connections to model servers, kept from one interaction to the next: one guarded HTTP
    pool (each request carries its model's timeout, which the guarded transport applies) and
    an OpenAI client per (key, URL, timeout), the most recent `MAX_CLIENTS`. Each interaction
    used to build both and open a new connection (TCP, and TLS for a hosted provider) before
    its first token could come. A pooled connection was checked by the egress guard when it
    was opened; each request still names its own key."""

    MAX_CLIENTS = 256
    POOL_TIMEOUT = 60.0  # for a request that names none (every request here names its own)

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self._http: Any = None
        self._clients: OrderedDict[tuple, openai.AsyncOpenAI] = OrderedDict()

    def client(self, spec: ModelSpec, api_key: str, timeout: float,
               max_retries: int) -> openai.AsyncOpenAI:
        key = (api_key, base_url(spec), timeout, max_retries)
        found = self._clients.get(key)
        if found is not None:
            self._clients.move_to_end(key)
            return found
        if self._http is None:
            self._http = self.policy.client(timeout=self.POOL_TIMEOUT)
        found = self._clients[key] = openai.AsyncOpenAI(
            api_key=api_key or "not-needed", base_url=key[1], timeout=timeout,
            max_retries=max_retries, http_client=self._http)
        if len(self._clients) > self.MAX_CLIENTS:  # not closed: the pool is shared
            self._clients.popitem(last=False)
        return found

    async def close(self) -> None:
        self._clients.clear()
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()


class ChatClient:
    def __init__(self, spec: ModelSpec, api_key: str, policy: EgressPolicy, *,
                 timeout: float = DEFAULT_TIMEOUT, max_retries: int = DEFAULT_RETRIES,
                 parameters: dict[str, Any] | None = None,
                 connections: ModelConnections | None = None) -> None:
        self.spec = spec
        self.parameters = {k: v for k, v in {**spec.parameters, **(parameters or {})}.items()
                           if k in _PASSED_PARAMETERS}
        # A server's error (or answer) may quote the key back; none of it is recorded as is.
        self.mask = SecretMask()
        self.mask.add(api_key)
        # Its own connections when none are shared (closed with it).
        self._owned = connections is None
        self.client = (ModelConnections(policy) if connections is None else connections).client(
            spec, api_key, timeout, max_retries)

    async def close(self) -> None:
        if self._owned:
            await self.client.close()

    def _span_attributes(self, max_tokens: int | None) -> dict[str, Any]:
        """The GenAI request attributes of a model request's span."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": _GEN_AI_PROVIDERS.get(self.spec.provider, self.spec.provider),
            "gen_ai.request.model": self.spec.model}
        url = urlsplit(base_url(self.spec) or "https://api.openai.com/v1")
        if url.hostname:
            attributes["server.address"] = url.hostname
            attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
        limit = max_tokens or self.spec.max_output_tokens
        if limit:
            attributes["gen_ai.request.max_tokens"] = limit
        for name, value in self.parameters.items():
            if name in _GEN_AI_PARAMETERS and isinstance(value, (int, float, str, list)):
                attributes[_GEN_AI_PARAMETERS[name]] = [value] if name == "stop" and \
                    isinstance(value, str) else value
        return attributes

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       max_tokens: int | None = None, on_token=None) -> ModelTurn:
        """One model request. With `on_token` the answer is streamed and `on_token(text)` is
        called with each piece of its text as it arrives."""
        with telemetry.client_span(f"chat {self.spec.model}",
                                   self._span_attributes(max_tokens)) as span:
            try:
                if on_token is None:
                    turn = await self._complete(messages, tools, max_tokens)
                else:
                    turn = await self._stream(messages, tools, max_tokens, on_token)
            except ModelError as exc:
                raise ModelError(exc.reason, self.mask.text(exc.message), status=exc.status,
                                 retry_after=exc.retry_after, streamed=exc.streamed) from None
            if span is not None:
                span.set_attributes({
                    "gen_ai.response.id": turn.response_id,
                    "gen_ai.response.model": turn.response_model,
                    "gen_ai.response.finish_reasons": [turn.finish_reason or "unknown"],
                    "gen_ai.usage.input_tokens": turn.prompt_tokens,
                    "gen_ai.usage.output_tokens": turn.completion_tokens})
        turn.content = self.mask.text(turn.content)
        return turn

    def _request(self, messages, tools, max_tokens) -> dict[str, Any]:
        """The `create()` arguments. The body goes as `extra_body`, which the SDK sends as it is:
        its own pass over typed arguments costs ~0.5 ms of CPU per message and tool (12 ms for
        a history of 20 messages), all of it before the request leaves."""
        body: dict[str, Any] = {"messages": messages, **self.parameters}
        if tools:
            body["tools"] = tools
        limit = max_tokens or self.spec.max_output_tokens or None
        if limit:
            body["max_tokens"] = limit
        return {"model": self.spec.model, "messages": [], "extra_body": body}

    def _error(self, exc: Exception, streamed: bool = False) -> ModelError:
        """The SDK's (or the egress guard's) exception as the call's reason."""
        if isinstance(exc, openai.APITimeoutError):
            return ModelError("MODEL_TIMEOUT", f"model {self.spec.name!r} did not answer within "
                              f"{self.client.timeout} s", streamed=streamed)
        if isinstance(exc, openai.RateLimitError):
            return ModelError("MODEL_RATE_LIMITED", f"model {self.spec.name!r} is rate limited "
                              f"(429): {exc.message}", status=429,
                              retry_after=_retry_after(exc.response), streamed=streamed)
        if isinstance(exc, openai.APIStatusError):
            return ModelError("MODEL_ERROR", f"model {self.spec.name!r} answered HTTP "
                              f"{exc.status_code}: {exc.message}", status=exc.status_code,
                              retry_after=_retry_after(exc.response), streamed=streamed)
        if isinstance(exc, DomainError):  # the guard cut the answer off (RESPONSE_TOO_LARGE)
            return ModelError(exc.reason, exc.message, streamed=streamed)
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, DomainError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, DomainError):   # the egress guard refused the endpoint
            return ModelError(cause.reason, cause.message, streamed=streamed)
        return ModelError("MODEL_UNREACHABLE", f"model {self.spec.name!r} at "
                          f"{self.spec.base_url or 'the provider default'} cannot be "
                          f"reached: {exc}", streamed=streamed)

    async def _stream(self, messages, tools, max_tokens, on_token) -> ModelTurn:
        """The answer streamed: text passed to `on_token` as it arrives, tool calls assembled
        from their pieces, usage from the last chunk (`stream_options.include_usage`). The SDK
        makes the request (auth, errors); its Server-Sent Events are read here as plain JSON,
        which costs a tenth of building the SDK's typed chunk per event."""
        request = self._request(messages, tools, max_tokens)
        body = {"model": request["model"], **request["extra_body"], "stream": True}
        if self.spec.parameters.get("stream_usage", True) is not False:
            body["stream_options"] = {"include_usage": True}
        started = time.perf_counter()
        text: list[str] = []
        pieces: dict[int, dict[str, Any]] = {}
        state = {"finish": "", "usage": None, "id": "", "model": ""}
        try:
            # `post` as `with_streaming_response.create` makes it (the raw-response header: the
            # answer is handed over unread), without `create`'s pass of its ~40 arguments
            # through the typed-dict transform (its typing look-ups were about a quarter of the
            # SDK's own CPU per request, all of it before the request leaves).
            response = await self.client.post(
                "/chat/completions", body=body, cast_to=ChatCompletion, stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
                options={"headers": {_RAW_RESPONSE: "stream"}})
            try:
                done = False
                relayed = False
                async for line in response.iter_lines():
                    # Read on past [DONE] to the end of the body (its last chunk follows at
                    # once): a connection whose answer was read through goes back to the
                    # pool; one closed mid-answer is closed, and the next request opens another.
                    if done or not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        continue
                    self._chunk(json.loads(data), state, text, pieces, on_token)
                    if text and not relayed:
                        # The first token goes on before the rest of what was read is parsed:
                        # a burst of chunks read at once is otherwise parsed to its end (no
                        # await in between) while the token waits for the stream to be resumed.
                        relayed = True
                        await asyncio.sleep(0)
            finally:
                await response.close()
        except (openai.OpenAIError, DomainError) as exc:
            raise self._error(exc, streamed=bool(text)) from None
        except (ValueError, AttributeError, TypeError) as exc:   # not the protocol's chunks
            raise ModelError("MODEL_ERROR", f"model {self.spec.name!r} streamed an answer that "
                             f"is not chat-completion chunks: {exc}", streamed=bool(text)) from None
        calls = []
        for index in sorted(pieces):
            piece = pieces[index]
            arguments, problem = _parse_arguments(piece["arguments"])
            calls.append(ToolCall(piece["id"] or f"call_{index}", piece["name"],
                                  piece["arguments"], arguments, problem))
        usage = state["usage"] or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        return ModelTurn("".join(text), calls, state["finish"], prompt, completion,
                         self.spec.cost(prompt, completion),
                         int((time.perf_counter() - started) * 1000), state["id"], state["model"])

    def _chunk(self, chunk: dict, state: dict, text: list[str], pieces: dict, on_token) -> None:
        if chunk.get("error"):
            error = chunk["error"]
            raise ModelError("MODEL_ERROR", f"model {self.spec.name!r} failed mid-answer: "
                             f"{error.get('message', error) if isinstance(error, dict) else error}",
                             streamed=bool(text))
        state["id"] = state["id"] or chunk.get("id") or ""
        state["model"] = state["model"] or chunk.get("model") or ""
        if chunk.get("usage"):
            state["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                text.append(delta["content"])
                on_token(self.mask.text(delta["content"]))
            for call in delta.get("tool_calls") or ():
                piece = pieces.setdefault(call.get("index") or 0,
                                          {"id": "", "name": "", "arguments": ""})
                piece["id"] = call.get("id") or piece["id"]
                function = call.get("function") or {}
                piece["name"] += function.get("name") or ""
                piece["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                state["finish"] = choice["finish_reason"]

    async def _complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                        max_tokens: int | None = None) -> ModelTurn:
        request = self._request(messages, tools, max_tokens)
        started = time.perf_counter()
        try:
            answer = await self.client.chat.completions.create(**request)
        except (openai.OpenAIError, DomainError) as exc:
            raise self._error(exc) from None
        latency = int((time.perf_counter() - started) * 1000)
        if not answer.choices:
            raise ModelError("MODEL_ERROR", f"model {self.spec.name!r} answered no choices")
        choice = answer.choices[0]
        calls = []
        for call in choice.message.tool_calls or ():
            function = getattr(call, "function", None)
            text = function.arguments if function is not None else ""
            arguments, problem = _parse_arguments(text)
            calls.append(ToolCall(call.id, function.name if function else "", text, arguments,
                                  problem))
        usage = answer.usage
        prompt = usage.prompt_tokens if usage else 0
        completion = usage.completion_tokens if usage else 0
        return ModelTurn(choice.message.content or "", calls, choice.finish_reason or "",
                         prompt, completion, self.spec.cost(prompt, completion), latency,
                         answer.id or "", answer.model or "")
