"""The MCP listener of the integration service: the official SDK's Streamable HTTP transport
(an ASGI app, served by uvicorn inside the service's event loop) on `AGENTMESH_MCP_PORT`, which
the gateway routes `/api/v1/mcp` to after authenticating the request (docs/mcp.md). The
handlers are mesh/integration/mcp_server.py's.

Every request stands alone, so any replica of the integration service serves any request (the
gateway balances over them): requests of the SDK's current protocol revision are self-contained
by design, and those of the handshake revisions (2025-*) are served by the SDK's stateless mode.
What a handshake client would lose with it is kept here, in `Sessions`:

* its name: the answer to `initialize` carries an `Mcp-Session-Id` that holds the client's name
  (a label the client chose, not a secret), which the client sends with every later request;
* the list-changed notifications: its GET stream (the transport's server-to-client channel)
  is served here. While it is open, the caller's tools and prompts are listed every
  `AGENTMESH_MCP_LIST_POLL_SECONDS` as the caller, and `notifications/tools/list_changed` or
  `notifications/prompts/list_changed` is sent when what it may see changed (an agent
  deployed, a workflow activated, a tool retired, a prompt added). The stream ends after
  STREAM_SECONDS, or when its credential stops working (a revoked token), and the client opens
  it again through the gateway, which authenticates it anew. A DELETE (the end of a session)
  has nothing to end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time

from typing import TYPE_CHECKING

import grpc
import uvicorn
from starlette.datastructures import Headers

from mesh.runtime.context import MCP_CLIENT_HEADER
from mesh.runtime.peers import Peers
from mesh.runtime.settings import Settings

if TYPE_CHECKING:
    from mesh.integration.mcp_server import Identity, MeshMCP

log = logging.getLogger("mesh.integration.mcp")
PATH = "/api/v1/mcp"
SESSION_HEADER = b"mcp-session-id"
SESSION_PREFIX = "amc."
# A GET stream ends after this long; the client reopens it (authenticated again).
STREAM_SECONDS = 600.0
MAX_BODY = 4 * 1024 * 1024  # the gateway caps bodies at 1 MiB before this


class _Server(uvicorn.Server):
    """uvicorn inside a process that owns its signals: the gRPC server's graceful SIGTERM
    (mesh.runtime.server) stops this listener through `MCPListener.stop`."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    async def main_loop(self) -> None:
        # uvicorn ticks ten times a second to look at should_exit (and refreshes its Date
        # header every tenth tick): the idle mesh's most frequent timer. Here a tick a second
        # keeps the header fresh, and `exit` wakes the loop at once.
        self.exiting = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exiting.wait(), 1.0)

    def exit(self) -> None:
        self.should_exit = True
        if getattr(self, "exiting", None) is not None:
            self.exiting.set()


def session_id(client: str) -> str:
    """A session id holding the client's name (visible ASCII, as the transport requires)."""
    kept = client.encode()[:100].decode(errors="ignore").encode()  # whole characters
    name = base64.urlsafe_b64encode(kept).decode().rstrip("=")
    return f"{SESSION_PREFIX}{name}.{secrets.token_hex(8)}"


def client_of(session: str) -> str:
    """The client's name a session id holds ("" for one this listener did not give)."""
    if not session.startswith(SESSION_PREFIX):
        return ""
    encoded = session[len(SESSION_PREFIX):].rsplit(".", 1)[0]
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()[:100]
    except (ValueError, UnicodeDecodeError):
        return ""


def _initialize_client(body: bytes) -> str | None:
    """The client's name when the body is an `initialize` request, else None."""
    try:
        message = json.loads(body or b"null")
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("method") != "initialize":
        return None
    params = message.get("params") if isinstance(message.get("params"), dict) else {}
    info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else {}
    name = info.get("name")
    return name if isinstance(name, str) and name else "mcp"


def _with_header(scope, name: bytes, value: str | None):
    headers = [(k, v) for k, v in scope["headers"] if k not in (name, SESSION_HEADER)]
    if value:
        headers.append((name, value.encode("utf-8", "replace")))
    return {**scope, "headers": headers}


class Sessions:
    """ASGI middleware before the SDK's transport: session ids that carry the client's name, and
    the GET stream of list-changed notifications (the module's docstring)."""

    def __init__(self, app, mcp: MeshMCP, poll_seconds: float) -> None:
        self.app = app
        self.mcp = mcp
        self.poll_seconds = poll_seconds

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = client_of(headers.get("mcp-session-id", ""))
        method = scope["method"]
        if method == "DELETE":
            await _answer(send, 204)
            return
        if method == "GET":
            if "text/event-stream" not in headers.get("accept", ""):
                await _answer(send, 406, "Not Acceptable: accept text/event-stream")
                return
            await self.changes(scope, receive, send, client or "mcp")
            return
        if method != "POST":
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                await _answer(send, 413, "the request body is too large")
                return
        given = _initialize_client(body) if not client else None
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def labelled(message):
            if given is not None and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (SESSION_HEADER, session_id(given).encode())]}
            await send(message)

        await self.app(_with_header(scope, MCP_CLIENT_HEADER.encode(), client or given),
                       replay, labelled)

    async def changes(self, scope, receive, send, client: str) -> None:
        """The server-to-client stream: list-changed notifications while it is open."""
        from mesh.integration.mcp_server import Identity

        identity = Identity.of(Headers(scope=scope))
        if not identity.tenant_id:
            await _answer(send, 401, "no verified tenant on this request")
            return
        try:
            seen = await self._listing(identity, client)
        except grpc.aio.AioRpcError as exc:
            await _answer(send, 403 if exc.code() in (grpc.StatusCode.UNAUTHENTICATED,
                                                      grpc.StatusCode.PERMISSION_DENIED)
                          else 503, exc.details() or "the listing failed")
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform"),
            (b"x-accel-buffering", b"no")]})
        await send({"type": "http.response.body", "body": b": listening\n\n", "more_body": True})
        gone = asyncio.ensure_future(_disconnected(receive))
        ends = time.monotonic() + STREAM_SECONDS
        try:
            while time.monotonic() < ends:
                await asyncio.wait({gone}, timeout=self.poll_seconds)
                if gone.done():
                    return
                try:
                    now = await self._listing(identity, client)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in (grpc.StatusCode.UNAUTHENTICATED,
                                      grpc.StatusCode.PERMISSION_DENIED):
                        break  # the credential no longer works: the client comes back anew
                    continue
                events = [f"notifications/{kind}/list_changed"
                          for kind, before, after in (("tools", seen[0], now[0]),
                                                      ("prompts", seen[1], now[1]))
                          if before != after]
                seen = now
                chunk = "".join("event: message\ndata: " + json.dumps(
                    {"jsonrpc": "2.0", "method": method}) + "\n\n" for method in events)
                await send({"type": "http.response.body",
                            "body": (chunk or ": ping\n\n").encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()

    async def _listing(self, identity: Identity, client: str) -> tuple[str, str]:
        tools = await self.mcp.tools_for(identity, client)
        prompts = await self.mcp.prompts_for(identity, client)
        return (json.dumps([t.model_dump(mode="json") for t in tools], sort_keys=True),
                json.dumps([p.model_dump(mode="json") for p in prompts], sort_keys=True))


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _answer(send, status: int, text: str = "") -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600,
                                                               "message": text}}).encode() \
        if text else b""
    headers = [(b"content-type", b"application/json")] if body else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MCPListener:
    """uvicorn on AGENTMESH_MCP_PORT. The SDK (some 12 MiB of modules) is loaded with the first
    request, not at start: a mesh nobody connects an MCP client to pays ~2 MiB for the listener
    (docs/budgets.md)."""

    def __init__(self, settings: Settings, peers: Peers) -> None:
        self.settings = settings
        self.peers = peers
        self._app = None
        self._building = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._manager_task: asyncio.Task | None = None
        self.server = _Server(uvicorn.Config(
            self, host=settings.host, port=settings.mcp_port, log_level="warning",
            lifespan="off", access_log=False, timeout_graceful_shutdown=5))
        self._task: asyncio.Task | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != PATH:
            await _answer(send, 404, f"the MCP endpoint is {PATH}")
            return
        await (await self.app())(scope, receive, send)

    async def app(self):
        """The MCP app, built on first use: the SDK's stateless session manager (running until
        the listener stops) behind `Sessions`."""
        if self._app is not None:
            return self._app
        async with self._building:
            if self._app is None:
                from mcp.server.streamable_http_manager import (StreamableHTTPASGIApp,
                                                                StreamableHTTPSessionManager)
                from mcp.server.transport_security import TransportSecuritySettings

                from mesh.integration.mcp_server import MeshMCP

                mcp = MeshMCP(self.peers)
                # Only the gateway reaches this port, and every request is authenticated there
                # (no cookies: a rebinding page has no credential to send), so Host and Origin
                # are not checked here; the gateway's CORS policy applies.
                manager = StreamableHTTPSessionManager(
                    app=mcp.server, stateless=True,
                    security_settings=TransportSecuritySettings(
                        enable_dns_rebinding_protection=False))
                running = asyncio.Event()

                async def run() -> None:
                    async with manager.run():
                        running.set()
                        await self._stopping.wait()

                self._manager_task = asyncio.ensure_future(run())
                await asyncio.wait({self._manager_task, asyncio.ensure_future(running.wait())},
                                   return_when=asyncio.FIRST_COMPLETED)
                if self._manager_task.done():
                    self._manager_task.result()
                self._app = Sessions(StreamableHTTPASGIApp(manager), mcp,
                                     self.settings.mcp_list_poll_seconds)
        return self._app

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self.server.serve())
        for _ in range(200):
            if self.server.started or self._task.done():
                break
            await asyncio.sleep(0.05)
        if self._task.done():
            self._task.result()  # raises why it could not listen
        log.info("integration: MCP listener on %s:%s%s", self.settings.host,
                 self.settings.mcp_port, PATH)

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.exit()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 10)
        self._stopping.set()
        if self._manager_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._manager_task, 5)
