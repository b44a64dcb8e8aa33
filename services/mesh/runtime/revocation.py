"""Access-token revocation checked in memory, in every service (docs/threat-model.md).

Access tokens are JWTs that the gateway verifies on its own, so they stay valid until `exp`.
To take effect within seconds, the identity service publishes what is revoked
(`IdentityService/ListRevocations`, an internal RPC the gateway never routes):

* per user a "not before" time: tokens of a deleted, deactivated or re-roled user whose `iat`
  is earlier are refused;
* revoked sessions: the `sid` claim (the refresh-token family) of a logged-out session.

Each service's runtime polls that list every `revocation_poll_seconds` (default 1 s) and keeps
it in memory; the per-request check is two dictionary lookups on headers the gateway set from
the verified token (`x-agentmesh-token-iat`, `x-agentmesh-session-id`, `x-agentmesh-user-id`).
No request waits for identity. The window between a revocation and its refusal everywhere is
one poll interval plus one round trip (about 1-2 s). If identity cannot be reached, the last
list stays in force (entries leave it only when the tokens they cover have expired anyway).

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


@dataclass
class RevocationList:
    users_not_before: dict[str, int] = field(default_factory=dict)
    revoked_sessions: frozenset[str] = frozenset()
    refreshed_at: float = 0.0  # time.monotonic() of the last successful poll; 0 = never

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
    """The poller and the list it keeps, one per process (whatever services it hosts).
    `start()` after the servers start, `stop()` on shutdown. Without an identity address
    (AGENTMESH_PEERS) it stays empty and says so."""

    def __init__(self, settings: Settings, peers: Peers) -> None:
        self.settings = settings
        self.peers = peers
        self.current = RevocationList()
        self._task: asyncio.Task | None = None

    def check(self, context) -> None:
        """Raises UNAUTHENTICATED when the call's access token has been revoked."""
        current = self.current
        if not current.users_not_before and not current.revoked_sessions:
            return
        reason = current.refuses(call_metadata(context))
        if reason:
            raise Unauthenticated("the access token was revoked; sign in again", reason=reason)

    async def refresh(self) -> None:
        from agentmesh.identity.v1 import identity_pb2, identity_pb2_grpc

        reply = await self.peers.stub(identity_pb2_grpc.IdentityServiceStub).ListRevocations(
            identity_pb2.ListRevocationsRequest(),
            timeout=max(1.0, self.settings.revocation_poll_seconds))
        self.current = RevocationList(dict(reply.users_not_before),
                                      frozenset(reply.revoked_sessions), time.monotonic())

    async def _run(self) -> None:
        failing = False
        started = time.monotonic()
        while True:
            try:
                await self.refresh()
                if failing:
                    log.info("revocation list reachable again")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the last list, retry
                if not self.current.refreshed_at and time.monotonic() - started < 30:
                    # identity is still starting: not news yet
                    log.debug("revocation list not reachable yet (%s)", exc.__class__.__name__)
                    await asyncio.sleep(self.settings.revocation_poll_seconds)
                    continue
                if not failing:
                    log.warning("cannot refresh the revocation list (%s); keeping the last one",
                                exc.__class__.__name__)
                failing = True
            await asyncio.sleep(self.settings.revocation_poll_seconds)

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
