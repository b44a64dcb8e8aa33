"""The live service closes a socket whose token was revoked when the process's revocation list
changes (RevocationGuard.changed), not at the next tick of a timer; a change that leaves the
list's entries as they were wakes nothing."""

from __future__ import annotations

import asyncio
import time

from mesh.live.hub import CLOSE_REVOKED, Hub
from mesh.live.routes import Identity
from mesh.runtime.revocation import RevocationGuard, RevocationList
from mesh.runtime.service import Runtime
from mesh.runtime.settings import Settings


class _Socket:
    def __init__(self, identity: Identity) -> None:
        self.watch = (None, identity, None, {})
        self.closed: tuple[int, float] | None = None

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, time.monotonic())


def test_a_revoked_tokens_socket_is_closed_when_the_list_changes():
    # A poll interval far longer than the test: only the change can close the socket.
    settings = Settings(revocation_poll_seconds=30)
    alice = Identity("t1", "alice", frozenset(), token_iat="100", session_id="s-alice")
    bob = Identity("t1", "bob", frozenset(), token_iat="100", session_id="s-bob")

    async def scenario():
        guard = RevocationGuard(settings, peers=None)
        hub = Hub.__new__(Hub)
        hub.runtime = Runtime("live", settings, None, revocations=guard)
        hub.settings = settings
        sockets = {"alice": _Socket(alice), "bob": _Socket(bob)}
        hub.sockets = set(sockets.values())
        closer = asyncio.create_task(hub._close_revoked())
        await asyncio.sleep(0.1)
        generation = guard.generation
        guard.apply(RevocationList(), "v0")  # the same (empty) entries: no change
        await asyncio.sleep(0.1)
        unchanged = guard.generation == generation
        began = time.monotonic()
        guard.apply(RevocationList({}, frozenset({"s-alice"})), "v1")
        await asyncio.sleep(0.2)
        closer.cancel()
        await asyncio.gather(closer, return_exceptions=True)
        return unchanged, began, sockets

    unchanged, began, sockets = asyncio.run(scenario())
    assert unchanged
    assert sockets["alice"].closed is not None
    code, at = sockets["alice"].closed
    assert code == CLOSE_REVOKED and at - began < 0.2
    assert sockets["bob"].closed is None
