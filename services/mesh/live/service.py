"""The live service: WebSockets that relay the events of executions and agent calls
(docs/live-events.md).

One process serves two listeners: gRPC (`LiveService`: CreateTicket for browsers, the internal
PublishEvent) and the WebSocket listener (`websockets`) on `AGENTMESH_LIVE_WS_PORT`, which the
gateway routes `/ws/...` to after authenticating the upgrade. Events come from the bus of
`mesh.runtime.events` (NATS JetStream, or this process's memory when no NATS is configured).

Per socket: the first message is the current state (read from the owning service as the caller,
which also proves the tenant may see it), then every event in order, each `{type, seq, payload}`.
A client that reconnects with `?after=<seq>` gets the events it missed, as long as the bus still
keeps them (ten minutes on NATS); otherwise it gets the current state again (`"resumed": false`).
`{"type": "ping"}` is answered `{"type": "pong"}`. Every socket has a bounded queue; a client
that does not read fast enough is closed with code 4008 and may resume with its last seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
from google.protobuf import json_format, timestamp_pb2
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.live.v1 import live_pb2, live_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from mesh.runtime import events
from mesh.runtime.context import (CORRELATION_HEADER, SCOPES_HEADER, SESSION_HEADER,
                                  TENANT_HEADER, TOKEN_IAT_HEADER, USER_HEADER, metadata_value,
                                  require_caller)
from mesh.runtime.errors import InvalidArgument
from mesh.runtime.service import Runtime, ServiceDefinition

log = logging.getLogger("mesh.live")
TICKET_SECONDS = 30
QUEUE_MESSAGES = 256  # per socket; past it (or QUEUE_BYTES) the client is dropped (4008)
QUEUE_BYTES = 1024 * 1024
WRITE_LIMIT = 64 * 1024  # bytes websockets buffers before a send waits for the client
CLOSE_SLOW = 4008
SLOW_REASON = "too slow: reconnect with ?after= the last seq"
CLOSE_NOT_FOUND = 4404
CLOSE_UNAVAILABLE = 1011
CLOSE_REVOKED = 4401  # the socket's access token was revoked
ENDED = {"EXECUTION_STATUS_COMPLETED", "EXECUTION_STATUS_FAILED", "EXECUTION_STATUS_CANCELLED"}
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class Identity:
    tenant_id: str
    user_id: str
    scopes: frozenset[str]
    correlation_id: str = ""
    # Of the access token the socket was opened with (none for an API key): checked against
    # the revocation list while the socket stays open.
    token_iat: str = ""
    session_id: str = ""

    def token_metadata(self) -> dict[str, str]:
        if not self.token_iat:
            return {}
        return {TOKEN_IAT_HEADER: self.token_iat, SESSION_HEADER: self.session_id,
                USER_HEADER: self.user_id}

    def has_scope(self, needed: str) -> bool:
        resource = needed.split(":", 1)[0]
        return bool({"*", needed, f"{resource}:*"} & self.scopes)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((TENANT_HEADER, self.tenant_id), (USER_HEADER, self.user_id),
                (SCOPES_HEADER, " ".join(sorted(self.scopes))),
                (CORRELATION_HEADER, self.correlation_id))


@dataclass(frozen=True)
class Route:
    """What a socket watches: `kind` of the bus, one `key` or the whole tenant (None)."""

    kind: str  # "execution" | "call"
    key: str | None
    scope: str


def route_of(path: str) -> Route | None:
    parts = urlsplit(path).path.strip("/").split("/")
    if len(parts) < 2 or parts[0] != "ws" or not all(_ID.match(p) for p in parts[1:]):
        return None
    if parts[1:] == ["executions"]:
        return Route("execution", None, "workflows:read")
    if parts[1:] == ["calls"]:
        return Route("call", None, "calls:read")
    if len(parts) == 3 and parts[1] == "calls":
        return Route("call", parts[2], "calls:read")
    if len(parts) == 2:
        return Route("execution", parts[1], "workflows:read")
    return None


# ---- tickets ----------------------------------------------------------------------------------
class Tickets:
    """Single-use tickets, stored as SHA-256 hashes: in NATS KV (shared by every replica) when a
    bus is configured, else in memory (one live replica)."""

    BUCKET = "agentmesh_live_tickets"

    def __init__(self, nats_bus: events.NatsBus | None) -> None:
        self.nats_bus = nats_bus
        self.memory: dict[str, tuple[float, dict]] = {}
        self._kv = None

    async def _bucket(self):
        if self._kv is None:
            from nats.js import api

            js = await self.nats_bus._connect()
            self._kv = await js.create_key_value(api.KeyValueConfig(
                bucket=self.BUCKET, ttl=TICKET_SECONDS * 2, history=1,
                storage=api.StorageType.MEMORY))
        return self._kv

    async def issue(self, identity: dict) -> tuple[str, float]:
        ticket = "wst_" + secrets.token_urlsafe(32)
        expires = time.time() + TICKET_SECONDS
        key = hashlib.sha256(ticket.encode()).hexdigest()
        value = {**identity, "expires": expires}
        if self.nats_bus is not None:
            await (await self._bucket()).put(key, json.dumps(value).encode())
        else:
            now = time.time()
            for stale in [k for k, (at, _) in self.memory.items() if at < now]:
                del self.memory[stale]
            self.memory[key] = (expires, value)
        return ticket, expires

    async def redeem(self, ticket: str) -> dict | None:
        """The ticket's identity, once: a second use, or one after it expired, finds nothing."""
        key = hashlib.sha256(ticket.encode()).hexdigest()
        if self.nats_bus is not None:
            kv = await self._bucket()
            try:
                entry = await kv.get(key)
                await kv.delete(key, last=entry.revision)  # fails if another use won the race
            except Exception:  # noqa: BLE001 - not found, deleted, or taken by another replica
                return None
            value = json.loads(entry.value) if entry.value else None
        else:
            found = self.memory.pop(key, None)
            value = found[1] if found else None
        if not value or value.get("expires", 0) < time.time():
            return None
        return value


# ---- gRPC -------------------------------------------------------------------------------------
class LiveService(live_pb2_grpc.LiveServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.hub = Hub.for_runtime(runtime)

    async def CreateTicket(self, request, context) -> live_pb2.Ticket:
        caller = require_caller(context)
        ticket, expires = await self.hub.tickets.issue({
            "tenant_id": caller.tenant_id, "user_id": caller.user_id,
            "scopes": sorted(caller.scopes),
            "session_id": metadata_value(context, SESSION_HEADER),
            "token_iat": metadata_value(context, TOKEN_IAT_HEADER)})
        at = timestamp_pb2.Timestamp()
        at.FromDatetime(datetime.fromtimestamp(expires, UTC))
        return live_pb2.Ticket(ticket=ticket, expires_at=at, expires_in=TICKET_SECONDS)

    async def PublishEvent(self, request, context) -> live_pb2.PublishEventResponse:
        if not (events.valid_token(request.tenant_id) and events.valid_token(request.key)
                and request.kind in ("execution", "call") and request.type):
            raise InvalidArgument("tenant_id, kind, key and type are required")
        try:
            payload = json.loads(request.payload_json or "{}")
        except ValueError:
            raise InvalidArgument("payload_json is not JSON") from None
        await self.hub.bus.publish(request.tenant_id, request.kind, request.key, request.type,
                                   payload if isinstance(payload, dict) else {"value": payload})
        return live_pb2.PublishEventResponse()


class _Outbox(asyncio.Queue):
    """A socket's queue, bounded in messages and in bytes: `put_nowait` raises QueueFull past
    either bound, which drops the client."""

    def __init__(self) -> None:
        super().__init__(maxsize=QUEUE_MESSAGES)
        self.size = 0

    def put_nowait(self, item: str | None) -> None:
        if item is not None and self.size + len(item) > QUEUE_BYTES and self.qsize():
            raise asyncio.QueueFull
        super().put_nowait(item)
        self.size += len(item or "")

    def get_nowait(self) -> str | None:
        item = super().get_nowait()
        self.size -= len(item or "")
        return item


# ---- WebSockets -------------------------------------------------------------------------------
def _envelope(status: int, error: str, message: str, correlation_id: str,
              details: dict | None = None) -> Response:
    body = json.dumps({"error": error, "message": message, "details": details or {},
                       "correlation_id": correlation_id, "request_id": correlation_id,
                       "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                       ("Connection", "close")])
    return Response(status, HTTPStatus(status).phrase, headers, body)


def _message(type_: str, seq: int, payload: Any, **extra: Any) -> str:
    return json.dumps({"type": type_, "seq": seq, "payload": payload, **extra},
                      separators=(",", ":"))


class Hub:
    """The WebSocket listener and what its sockets share (bus, tickets, peers)."""

    _instances: dict[int, "Hub"] = {}

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.bus = events.bus(self.settings)
        self.tickets = Tickets(self.bus if isinstance(self.bus, events.NatsBus) else None)
        self.server = None
        self.sockets: set[ServerConnection] = set()
        # Per tenant, the sockets accepted by this replica (from the handshake on): the quota
        # AGENTMESH_LIVE_MAX_SOCKETS_PER_TENANT counts them.
        self.by_tenant: dict[str, set[ServerConnection]] = {}

    @classmethod
    def for_runtime(cls, runtime: Runtime) -> "Hub":
        hub = cls._instances.get(id(runtime))
        if hub is None:
            hub = cls._instances[id(runtime)] = cls(runtime)
        return hub

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
        revoked (logout, user deleted, deactivated or re-roled), the socket is closed within a
        poll of the revocation list, as a REST call with that token would be refused."""
        revocations = self.runtime.revocations
        if revocations is None:
            return
        while True:
            await asyncio.sleep(self.settings.revocation_poll_seconds)
            current = revocations.current
            for ws in list(self.sockets):
                identity = ws.watch[1]
                if current.refuses(identity.token_metadata()):
                    with contextlib.suppress(Exception):
                        await ws.close(CLOSE_REVOKED, "the access token was revoked; sign in again")

    async def stop(self) -> None:
        revoker = getattr(self, "_revoker", None)
        if revoker is not None:
            revoker.cancel()
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

    # -- one socket ---------------------------------------------------------------------------
    async def handle(self, ws: ServerConnection) -> None:
        route, identity, after, state = ws.watch
        queue = _Outbox()
        self.sockets.add(ws)
        sender = asyncio.ensure_future(self._send(ws, queue,
                                                  self.settings.live_send_timeout_seconds))
        reader = asyncio.ensure_future(self._read(ws, queue))
        pump = asyncio.ensure_future(self._pump(route, identity, after, state, queue))
        try:
            done, _ = await asyncio.wait({sender, reader, pump},
                                         return_when=asyncio.FIRST_COMPLETED)
            if sender in done and isinstance(sender.exception(), TimeoutError):
                await self._close(ws, sender, CLOSE_SLOW, SLOW_REASON)
            elif pump in done and pump.exception() is None:
                code, reason = pump.result()
                if code == 1000:  # the stream ended: let the client have every message first
                    await queue.put(None)
                    with contextlib.suppress(Exception):
                        await sender
                await self._close(ws, sender, code, reason)
            elif pump in done:
                log.warning("live: socket of %s failed: %r", route, pump.exception())
                await self._close(ws, sender, CLOSE_UNAVAILABLE, "event stream failed")
        finally:
            for task in (sender, reader, pump):
                task.cancel()
            await asyncio.gather(sender, reader, pump, return_exceptions=True)
            self.sockets.discard(ws)
            self._release(ws, identity.tenant_id)

    @staticmethod
    async def _close(ws: ServerConnection, sender: asyncio.Task, code: int, reason: str) -> None:
        sender.cancel()
        with contextlib.suppress(Exception):
            await ws.close(code, reason)

    @staticmethod
    async def _send(ws: ServerConnection, queue: asyncio.Queue, timeout: float) -> None:
        """Sends in order; a send the client does not take within `timeout` (TCP and the
        gateway's buffers full) raises TimeoutError, which drops the client (4008): with a bus
        that holds events back when this socket is not reading (JetStream's flow control), the
        queue alone would never overflow."""
        while (text := await queue.get()) is not None:
            await asyncio.wait_for(ws.send(text), timeout)

    @staticmethod
    async def _read(ws: ServerConnection, queue: asyncio.Queue) -> None:
        """Answers pings; anything else a client sends is ignored. Returns when it goes.
        A text `ping` is answered with the text `pong` (seed 000's keep-alive), a JSON
        `{"type": "ping"}` with a `pong` message."""
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:
                if text == "ping":
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait("pong")
                    continue
                try:
                    kind = json.loads(text).get("type") if isinstance(text, str) else None
                except (ValueError, AttributeError):
                    kind = None
                if kind == "ping":
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(_message("pong", 0, {}))

    async def _pump(self, route: Route, identity: Identity, after: int | None, state: dict,
                    queue: asyncio.Queue) -> tuple[int, str]:
        """Bus events into the socket's queue; the close code and reason when it should end."""
        def offer(text: str) -> bool:
            try:
                queue.put_nowait(text)
                return True
            except asyncio.QueueFull:
                return False

        resumed = after is not None
        start = after if after is not None else await self.bus.last_seq()
        try:
            subscription = await self.bus.subscribe(identity.tenant_id, route.kind, route.key,
                                                    start)
        except events.Gap:
            resumed, start = False, await self.bus.last_seq()
            subscription = await self.bus.subscribe(identity.tenant_id, route.kind, route.key,
                                                    start)
        single_execution = route.kind == "execution" and route.key is not None
        seen = int(state.get("event_id") or 0) if single_execution else 0
        ended = single_execution and state.get("status") in ENDED
        if not resumed:
            offer(_message("state", start, state))
            if ended:
                await subscription.close()
                return 1000, "the execution has ended"
            seen_floor = seen
        else:
            seen_floor = 0  # a resumed socket wants every event after its seq
        iterator = events.stream(subscription)
        try:
            while True:
                if ended:
                    # Resuming an execution that has ended: the missed events the bus still
                    # has, then the final state if its own event is not among them.
                    try:
                        event = await asyncio.wait_for(anext(iterator), 2.0)
                    except TimeoutError:
                        offer(_message("state", await self.bus.last_seq(), state))
                        return 1000, "the execution has ended"
                else:
                    event = await anext(iterator)
                if single_execution:
                    event_id = int(event.payload.get("event_id") or 0)
                    if event_id and event_id <= seen_floor:
                        continue  # already in the state message
                    seen_floor = max(seen_floor, event_id)
                if not offer(_message(event.type, event.seq, event.payload)):
                    return CLOSE_SLOW, SLOW_REASON
                if single_execution and event.payload.get("status") in ENDED:
                    return 1000, "the execution has ended"
        except StopAsyncIteration:
            pass
        except events.Gap:
            return CLOSE_SLOW, "too slow: events were lost; reconnect for the current state"
        finally:
            await iterator.aclose()
        return 1000, "the stream ended"


async def _on_start(runtime: Runtime) -> None:
    if not runtime.settings.nats_url:
        events.local_bus()  # this process keeps the events; its other services hand them over
    await Hub.for_runtime(runtime).start()


async def _on_stop(runtime: Runtime) -> None:
    await Hub.for_runtime(runtime).stop()


DEFINITION = ServiceDefinition("live", servicers=[LiveService], on_start=_on_start,
                               on_stop=_on_stop)
