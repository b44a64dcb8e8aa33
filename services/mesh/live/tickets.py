"""Single-use WebSocket tickets for browsers (`POST /api/v1/live/tickets`, then
`?ticket=`): the caller's identity for TICKET_SECONDS, redeemed once."""

from __future__ import annotations

import hashlib
import json
import secrets
import time

from mesh.runtime import events

TICKET_SECONDS = 30


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
