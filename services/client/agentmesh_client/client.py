"""The clients: `Client` (sync) and `AsyncClient` over the REST API of the gateway, with httpx2.

What they do for you: send the bearer token (or API key) and refresh it once on a 401 when
they have a refresh token (`on_tokens` is told the new pair, so the CLI can store it); retry
idempotent calls (GET, PUT, DELETE, and POSTs given an `Idempotency-Key`) on connection errors,
502, 503, 504 and 429 with backoff (429: as long as the server asks); raise one exception class
per kind of failure (`agentmesh_client.errors`); return typed models (`agentmesh_client.models`);
iterate over every page of a list (`iterate`); follow an execution over Server-Sent Events
(`workflows.watch`) or a WebSocket (`live_url`; `AsyncClient.live`).

Every service of the contract is an attribute (`agents`, `workflows`, `governance`,
`integration`, `observability`, ...) whose methods are its RPCs (`client.governance.
list_policies()`); collections also have `list`, `iterate`, `get`, `create`, `update`,
`delete`. All of it is generated from protos/ (`agentmesh gen`): no path is written by hand.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2

from agentmesh_client import models
from agentmesh_client._generated.contract import FINAL
from agentmesh_client._generated.services import (AgentService, AsyncAgentService,
                                                   AsyncServices, AsyncWorkflowService,
                                                   Services, WorkflowService)
from agentmesh_client._service import route
from agentmesh_client.errors import ApiError, Unauthenticated, Unreachable, make_error

JSON = dict[str, Any]
RETRY_STATUS = {429, 502, 503, 504}
IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
_IDENTITY = "agentmesh.identity.v1.IdentityService"
_WORKFLOWS = WorkflowService.SERVICE
_AGENTS = AgentService.SERVICE
# The longest a retry waits, even when a 429 asks for more.
MAX_BACKOFF = 10.0


def ended_statuses() -> frozenset[str]:
    """The execution statuses after which nothing more happens (the contract's `final`)."""
    return FINAL["agentmesh.workflows.v1.ExecutionStatus"]


def error_from_response(response: httpx2.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    headers = {k.lower(): v for k, v in response.headers.items()}
    return make_error(response.status_code, str(body.get("error") or response.reason_phrase),
                      str(body.get("message") or response.text[:200]),
                      body.get("details") or {},
                      str(body.get("correlation_id") or headers.get("x-correlation-id", "")),
                      headers)


@dataclass
class Tokens:
    access_token: str = ""
    refresh_token: str = ""


@dataclass
class _Config:
    base_url: str
    tokens: Tokens = field(default_factory=Tokens)
    api_key: str = ""
    retries: int = 3
    on_tokens: Callable[[Tokens], None] | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.tokens.access_token:
            headers["Authorization"] = f"Bearer {self.tokens.access_token}"
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return headers

    def retryable(self, method: str, headers: dict[str, str] | None) -> bool:
        return method in IDEMPOTENT or bool(headers and "Idempotency-Key" in headers)

    def set_tokens(self, body: Any) -> None:
        self.tokens = Tokens(body.get("access_token", ""),
                             body.get("refresh_token", "") or self.tokens.refresh_token)
        if self.on_tokens:
            self.on_tokens(self.tokens)


def _backoff(attempt: int, response: httpx2.Response | None) -> float:
    if response is not None:
        error = error_from_response(response) if response.status_code == 429 else None
        after = getattr(error, "retry_after", None)
        if after is not None:
            return min(after, MAX_BACKOFF)
    return min(0.2 * 2 ** attempt, 3.0)


def _result(response: httpx2.Response) -> Any:
    if response.status_code >= 400:
        raise error_from_response(response)
    if not response.content:
        return {}
    return response.json()


def _sse_data(line: str) -> JSON | None:
    return json.loads(line[5:]) if line.startswith("data:") else None


def _interaction(message: str, call_id: str, context: JSON | None, thread_id: str = "") -> JSON:
    body: JSON = {"message": message}
    if call_id:
        body["call_id"] = call_id
    if context:
        body["context"] = context
    if thread_id:
        body["thread_id"] = thread_id
    return body


# ---- sync ---------------------------------------------------------------------------------------
class Workflows(WorkflowService):
    def execute(self, key: str, inputs: JSON | None = None,
                idempotency_key: str | None = None) -> models.Execution:
        """Starts an execution (QUEUED); retried safely thanks to its Idempotency-Key."""
        return self._call("ExecuteWorkflow", (key,), {"inputs": inputs or {}}, {},
                          headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())})

    def execution(self, execution_id: str) -> models.Execution:
        return self.get_execution(execution_id)

    def watch(self, execution_id: str, last_event_id: int = 0) -> Iterator[Any]:
        """The execution's progress as it changes (Server-Sent Events), ending with its final
        state; resumes after `last_event_id`."""
        fields = {"last_event_id": last_event_id} if last_event_id else {}
        return self.watch_execution(execution_id, **fields)

    def run(self, key: str, inputs: JSON | None = None, wait: bool = True) -> models.Execution:
        """Executes the workflow; with `wait`, returns the execution once it has ended."""
        execution = self.execute(key, inputs)
        if not wait:
            return execution
        for progress in self.watch(execution.id):
            if progress.get("status") in ended_statuses():
                break
        return self.execution(execution.id)


class Agents(AgentService):
    def interact(self, key: str, message: str, call_id: str = "",
                 context: JSON | None = None, thread_id: str = ""
                 ) -> models.InteractWithAgentResponse:
        return self.interact_with_agent(key, _interaction(message, call_id, context, thread_id))

    def stream(self, key: str, message: str, call_id: str = "", context: JSON | None = None,
               thread_id: str = "") -> Iterator[models.InteractionEvent]:
        """The answer as it is written: `started`, `token` (`.text`), `tool_call.started` /
        `tool_call.ended`, `usage`, and `ended` last (`.result`, as `interact` returns it).
        Leaving the loop early closes the stream, which cancels the call."""
        return self.stream_interaction(key, _interaction(message, call_id, context, thread_id))


class Client(Services):
    """A synchronous client; use as a context manager or call `close()`."""

    agents: Agents
    workflows: Workflows

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, token: str = "",
                 refresh_token: str = "", api_key: str = "", timeout: float = 30.0,
                 retries: int = 3, on_tokens: Callable[[Tokens], None] | None = None,
                 transport: httpx2.BaseTransport | None = None) -> None:
        self.config = _Config(base_url.rstrip("/"), Tokens(token, refresh_token), api_key,
                              retries, on_tokens)
        self.http = httpx2.Client(base_url=self.config.base_url, timeout=timeout,
                                  transport=transport)
        self._bind_services()
        self.agents = Agents(self)
        self.workflows = Workflows(self)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def resource(self, name: str) -> Any:
        return getattr(self, name)

    # -- authentication ------------------------------------------------------------------------
    @property
    def tokens(self) -> Tokens:
        return self.config.tokens

    def login(self, email: str, password: str) -> Tokens:
        body = self.request(*route(f"{_IDENTITY}/Login"),
                            json={"email": email, "password": password}, auth=False)
        self.config.set_tokens(body)
        return self.config.tokens

    def refresh(self) -> Tokens:
        if not self.config.tokens.refresh_token:
            raise Unauthenticated(401, "UNAUTHENTICATED", "no refresh token; log in again")
        body = self.request(*route(f"{_IDENTITY}/Refresh"),
                            json={"refresh_token": self.config.tokens.refresh_token}, auth=False)
        self.config.set_tokens(body)
        return self.config.tokens

    def me(self) -> models.User:
        return self.identity.get_me()

    def live_url(self, path: str) -> str:
        """The WebSocket URL of a live stream (`/ws/<execution id>`, `/ws/calls`, ...)."""
        return "ws" + self.config.base_url.removeprefix("http") + path

    # -- requests -------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, json: Any = None, params: JSON | None = None,
                headers: dict[str, str] | None = None, auth: bool = True) -> Any:
        response = self._send(method, path, json=json, params=params, headers=headers, auth=auth)
        if response.status_code == 401 and auth and self.config.tokens.refresh_token:
            self.refresh()
            response = self._send(method, path, json=json, params=params, headers=headers)
        return _result(response)

    def _send(self, method: str, path: str, *, json: Any = None, params: JSON | None = None,
              headers: dict[str, str] | None = None, auth: bool = True) -> httpx2.Response:
        retryable = self.config.retryable(method, headers)
        all_headers = {**(self.config.headers() if auth else {}), **(headers or {})}
        attempt = 0
        while True:
            response = None
            try:
                response = self.http.request(method, path, json=json, params=params,
                                             headers=all_headers)
                if response.status_code not in RETRY_STATUS or not retryable:
                    return response
            except httpx2.TransportError as exc:
                if not retryable or attempt >= self.config.retries:
                    raise Unreachable(self.config.base_url, str(exc) or type(exc).__name__) \
                        from exc
            if attempt >= self.config.retries:
                return response
            time.sleep(_backoff(attempt, response))
            attempt += 1

    def iterate(self, path: str, page_size: int = 100, **params: Any) -> Iterator[JSON]:
        """Every item of a list route, over every page (plain JSON)."""
        page = 1
        while True:
            body = self.request("GET", path, params={**params, "page": page,
                                                     "page_size": page_size})
            yield from body.get("items", [])
            if page >= int(body.get("pages") or 1):
                return
            page += 1

    def stream_events(self, path: str, params: JSON | None = None, *, method: str = "GET",
                      json: Any = None) -> Iterator[JSON]:
        """The `data:` of each Server-Sent Event of a streaming route (a GET, or a POST with a
        body: `agents.stream_interaction`)."""
        for attempt in range(2):
            try:
                with self.http.stream(method, path, params=params, json=json, timeout=None,
                                      headers={**self.config.headers(),
                                               "Accept": "text/event-stream"}) as response:
                    if response.status_code == 401 and attempt == 0 and \
                            self.config.tokens.refresh_token:
                        self.refresh()
                        continue
                    if response.status_code >= 400:
                        response.read()
                        raise error_from_response(response)
                    for line in response.iter_lines():
                        if (data := _sse_data(line)) is not None:
                            yield data
                    return
            except httpx2.TransportError as exc:
                raise Unreachable(self.config.base_url, str(exc) or type(exc).__name__) from exc


# ---- async --------------------------------------------------------------------------------------
class AsyncWorkflows(AsyncWorkflowService):
    async def execute(self, key: str, inputs: JSON | None = None,
                      idempotency_key: str | None = None) -> models.Execution:
        return await self._call("ExecuteWorkflow", (key,), {"inputs": inputs or {}}, {},
                                headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())})

    async def execution(self, execution_id: str) -> models.Execution:
        return await self.get_execution(execution_id)

    def watch(self, execution_id: str, last_event_id: int = 0) -> AsyncIterator[Any]:
        fields = {"last_event_id": last_event_id} if last_event_id else {}
        return self.watch_execution(execution_id, **fields)

    async def run(self, key: str, inputs: JSON | None = None,
                  wait: bool = True) -> models.Execution:
        execution = await self.execute(key, inputs)
        if not wait:
            return execution
        async for progress in self.watch(execution.id):
            if progress.get("status") in ended_statuses():
                break
        return await self.execution(execution.id)


class AsyncAgents(AsyncAgentService):
    async def interact(self, key: str, message: str, call_id: str = "",
                       context: JSON | None = None, thread_id: str = ""
                       ) -> models.InteractWithAgentResponse:
        return await self.interact_with_agent(key, _interaction(message, call_id, context,
                                                                thread_id))

    def stream(self, key: str, message: str, call_id: str = "", context: JSON | None = None,
               thread_id: str = "") -> AsyncIterator[models.InteractionEvent]:
        """As `Client.agents.stream`, for `async for`."""
        return self.stream_interaction(key, _interaction(message, call_id, context, thread_id))


class AsyncClient(AsyncServices):
    """The asynchronous client: the same methods, awaited."""

    agents: AsyncAgents
    workflows: AsyncWorkflows

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, token: str = "",
                 refresh_token: str = "", api_key: str = "", timeout: float = 30.0,
                 retries: int = 3, on_tokens: Callable[[Tokens], None] | None = None,
                 transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self.config = _Config(base_url.rstrip("/"), Tokens(token, refresh_token), api_key,
                              retries, on_tokens)
        self.http = httpx2.AsyncClient(base_url=self.config.base_url, timeout=timeout,
                                       transport=transport)
        self._bind_services()
        self.agents = AsyncAgents(self)
        self.workflows = AsyncWorkflows(self)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    def resource(self, name: str) -> Any:
        return getattr(self, name)

    @property
    def tokens(self) -> Tokens:
        return self.config.tokens

    async def login(self, email: str, password: str) -> Tokens:
        body = await self.request(*route(f"{_IDENTITY}/Login"),
                                  json={"email": email, "password": password}, auth=False)
        self.config.set_tokens(body)
        return self.config.tokens

    async def refresh(self) -> Tokens:
        if not self.config.tokens.refresh_token:
            raise Unauthenticated(401, "UNAUTHENTICATED", "no refresh token; log in again")
        body = await self.request(*route(f"{_IDENTITY}/Refresh"),
                                  json={"refresh_token": self.config.tokens.refresh_token},
                                  auth=False)
        self.config.set_tokens(body)
        return self.config.tokens

    async def me(self) -> models.User:
        return await self.identity.get_me()

    def live_url(self, path: str) -> str:
        return "ws" + self.config.base_url.removeprefix("http") + path

    async def live(self, path: str, after: int | None = None) -> AsyncIterator[JSON]:
        """The messages of a live WebSocket (`/ws/<execution id>`, `/ws/calls`, ...), each
        `{type, seq, payload}`, until the server closes it."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosedOK

        url = self.live_url(path) + (f"?after={after}" if after is not None else "")
        headers = {k: v for k, v in self.config.headers().items() if k != "Accept"}
        async with connect(url, additional_headers=headers) as socket:
            try:
                async for text in socket:
                    yield json.loads(text)
            except ConnectionClosedOK:
                return

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: JSON | None = None, headers: dict[str, str] | None = None,
                      auth: bool = True) -> Any:
        response = await self._send(method, path, json=json, params=params, headers=headers,
                                    auth=auth)
        if response.status_code == 401 and auth and self.config.tokens.refresh_token:
            await self.refresh()
            response = await self._send(method, path, json=json, params=params, headers=headers)
        return _result(response)

    async def _send(self, method: str, path: str, *, json: Any = None,
                    params: JSON | None = None, headers: dict[str, str] | None = None,
                    auth: bool = True) -> httpx2.Response:
        retryable = self.config.retryable(method, headers)
        all_headers = {**(self.config.headers() if auth else {}), **(headers or {})}
        attempt = 0
        while True:
            response = None
            try:
                response = await self.http.request(method, path, json=json, params=params,
                                                   headers=all_headers)
                if response.status_code not in RETRY_STATUS or not retryable:
                    return response
            except httpx2.TransportError as exc:
                if not retryable or attempt >= self.config.retries:
                    raise Unreachable(self.config.base_url, str(exc) or type(exc).__name__) \
                        from exc
            if attempt >= self.config.retries:
                return response
            await asyncio.sleep(_backoff(attempt, response))
            attempt += 1

    async def iterate(self, path: str, page_size: int = 100, **params: Any) -> AsyncIterator[JSON]:
        page = 1
        while True:
            body = await self.request("GET", path, params={**params, "page": page,
                                                           "page_size": page_size})
            for item in body.get("items", []):
                yield item
            if page >= int(body.get("pages") or 1):
                return
            page += 1

    async def stream_events(self, path: str, params: JSON | None = None, *, method: str = "GET",
                            json: Any = None) -> AsyncIterator[JSON]:
        """The `data:` of each Server-Sent Event of a streaming route (a GET, or a POST with a
        body)."""
        try:
            async with self.http.stream(method, path, params=params, json=json, timeout=None,
                                        headers={**self.config.headers(),
                                                 "Accept": "text/event-stream"}) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_from_response(response)
                async for line in response.aiter_lines():
                    if (data := _sse_data(line)) is not None:
                        yield data
        except httpx2.TransportError as exc:
            raise Unreachable(self.config.base_url, str(exc) or type(exc).__name__) from exc
