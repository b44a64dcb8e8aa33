"""One socket's stream: its bounded queue, the messages `{type, seq, payload}`, the sender (a
client that does not take a send in time is dropped, 4008), the reader (pings answered) and the
pump that moves the bus's events into the queue and says when the stream ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from mesh import contract
from mesh.live.routes import Identity, Route
from mesh.runtime import events

QUEUE_MESSAGES = 256  # per socket; past it (or QUEUE_BYTES) the client is dropped (4008)
QUEUE_BYTES = 1024 * 1024
CLOSE_SLOW = 4008
SLOW_REASON = "too slow: reconnect with ?after= the last seq"
# A single execution's socket closes after its final state (the contract's `final` values).
ENDED = contract.default().final_values("agentmesh.workflows.v1.ExecutionStatus")


class Outbox(asyncio.Queue):
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


def message(type_: str, seq: int, payload: Any, **extra: Any) -> str:
    return json.dumps({"type": type_, "seq": seq, "payload": payload, **extra},
                      separators=(",", ":"))


async def close(ws: ServerConnection, sender: asyncio.Task, code: int, reason: str) -> None:
    sender.cancel()
    with contextlib.suppress(Exception):
        await ws.close(code, reason)


async def send(ws: ServerConnection, queue: asyncio.Queue, timeout: float) -> None:
    """Sends in order; a send the client does not take within `timeout` (TCP and the
    gateway's buffers full) raises TimeoutError, which drops the client (4008): with a bus
    that holds events back when this socket is not reading (JetStream's flow control), the
    queue alone would never overflow."""
    while (text := await queue.get()) is not None:
        await asyncio.wait_for(ws.send(text), timeout)


async def read(ws: ServerConnection, queue: asyncio.Queue) -> None:
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
                    queue.put_nowait(message("pong", 0, {}))


async def pump(bus, route: Route, identity: Identity, after: int | None, state: dict,
               queue: asyncio.Queue) -> tuple[int, str]:
    """Bus events into the socket's queue; the close code and reason when it should end."""
    def offer(text: str) -> bool:
        try:
            queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            return False

    resumed = after is not None
    start = after if after is not None else await bus.last_seq()
    try:
        subscription = await bus.subscribe(identity.tenant_id, route.kind, route.key, start)
    except events.Gap:
        resumed, start = False, await bus.last_seq()
        subscription = await bus.subscribe(identity.tenant_id, route.kind, route.key, start)
    single_execution = route.kind == "execution" and route.key is not None
    seen = int(state.get("event_id") or 0) if single_execution else 0
    ended = single_execution and state.get("status") in ENDED
    if not resumed:
        offer(message("state", start, state))
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
                    offer(message("state", await bus.last_seq(), state))
                    return 1000, "the execution has ended"
            else:
                event = await anext(iterator)
            if single_execution:
                event_id = int(event.payload.get("event_id") or 0)
                if event_id and event_id <= seen_floor:
                    continue  # already in the state message
                seen_floor = max(seen_floor, event_id)
            if not offer(message(event.type, event.seq, event.payload)):
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
