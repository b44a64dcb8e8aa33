"""Live events: what the owning services publish and the live service relays to WebSockets
(docs/live-events.md).

    await events.publish(settings, tenant_id, "execution", execution_id, "execution.progress",
                         payload)

An event is about one resource (`kind` `execution` or `call`, `key` its id) of one tenant; its
`payload` is the JSON the REST API answers for that resource. Every event gets a sequence number
from the bus, growing across the whole bus, which sockets show as `seq` and accept back to
resume.

Two buses, one interface:

* **NATS JetStream** (`AGENTMESH_NATS_URL`): services publish to the subject
  `agentmesh.events.<tenant>.<kind>.<key>`; the stream `AGENTMESH_EVENTS` keeps the last ten
  minutes (at most 100,000 events, 256 MiB) for replay, and every replica of the live service
  reads it, so each sees every event. The sequence number is the stream's.
* **Local** (no NATS; `agentmesh up`): the live service keeps the recent events in memory
  (`LocalBus`). A service in the same process hands events over directly; a service in another
  process sends them with the internal `LiveService.PublishEvent` RPC, in order, from one
  bounded queue. This needs exactly one live replica, which is what `agentmesh up` runs.

Publishing never fails the caller: an event that cannot be published is logged and dropped.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from mesh.runtime.settings import Settings

log = logging.getLogger("mesh.runtime.events")
PREFIX = "agentmesh.events"
STREAM = "AGENTMESH_EVENTS"
REPLAY_SECONDS = 600
REPLAY_EVENTS = 100_000
REPLAY_BYTES = 256 * 1024 * 1024
LOCAL_REPLAY_EVENTS = 10_000
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # no NATS wildcard or separator in a token


class Gap(Exception):
    """The events after the requested sequence number are no longer kept."""


@dataclass(frozen=True)
class Event:
    seq: int
    tenant_id: str
    kind: str
    key: str
    type: str
    payload: dict[str, Any]


def valid_token(value: str) -> bool:
    return bool(_TOKEN.match(value))


def subject(tenant_id: str, kind: str = "*", key: str = "*") -> str:
    for value in (tenant_id, kind, key):
        if value != "*" and not valid_token(value):
            raise ValueError(f"{value!r} cannot be part of an event subject")
    return f"{PREFIX}.{tenant_id}.{kind}.{key}"


def _encode(tenant_id: str, kind: str, key: str, type_: str, payload: dict[str, Any]) -> bytes:
    return json.dumps({"tenant_id": tenant_id, "kind": kind, "key": key, "type": type_,
                       "payload": payload}, separators=(",", ":")).encode()


def _decode(seq: int, data: bytes) -> Event:
    body = json.loads(data)
    return Event(seq, body["tenant_id"], body["kind"], body["key"], body["type"], body["payload"])


class Subscription:
    """Events of one tenant (one kind, one key, or all), from a sequence number on, in order."""

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Event:  # pragma: no cover - interface
        raise NotImplementedError

    async def close(self) -> None:
        pass


class LocalBus:
    """The recent events in memory: a ring of the last `capacity` events."""

    def __init__(self, capacity: int = LOCAL_REPLAY_EVENTS) -> None:
        self.ring: collections.deque[Event] = collections.deque(maxlen=capacity)
        self.seq = 0
        self._changed = asyncio.Event()

    async def publish(self, tenant_id: str, kind: str, key: str, type_: str,
                      payload: dict[str, Any]) -> None:
        subject(tenant_id, kind, key)
        self.seq += 1
        self.ring.append(Event(self.seq, tenant_id, kind, key, type_, payload))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def last_seq(self) -> int:
        return self.seq

    async def subscribe(self, tenant_id: str, kind: str, key: str | None,
                        after: int) -> Subscription:
        first = self.ring[0].seq if self.ring else self.seq + 1
        if after + 1 < first and after < self.seq:
            raise Gap(f"events after {after} are no longer kept (oldest: {first})")
        return _LocalSubscription(self, tenant_id, kind, key, after)

    async def close(self) -> None:
        pass


class _LocalSubscription(Subscription):
    def __init__(self, bus: LocalBus, tenant_id: str, kind: str, key: str | None,
                 after: int) -> None:
        self.bus, self.tenant_id, self.kind, self.key = bus, tenant_id, kind, key
        self.next = after + 1

    def _match(self, event: Event) -> bool:
        return (event.tenant_id == self.tenant_id and event.kind == self.kind
                and (self.key is None or event.key == self.key))

    async def __anext__(self) -> Event:
        while True:
            ring = self.bus.ring
            if ring and self.next <= self.bus.seq:
                first = ring[0].seq
                if self.next < first:
                    raise Gap(f"fell behind: events from {self.next} to {first - 1} are gone")
                for index in range(self.next - first, len(ring)):
                    event = ring[index]
                    self.next = event.seq + 1
                    if self._match(event):
                        return event
            await self.bus._changed.wait()


class NatsBus:
    """Events on NATS JetStream: one connection per process, the stream made on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._nc = None
        self._js = None
        self._lock = asyncio.Lock()

    async def _connect(self):
        if self._js is not None:
            return self._js
        async with self._lock:
            if self._js is None:
                import nats
                from nats.js import api

                nc = await nats.connect(self.url, name="agentmesh", connect_timeout=2,
                                        max_reconnect_attempts=-1, reconnect_time_wait=0.5)
                js = nc.jetstream()
                config = api.StreamConfig(
                    name=STREAM, subjects=[f"{PREFIX}.>"], max_age=REPLAY_SECONDS,
                    max_msgs=REPLAY_EVENTS, max_bytes=REPLAY_BYTES,
                    storage=api.StorageType.MEMORY, discard=api.DiscardPolicy.OLD)
                try:
                    await js.add_stream(config)
                except Exception:  # noqa: BLE001 - exists with another configuration
                    await js.update_stream(config)
                self._nc, self._js = nc, js
        return self._js

    async def publish(self, tenant_id: str, kind: str, key: str, type_: str,
                      payload: dict[str, Any]) -> None:
        js = await self._connect()
        # A plain publish: the stream stores it; no round trip for an acknowledgement on the
        # caller's path. One connection keeps a process's events in order.
        await self._nc.publish(subject(tenant_id, kind, key),
                               _encode(tenant_id, kind, key, type_, payload))
        del js

    async def last_seq(self) -> int:
        js = await self._connect()
        return (await js.stream_info(STREAM)).state.last_seq

    async def subscribe(self, tenant_id: str, kind: str, key: str | None,
                        after: int) -> Subscription:
        from nats.js import api

        js = await self._connect()
        state = (await js.stream_info(STREAM)).state
        if after + 1 < state.first_seq and after < state.last_seq:
            raise Gap(f"events after {after} are no longer kept (oldest: {state.first_seq})")
        sub = await js.subscribe(
            subject(tenant_id, kind, key or "*"), ordered_consumer=True,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                                      opt_start_seq=after + 1),
            # Bounded: the live service drains it at once into each socket's own bounded queue.
            pending_msgs_limit=4096, pending_bytes_limit=64 * 1024 * 1024)
        return _NatsSubscription(sub)

    async def flush(self) -> None:
        if self._nc is not None:
            await self._nc.flush()

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc, self._js = self._nc, None, None
            await nc.drain()


class _NatsSubscription(Subscription):
    def __init__(self, sub) -> None:
        self.sub = sub

    async def __anext__(self) -> Event:
        msg = await self.sub.next_msg(timeout=None)
        return _decode(msg.metadata.sequence.stream, msg.data)

    async def close(self) -> None:
        try:
            await self.sub.unsubscribe()
        except Exception:  # noqa: BLE001 - the connection may be gone
            pass


class _Forwarder:
    """Events to the live service in another process, in order, over gRPC; a bounded queue
    (events beyond it are dropped and logged) so a slow or absent live service costs nothing."""

    def __init__(self, settings: Settings) -> None:
        from mesh.runtime.peers import Peers

        self.peers = Peers(settings)
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=10_000)
        self.task: asyncio.Task | None = None
        self.warned = False

    async def publish(self, tenant_id: str, kind: str, key: str, type_: str,
                      payload: dict[str, Any]) -> None:
        subject(tenant_id, kind, key)
        try:
            self.queue.put_nowait((tenant_id, kind, key, type_, payload))
        except asyncio.QueueFull:
            log.warning("live event dropped: the live service is not keeping up")
            return
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        from agentmesh.live.v1 import live_pb2, live_pb2_grpc

        try:
            stub = self.peers.stub(live_pb2_grpc.LiveServiceStub)
        except Exception as exc:  # noqa: BLE001 - no live service configured (a test harness)
            if not self.warned:
                log.warning("live events dropped: %s", exc)
                self.warned = True
            while not self.queue.empty():
                self.queue.get_nowait()
            return
        while not self.queue.empty():
            tenant_id, kind, key, type_, payload = self.queue.get_nowait()
            try:
                await stub.PublishEvent(live_pb2.PublishEventRequest(
                    tenant_id=tenant_id, kind=kind, key=key, type=type_,
                    payload_json=json.dumps(payload, separators=(",", ":"))),
                    timeout=5, metadata=())
            except Exception as exc:  # noqa: BLE001
                log.warning("live event not delivered: %s", exc)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.peers.close()


# The buses of this process. `LOCAL` is set when the live service runs in this process.
LOCAL: LocalBus | None = None
_publishers: dict[str, Any] = {}


def local_bus() -> LocalBus:
    global LOCAL
    if LOCAL is None:
        LOCAL = LocalBus()
    return LOCAL


def bus(settings: Settings):
    """The bus the live service reads: NATS when configured, else this process's memory."""
    if settings.nats_url:
        found = _publishers.get(settings.nats_url)
        if found is None:
            found = _publishers[settings.nats_url] = NatsBus(settings.nats_url)
        return found
    return local_bus()


def _publisher(settings: Settings):
    if settings.nats_url or LOCAL is not None:
        return bus(settings)
    found = _publishers.get("forward")
    if found is None:
        found = _publishers["forward"] = _Forwarder(settings)
    return found


async def publish(settings: Settings, tenant_id: str, kind: str, key: str, type_: str,
                  payload: dict[str, Any]) -> None:
    """Publishes one event; never raises (an event lost is logged, the caller's work stands)."""
    try:
        await _publisher(settings).publish(tenant_id, kind, key, type_, payload)
    except Exception as exc:  # noqa: BLE001
        log.warning("live event %s of %s %s not published: %s", type_, kind, key, exc)


async def close() -> None:
    for publisher in list(_publishers.values()):
        try:
            await publisher.close()
        except Exception:  # noqa: BLE001
            pass
    _publishers.clear()


async def stream(subscription: Subscription) -> AsyncIterator[Event]:
    try:
        async for event in subscription:
            yield event
    finally:
        await subscription.close()
