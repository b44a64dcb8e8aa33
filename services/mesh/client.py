"""The Python client of Agent Mesh: the REST API with httpx, sync and async.

    from mesh.client import Client

    with Client("http://127.0.0.1:8080") as mesh:
        mesh.login("you@example.com", "change-me-now")
        agent = mesh.agents.create({"name": "helper", "model_id": model["id"]})
        execution = mesh.workflows.run("report", {"topic": "durability"}, wait=True)

Why REST and not the generated gRPC stubs: REST is what the gateway exposes to everyone, with
the same authentication, rate limits and error envelope; the JSON is the API's own (proto field
names), so what the client returns is exactly what the docs and `curl` show; and it needs only
httpx, not grpcio, in a user's program.

What it does for you: sends the bearer token and refreshes it once on a 401 when it has a
refresh token (`on_tokens` is told the new pair, so the CLI can store it); retries idempotent
calls (GET, PUT, DELETE, and POSTs given an `Idempotency-Key`) on connection errors, 502, 503,
504 and 429 with backoff; turns every error into `ApiError` with the envelope's `error`,
`message`, `details` and `correlation_id`; iterates over every page of a list (`iterate`);
follows an execution over Server-Sent Events (`workflows.watch`) or a WebSocket
(`live_url` + any WebSocket client; `AsyncClient.live` with `websockets`).

Every REST path it calls is read from the contract the package ships (`mesh.contract`: each
RPC's `google.api.http` binding), looked up by RPC: a path is written only in the proto.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

JSON = dict[str, Any]
RETRY_STATUS = {429, 502, 503, 504}
IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}



@dataclass(frozen=True)
class Collection:
    """A collection of the API as the contract names it: its proto service and the noun of its
    RPCs (`Agent`: ListAgents, CreateAgent, GetAgent, UpdateAgent, DeleteAgent, ...)."""

    service: str  # agentmesh.agents.v1.AgentService
    noun: str

    def rpc(self, verb: str) -> str:
        """The RPC of a verb: `List` -> `<service>/ListAgents`, `Get` -> `<service>/GetAgent`."""
        return f"{self.service}/{verb}{self.noun}{'s' if verb == 'List' else ''}"


# The resources the CLI manages: name -> collection.
RESOURCES = {
    "agents": Collection("agentmesh.agents.v1.AgentService", "Agent"),
    "tools": Collection("agentmesh.tools.v1.ToolService", "Tool"),
    "workflows": Collection("agentmesh.workflows.v1.WorkflowService", "Workflow"),
    "prompts": Collection("agentmesh.masterdata.v1.PromptService", "Prompt"),
    "models": Collection("agentmesh.masterdata.v1.ModelService", "Model"),
    "secrets": Collection("agentmesh.masterdata.v1.SecretService", "Secret"),
    "templates": Collection("agentmesh.templates.v1.TemplateService", "Template"),
}
CALLS = Collection("agentmesh.agents.v1.CallService", "Call")
_IDENTITY = "agentmesh.identity.v1.IdentityService"
_WORKFLOWS = RESOURCES["workflows"].service
_AGENTS = RESOURCES["agents"].service
# A path variable of a binding: `{agent_id}` or `{path=**}`.
_VARIABLE = re.compile(r"\{[^}]*\}")


@functools.cache
def _bindings() -> dict[str, tuple[str, str]]:
    """`<package>.<Service>/<Rpc>` -> (HTTP method, path template) of its first REST binding,
    from the descriptor set of the installed `agentmesh` package (read once, when the first
    call is made)."""
    from mesh import contract

    return {f"{rpc.full_service}/{rpc.name}": (rpc.bindings[0].method, rpc.bindings[0].template)
            for rpc in contract.default().rpcs if rpc.bindings}


@functools.cache
def ended_statuses() -> frozenset[str]:
    """The execution statuses after which nothing more happens (the contract's `final`)."""
    from mesh import contract

    return contract.default().final_values("agentmesh.workflows.v1.ExecutionStatus")


def route(rpc: str, *values: str) -> tuple[str, str]:
    """(HTTP method, path) of an RPC's REST route, its path variables filled with `values` in
    order: `route("agentmesh.agents.v1.AgentService/GetAgent", "triage")` is
    `("GET", "/api/v1/agents/triage")`. An RPC without a route is the 405 the gateway answers."""
    try:
        method, template = _bindings()[rpc]
    except KeyError:
        raise ApiError(405, "METHOD_NOT_ALLOWED", f"{rpc} has no REST route") from None
    filled = iter(values)
    return method, _VARIABLE.sub(lambda _: str(next(filled)), template)


class ApiError(Exception):
    """A non-2xx answer, with the API's error envelope."""

    def __init__(self, status: int, error: str, message: str, details: JSON | None = None,
                 correlation_id: str = "") -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status, self.error, self.message = status, error, message
        self.details = details or {}
        self.correlation_id = correlation_id

    @classmethod
    def from_response(cls, response: httpx.Response) -> "ApiError":
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return cls(response.status_code, str(body.get("error") or response.reason_phrase),
                   str(body.get("message") or response.text[:200]), body.get("details") or {},
                   str(body.get("correlation_id") or response.headers.get("x-correlation-id", "")))


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

    def set_tokens(self, body: JSON) -> None:
        self.tokens = Tokens(body.get("access_token", ""),
                             body.get("refresh_token", "") or self.tokens.refresh_token)
        if self.on_tokens:
            self.on_tokens(self.tokens)


def _backoff(attempt: int, response: httpx.Response | None) -> float:
    after = response.headers.get("retry-after", "") if response is not None else ""
    if after.isdigit():
        return min(float(after), 10.0)
    return min(0.2 * 2 ** attempt, 3.0)


def _result(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise ApiError.from_response(response)
    if not response.content:
        return {}
    return response.json()


def _sse_data(lines: Iterator[str]) -> Iterator[JSON]:
    for line in lines:
        if line.startswith("data:"):
            yield json.loads(line[5:])


class _Routes:
    """A collection's routes: the RPC of each verb, looked up in the contract."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection

    def _route(self, verb: str, *values: str) -> tuple[str, str]:
        return route(self.collection.rpc(verb), *values)

    @property
    def path(self) -> str:
        """The collection's path (its List route)."""
        return self._route("List")[1]


# ---- sync ---------------------------------------------------------------------------------------
class Resource(_Routes):
    """One collection of the API (`client.agents`, `client.workflows`, ...)."""

    def __init__(self, client: "Client", collection: Collection) -> None:
        super().__init__(collection)
        self.client = client

    def list(self, **params: Any) -> JSON:
        """One page: `{items, total, page, page_size, pages}`."""
        return self.client.request(*self._route("List"), params=params)

    def iterate(self, page_size: int = 100, **params: Any) -> Iterator[JSON]:
        """Every item over every page."""
        return self.client.iterate(self.path, page_size=page_size, **params)

    def get(self, key: str) -> JSON:
        return self.client.request(*self._route("Get", key))

    def create(self, body: JSON, idempotency_key: str | None = None) -> JSON:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.client.request(*self._route("Create"), json=body, headers=headers)

    def update(self, key: str, body: JSON, update_mask: str = "") -> JSON:
        """Changes the fields `body` carries (or exactly those `update_mask` names), with PUT
        as every update route takes it."""
        params = {"update_mask": update_mask} if update_mask else None
        return self.client.request(*self._route("Update", key), json=body, params=params)

    def delete(self, key: str) -> JSON:
        return self.client.request(*self._route("Delete", key))


class Workflows(Resource):
    def activate(self, key: str) -> JSON:
        """Makes it executable."""
        return self.client.request(*self._route("Activate", key), json={})

    def execute(self, key: str, inputs: JSON | None = None,
                idempotency_key: str | None = None) -> JSON:
        """Starts an execution (QUEUED); retried safely thanks to its Idempotency-Key."""
        return self.client.request(
            *route(f"{_WORKFLOWS}/ExecuteWorkflow", key), json={"inputs": inputs or {}},
            headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())})

    def execution(self, execution_id: str) -> JSON:
        return self.client.request(*route(f"{_WORKFLOWS}/GetExecution", execution_id))

    def watch(self, execution_id: str, last_event_id: int = 0) -> Iterator[JSON]:
        """The execution's progress as it changes (Server-Sent Events), ending with its final
        state; resumes after `last_event_id`."""
        _, path = route(f"{_WORKFLOWS}/WatchExecution", execution_id)
        params = {"last_event_id": last_event_id} if last_event_id else None
        yield from self.client.stream_events(path, params=params)

    def run(self, key: str, inputs: JSON | None = None, wait: bool = True) -> JSON:
        """Executes the workflow; with `wait`, returns the execution once it has ended."""
        execution = self.execute(key, inputs)
        if not wait:
            return execution
        for progress in self.watch(execution["id"]):
            if progress.get("status") in ended_statuses():
                break
        return self.execution(execution["id"])


def _interaction(message: str, call_id: str, context: JSON | None) -> JSON:
    body: JSON = {"message": message}
    if call_id:
        body["call_id"] = call_id
    if context:
        body["context"] = context
    return body


class Agents(Resource):
    def activate(self, key: str) -> JSON:
        """Makes it able to interact."""
        return self.client.request(*self._route("Activate", key), json={})

    def interact(self, key: str, message: str, call_id: str = "",
                 context: JSON | None = None) -> JSON:
        return self.client.request(*route(f"{_AGENTS}/InteractWithAgent", key),
                                   json=_interaction(message, call_id, context))


class Client:
    """A synchronous client; use as a context manager or call `close()`."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, token: str = "",
                 refresh_token: str = "", api_key: str = "", timeout: float = 30.0,
                 retries: int = 3, on_tokens: Callable[[Tokens], None] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = _Config(base_url.rstrip("/"), Tokens(token, refresh_token), api_key,
                              retries, on_tokens)
        self.http = httpx.Client(base_url=self.config.base_url, timeout=timeout,
                                 transport=transport)
        self.agents = Agents(self, RESOURCES["agents"])
        self.workflows = Workflows(self, RESOURCES["workflows"])
        self.tools = Resource(self, RESOURCES["tools"])
        self.prompts = Resource(self, RESOURCES["prompts"])
        self.models = Resource(self, RESOURCES["models"])
        self.secrets = Resource(self, RESOURCES["secrets"])
        self.templates = Resource(self, RESOURCES["templates"])
        self.calls = Resource(self, CALLS)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def resource(self, name: str) -> Resource:
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
            raise ApiError(401, "UNAUTHENTICATED", "no refresh token; log in again")
        body = self.request(*route(f"{_IDENTITY}/Refresh"),
                            json={"refresh_token": self.config.tokens.refresh_token}, auth=False)
        self.config.set_tokens(body)
        return self.config.tokens

    def me(self) -> JSON:
        return self.request(*route(f"{_IDENTITY}/GetMe"))

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
              headers: dict[str, str] | None = None, auth: bool = True) -> httpx.Response:
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
            except httpx.TransportError:
                if not retryable or attempt >= self.config.retries:
                    raise
            if attempt >= self.config.retries:
                return response
            time.sleep(_backoff(attempt, response))
            attempt += 1

    def iterate(self, path: str, page_size: int = 100, **params: Any) -> Iterator[JSON]:
        page = 1
        while True:
            body = self.request("GET", path, params={**params, "page": page,
                                                     "page_size": page_size})
            yield from body.get("items", [])
            if page >= int(body.get("pages") or 1):
                return
            page += 1

    def stream_events(self, path: str, params: JSON | None = None) -> Iterator[JSON]:
        """The `data:` of each Server-Sent Event of a streaming route."""
        for attempt in range(2):
            with self.http.stream("GET", path, params=params, timeout=None,
                                  headers={**self.config.headers(),
                                           "Accept": "text/event-stream"}) as response:
                if response.status_code == 401 and attempt == 0 and \
                        self.config.tokens.refresh_token:
                    self.refresh()
                    continue
                if response.status_code >= 400:
                    response.read()
                    raise ApiError.from_response(response)
                yield from _sse_data(response.iter_lines())
                return


# ---- async --------------------------------------------------------------------------------------
class AsyncResource(_Routes):
    def __init__(self, client: "AsyncClient", collection: Collection) -> None:
        super().__init__(collection)
        self.client = client

    async def list(self, **params: Any) -> JSON:
        return await self.client.request(*self._route("List"), params=params)

    def iterate(self, page_size: int = 100, **params: Any) -> AsyncIterator[JSON]:
        return self.client.iterate(self.path, page_size=page_size, **params)

    async def get(self, key: str) -> JSON:
        return await self.client.request(*self._route("Get", key))

    async def create(self, body: JSON, idempotency_key: str | None = None) -> JSON:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.client.request(*self._route("Create"), json=body, headers=headers)

    async def update(self, key: str, body: JSON, update_mask: str = "") -> JSON:
        params = {"update_mask": update_mask} if update_mask else None
        return await self.client.request(*self._route("Update", key), json=body, params=params)

    async def delete(self, key: str) -> JSON:
        return await self.client.request(*self._route("Delete", key))


class AsyncWorkflows(AsyncResource):
    async def activate(self, key: str) -> JSON:
        return await self.client.request(*self._route("Activate", key), json={})

    async def execute(self, key: str, inputs: JSON | None = None,
                      idempotency_key: str | None = None) -> JSON:
        return await self.client.request(
            *route(f"{_WORKFLOWS}/ExecuteWorkflow", key), json={"inputs": inputs or {}},
            headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())})

    async def execution(self, execution_id: str) -> JSON:
        return await self.client.request(*route(f"{_WORKFLOWS}/GetExecution", execution_id))

    async def watch(self, execution_id: str, last_event_id: int = 0) -> AsyncIterator[JSON]:
        _, path = route(f"{_WORKFLOWS}/WatchExecution", execution_id)
        params = {"last_event_id": last_event_id} if last_event_id else None
        async for item in self.client.stream_events(path, params=params):
            yield item

    async def run(self, key: str, inputs: JSON | None = None, wait: bool = True) -> JSON:
        execution = await self.execute(key, inputs)
        if not wait:
            return execution
        async for progress in self.watch(execution["id"]):
            if progress.get("status") in ended_statuses():
                break
        return await self.execution(execution["id"])


class AsyncAgents(AsyncResource):
    async def activate(self, key: str) -> JSON:
        return await self.client.request(*self._route("Activate", key), json={})

    async def interact(self, key: str, message: str, call_id: str = "",
                       context: JSON | None = None) -> JSON:
        return await self.client.request(*route(f"{_AGENTS}/InteractWithAgent", key),
                                         json=_interaction(message, call_id, context))


class AsyncClient:
    """The asynchronous client: the same methods, awaited."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, token: str = "",
                 refresh_token: str = "", api_key: str = "", timeout: float = 30.0,
                 retries: int = 3, on_tokens: Callable[[Tokens], None] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = _Config(base_url.rstrip("/"), Tokens(token, refresh_token), api_key,
                              retries, on_tokens)
        self.http = httpx.AsyncClient(base_url=self.config.base_url, timeout=timeout,
                                      transport=transport)
        self.agents = AsyncAgents(self, RESOURCES["agents"])
        self.workflows = AsyncWorkflows(self, RESOURCES["workflows"])
        self.tools = AsyncResource(self, RESOURCES["tools"])
        self.prompts = AsyncResource(self, RESOURCES["prompts"])
        self.models = AsyncResource(self, RESOURCES["models"])
        self.secrets = AsyncResource(self, RESOURCES["secrets"])
        self.templates = AsyncResource(self, RESOURCES["templates"])
        self.calls = AsyncResource(self, CALLS)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

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
            raise ApiError(401, "UNAUTHENTICATED", "no refresh token; log in again")
        body = await self.request(*route(f"{_IDENTITY}/Refresh"),
                                  json={"refresh_token": self.config.tokens.refresh_token},
                                  auth=False)
        self.config.set_tokens(body)
        return self.config.tokens

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
                    auth: bool = True) -> httpx.Response:
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
            except httpx.TransportError:
                if not retryable or attempt >= self.config.retries:
                    raise
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

    async def stream_events(self, path: str, params: JSON | None = None) -> AsyncIterator[JSON]:
        async with self.http.stream("GET", path, params=params, timeout=None,
                                    headers={**self.config.headers(),
                                             "Accept": "text/event-stream"}) as response:
            if response.status_code >= 400:
                await response.aread()
                raise ApiError.from_response(response)
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    yield json.loads(line[5:])
