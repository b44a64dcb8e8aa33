"""Access-token revocation checked in memory, in every service (docs/threat-model.md).

Access tokens are JWTs that the gateway verifies on its own, so they stay valid until `exp`.
To take effect within seconds, the identity service publishes what is revoked
(`IdentityService/ListRevocations`, an internal RPC the gateway never routes):

* per user a "not before" time: tokens of a deleted, deactivated or re-roled user whose `iat`
  is earlier are refused;
* revoked sessions: the `sid` claim (the refresh-token family) of a logged-out session.

Each service process keeps that list in memory, fetched with a long poll: it calls with the
version it has and `wait_seconds` (HOLD_SECONDS), and identity answers when the list changes or
the wait ends (mesh/runtime/watch.py), so an idle process makes one call every HOLD_SECONDS.
The per-request check is two dictionary lookups on headers the gateway set from the verified
token (`x-agentmesh-token-iat`, `x-agentmesh-session-id`, `x-agentmesh-user-id`). No request
waits for identity. The window between a revocation and its refusal everywhere is a round trip
and a read when the identity process that wrote it holds the call, and at most
`revocation_poll_seconds` (default 1 s) more when another identity replica wrote it (identity
checks for other processes' writes that often while calls are held). If identity cannot be
reached, the last list stays in force (entries leave it only when the tokens they cover have
expired anyway) and the call is retried every `revocation_poll_seconds`. Work that outlives a
call (the live service's open WebSockets) waits for a change with `changed()`.

API-key requests carry no token claims; identity's ext_authz checks the key's creator on every
such request instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from mesh.runtime.context import SESSION_HEADER, TOKEN_IAT_HEADER, USER_HEADER, call_metadata
from mesh.runtime.errors import Unauthenticated
from mesh.runtime.peers import Peers
from mesh.runtime.settings import Settings

log = logging.getLogger("mesh.revocation")
HOLD_SECONDS = 30  # how long identity may hold a call while the list does not change
DEADLINE_MARGIN_SECONDS = 10.0  # the call's deadline is the hold plus this


@dataclass
class RevocationList:
    users_not_before: dict[str, int] = field(default_factory=dict)
    revoked_sessions: frozenset[str] = frozenset()
    refreshed_at: float = 0.0  # time.monotonic() of the last successful poll; 0 = never

    def same_entries(self, other: "RevocationList") -> bool:
        return (self.users_not_before == other.users_not_before
                and self.revoked_sessions == other.revoked_sessions)

    def refuses(self, metadata: Mapping[str, str]) -> str:
        """Why the call's token is refused, or "" when it is not (or carries no token)."""
        if not self.users_not_before and not self.revoked_sessions:
            return ""
        iat = metadata.get(TOKEN_IAT_HEADER)
        session = metadata.get(SESSION_HEADER)
        user = metadata.get(USER_HEADER)
        if iat is None:  # no access token on this call (API key, public or internal call)
            return ""
        if session and session in self.revoked_sessions:
            return "SESSION_REVOKED"
        not_before = self.users_not_before.get(user or "")
        if not_before is not None:
            try:
                issued = int(float(iat))
            except ValueError:
                return "TOKEN_REVOKED"
            if issued < not_before:
                return "TOKEN_REVOKED"
        return ""


class RevocationGuard:
    """The long poll and the list it keeps, one per process (whatever services it hosts).
    `start()` after the servers start, `stop()` on shutdown. Without an identity address
    (AGENTMESH_PEERS) it stays empty and says so."""

    def __init__(self, settings: Settings, peers: Peers) -> None:
        self.settings = settings
        self.peers = peers
        self.current = RevocationList()
        self.version = ""  # identity's name for the list's content; "" until the first answer
        self.generation = 0  # increases whenever the list's entries change
        self._changed = asyncio.Event()  # set (and replaced) when they do
        self._task: asyncio.Task | None = None

    def check(self, context) -> None:
        """Raises UNAUTHENTICATED when the call's access token has been revoked."""
        current = self.current
        if not current.users_not_before and not current.revoked_sessions:
            return
        reason = current.refuses(call_metadata(context))
        if reason:
            raise Unauthenticated("the access token was revoked; sign in again", reason=reason)

    async def changed(self, after: int) -> int:
        """Waits until the list's entries change after generation `after`; the generation."""
        while self.generation <= after:
            await self._changed.wait()
        return self.generation

    async def refresh(self, wait_seconds: float = 0) -> bool:
        """One call, held by identity up to `wait_seconds` while the list is the one known;
        whether it answered a new version (False for one that does not name versions)."""
        from agentmesh.identity.v1 import identity_pb2, identity_pb2_grpc

        wait = int(wait_seconds)
        reply = await self.peers.stub(identity_pb2_grpc.IdentityServiceStub).ListRevocations(
            identity_pb2.ListRevocationsRequest(known_version=self.version, wait_seconds=wait),
            timeout=wait + DEADLINE_MARGIN_SECONDS)
        new = bool(reply.version) and reply.version != self.version
        self.apply(RevocationList(dict(reply.users_not_before),
                                  frozenset(reply.revoked_sessions), time.monotonic()),
                   reply.version)
        return new

    def apply(self, fetched: RevocationList, version: str) -> None:
        """The list identity answered; wakes `changed()` when its entries differ."""
        previous, self.current, self.version = self.current, fetched, version
        if not fetched.same_entries(previous):
            self.generation += 1
            event, self._changed = self._changed, asyncio.Event()
            event.set()

    async def _run(self) -> None:
        failing = False
        started = time.monotonic()
        pause = self.settings.revocation_poll_seconds
        while True:
            began = time.monotonic()
            try:
                new = await self.refresh(HOLD_SECONDS)
                if failing:
                    log.info("revocation list reachable again")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the last list, retry
                if not self.current.refreshed_at and time.monotonic() - started < 30:
                    # identity is still starting: not news yet
                    log.debug("revocation list not reachable yet (%s)", exc.__class__.__name__)
                elif not failing:
                    log.warning("cannot refresh the revocation list (%s); keeping the last one",
                                exc.__class__.__name__)
                    failing = True
                await asyncio.sleep(pause)
                continue
            # Nothing new, answered at once (an identity draining, or one that does not hold
            # calls): ask again after the poll interval, not in a tight loop.
            quick = time.monotonic() - began
            if not new and quick < pause:
                await asyncio.sleep(pause - quick)

    async def start(self) -> None:
        if "identity" not in self.peers.addresses:
            log.warning("no identity address in AGENTMESH_PEERS: revoked tokens are not refused "
                        "until they expire")
            return
        self._task = asyncio.create_task(self._run(), name="revocation-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
