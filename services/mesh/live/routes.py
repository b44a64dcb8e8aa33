"""Who a socket is and what it watches: the identity the gateway verified (or a ticket
carried), and the stream its path names, with the scope it needs (the sockets are declared in
`mesh.runtime.sockets`)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from mesh.runtime.context import (CORRELATION_HEADER, SCOPES_HEADER, SESSION_HEADER,
                                  TENANT_HEADER, TOKEN_IAT_HEADER, USER_HEADER)
from mesh.runtime import sockets
from mesh.runtime.scopes import holds

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
        return holds(self.scopes, needed)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The headers of a call made as this identity (the owning service checks them)."""
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
    """The stream a socket's path names (mesh.runtime.sockets declares them), or None."""
    found = sockets.match(urlsplit(path).path)
    if found is None:
        return None
    socket, key = found
    return Route(socket.kind, key, socket.scope)
