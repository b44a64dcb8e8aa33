"""The WebSocket listener of the live service (on `AGENTMESH_LIVE_WS_PORT`, which the gateway
routes `/ws/...` to after authenticating the upgrade) and what its sockets share: the bus, the
tickets, the per-tenant quota and the revocation list. The handshake decides who, what and
whether they may; each accepted socket then runs its stream (mesh/live/stream.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import grpc
from google.protobuf import json_format
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from mesh.live import stream
from mesh.live.routes import Identity, Route, route_of
from mesh.live.tickets import Tickets
from mesh.runtime import events
from mesh.runtime.context import (CORRELATION_HEADER, SCOPES_HEADER, SESSION_HEADER,
                                  TENANT_HEADER, TOKEN_IAT_HEADER, USER_HEADER)
from mesh.runtime.service import Runtime

log = logging.getLogger("mesh.live")
WRITE_LIMIT = 64 * 1024  # bytes websockets buffers before a send waits for the client
CLOSE_UNAVAILABLE = 1011
CLOSE_REVOKED = 4401  # the socket's access token was revoked


def _envelope(status: int, error: str, message: str, correlation_id: str,
              details: dict | None = None) -> Response:
    body = json.dumps({"error": error, "message": message, "details": details or {},
                       "correlation_id": correlation_id, "request_id": correlation_id,
                       "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                       ("Connection", "close")])
    return Response(status, HTTPStatus(status).phrase, headers, body)


class Hub:
    """The WebSocket listener and what its sockets share (bus, tickets, peers, quota)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.bus = events.bus(self.settings)
        self.tickets = Tickets(self.bus if isinstance(self.bus, events.NatsBus) else None)
        self.server = None
        self._revoker: asyncio.Task | None = None
        self.sockets: set[ServerConnection] = set()
        # Per tenant, the sockets accepted by this replica (from the handshake on): the quota
        # AGENTMESH_LIVE_MAX_SOCKETS_PER_TENANT counts them.
        self.by_tenant: dict[str, set[ServerConnection]] = {}

    async def start(self) -> None:
        port = self.settings.live_ws_port
        self.server = await serve(self.handle, self.settings.host, port,
                                  process_request=self.authenticate, max_size=64 * 1024,
                                  max_queue=16, write_limit=WRITE_LIMIT, close_timeout=10,
                                  ping_interval=20, ping_timeout=20)
        bound = self.server.sockets[0].getsockname()[1]
        log.info("live: WebSocket listener on %s:%s", self.settings.host, bound)
        self._revoker = asyncio.ensure_future(self._close_revoked())

    async def _close_revoked(self) -> None:
        """A socket lives as long as its client wants, its token does not: once the token is
        revoked (logout, user deleted, deactivated or re-roled), the socket is closed as soon
        as the process's revocation list has the revocation (`RevocationGuard.changed`), as a
        REST call with that token would be refused."""
        revocations = self.runtime.revocations
        if revocations is None:
            return
        seen = revocations.generation
        while True:
            seen = await revocations.changed(seen)
            for ws in list(self.sockets):
                await self._close_if_revoked(ws)

    async def _close_if_revoked(self, ws: ServerConnection) -> None:
        revocations = self.runtime.revocations
        if revocations is not None and revocations.current.refuses(ws.watch[1].token_metadata()):
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_REVOKED, "the access token was revoked; sign in again")

    async def stop(self) -> None:
        if self._revoker is not None:
            self._revoker.cancel()
        if self.server is not None:
            self.server.close(close_connections=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)

    # -- the handshake: who, what, and may they ---------------------------------------------
    async def authenticate(self, connection: ServerConnection, request: Request):
        headers = request.headers
        correlation = headers.get(CORRELATION_HEADER, "")
        route = route_of(request.path)
        if route is None:
            return _envelope(404, "NOT_FOUND", "no such live stream", correlation)
        query = parse_qs(urlsplit(request.path).query)
        tenant = headers.get(TENANT_HEADER, "")
        if tenant:  # verified by the gateway (JWT or API key); client copies are removed there
            scopes = headers.get(SCOPES_HEADER, "").replace(",", " ").split()
            identity = Identity(tenant, headers.get(USER_HEADER, ""), frozenset(scopes),
                                correlation, headers.get(TOKEN_IAT_HEADER, ""),
                                headers.get(SESSION_HEADER, ""))
        elif query.get("ticket"):
            found = await self.tickets.redeem(query["ticket"][0])
            if found is None:
                return _envelope(401, "UNAUTHENTICATED", "the ticket is unknown, used or "
                                 "expired; get a new one from POST /api/v1/live/tickets",
                                 correlation)
            identity = Identity(found["tenant_id"], found["user_id"],
                                frozenset(found["scopes"]), correlation,
                                found.get("token_iat", ""), found.get("session_id", ""))
        else:
            return _envelope(401, "UNAUTHENTICATED", "send a bearer token, an API key or a "
                             "ticket", correlation)
        revocations = self.runtime.revocations
        if revocations is not None and revocations.current.refuses(identity.token_metadata()):
            return _envelope(401, "UNAUTHENTICATED", "the access token was revoked; sign in "
                             "again", correlation)
        if not identity.has_scope(route.scope):
            return _envelope(403, "PERMISSION_DENIED", f"this stream needs scope {route.scope}",
                             correlation)
        after_text = (query.get("after") or [""])[0]
        if after_text and not after_text.isdigit():
            return _envelope(400, "INVALID_ARGUMENT", "after: a sequence number (digits)",
                             correlation)
        try:
            state = await self.current_state(route, identity)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return _envelope(404, "NOT_FOUND", exc.details() or "not found", correlation)
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                return _envelope(403, "PERMISSION_DENIED", exc.details() or "", correlation)
            log.warning("live: state of %s unavailable: %s", route, exc)
            return _envelope(503, "UNAVAILABLE", "the service is unavailable; retry later",
                             correlation)
        # No await from here to the end: the count and the reservation cannot interleave with
        # another handshake of the same tenant.
        refused = self._reserve(connection, identity.tenant_id, correlation)
        if refused is not None:
            return refused
        connection.watch = (route, identity, int(after_text) if after_text else None, state)
        return None

    def _reserve(self, connection: ServerConnection, tenant: str,
                 correlation: str) -> Response | None:
        """Counts the socket against its tenant's quota, or the 429 that refuses it."""
        limit = self.settings.live_max_sockets_per_tenant
        open_ = self.by_tenant.setdefault(tenant, set())
        for gone in [c for c in open_ if c.state is State.CLOSED or
                     (c.transport is not None and c.transport.is_closing())]:
            open_.discard(gone)  # a handshake that failed after it was counted
        if len(open_) >= limit:
            log.info("live: tenant %s is at its quota of %d WebSockets", tenant, limit)
            return _envelope(429, "RESOURCE_EXHAUSTED", f"the tenant has {limit} WebSockets "
                             "open, its quota (AGENTMESH_LIVE_MAX_SOCKETS_PER_TENANT); close "
                             "one first", correlation,
                             {"reason": "WEBSOCKET_QUOTA_EXCEEDED", "limit": limit})
        open_.add(connection)
        return None

    def _release(self, connection: ServerConnection, tenant: str) -> None:
        open_ = self.by_tenant.get(tenant)
        if open_ is not None:
            open_.discard(connection)
            if not open_:
                self.by_tenant.pop(tenant, None)

    async def current_state(self, route: Route, identity: Identity) -> dict:
        """What the owning service answers now, as the caller (so another tenant's id is
        NOT_FOUND, as it is over REST)."""
        peers, metadata = self.runtime.peers, identity.metadata()

        def as_json(message) -> dict:
            return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                             always_print_fields_with_no_presence=True)
        if route.kind == "execution" and route.key:
            # The first message of the watch stream: the same shape (ExecutionProgress) as the
            # `execution.progress` events that follow it.
            stub = peers.stub(workflows_pb2_grpc.WorkflowServiceStub)
            call = stub.WatchExecution(
                workflows_pb2.WatchExecutionRequest(execution_id=route.key), metadata=metadata)
            try:
                async for progress in call:
                    return as_json(progress)
            finally:
                call.cancel()
            raise RuntimeError(f"the watch of execution {route.key} ended without a state")
        if route.kind == "call" and route.key:
            stub = peers.stub(agents_pb2_grpc.CallServiceStub)
            return as_json(await stub.GetCall(agents_pb2.GetCallRequest(call_id=route.key),
                                              metadata=metadata))
        if route.kind == "call":
            stub = peers.stub(agents_pb2_grpc.CallServiceStub)
            active = await stub.ListActiveCalls(agents_pb2.ListActiveCallsRequest(page_size=100),
                                                metadata=metadata)
            return {"active_calls": [as_json(c) for c in active.items]}
        return {"tenant_id": identity.tenant_id}

    # -- one socket ----------------------------------------------------------------------------
    async def handle(self, ws: ServerConnection) -> None:
        route, identity, after, state = ws.watch
        queue = stream.Outbox()
        self.sockets.add(ws)
        # A revocation that arrived during the handshake (after its check) has been announced
        # already: look again now that the socket is one of those checked at each change.
        revocations = self.runtime.revocations
        if revocations is not None and revocations.current.refuses(identity.token_metadata()):
            self.sockets.discard(ws)
            self._release(ws, identity.tenant_id)
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_REVOKED, "the access token was revoked; sign in again")
            return
        sender = asyncio.ensure_future(stream.send(ws, queue,
                                                    self.settings.live_send_timeout_seconds))
        reader = asyncio.ensure_future(stream.read(ws, queue))
        pump = asyncio.ensure_future(stream.pump(self.bus, route, identity, after, state,
                                                 queue))
        try:
            done, _ = await asyncio.wait({sender, reader, pump},
                                         return_when=asyncio.FIRST_COMPLETED)
            if sender in done and isinstance(sender.exception(), TimeoutError):
                await stream.close(ws, sender, stream.CLOSE_SLOW, stream.SLOW_REASON)
            elif pump in done and pump.exception() is None:
                code, reason = pump.result()
                if code == 1000:  # the stream ended: let the client have every message first
                    await queue.put(None)
                    with contextlib.suppress(Exception):
                        await sender
                await stream.close(ws, sender, code, reason)
            elif pump in done:
                log.warning("live: socket of %s failed: %r", route, pump.exception())
                await stream.close(ws, sender, CLOSE_UNAVAILABLE, "event stream failed")
        finally:
            for task in (sender, reader, pump):
                task.cancel()
            await asyncio.gather(sender, reader, pump, return_exceptions=True)
            self.sockets.discard(ws)
            self._release(ws, identity.tenant_id)
