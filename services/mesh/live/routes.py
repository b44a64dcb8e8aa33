"""Who a socket is and what it watches: the identity the gateway verified (or a ticket
carried), and the stream its path names (`/ws/{execution_id}`, `/ws/executions`, `/ws/calls`,
`/ws/calls/{call_id}`) with the scope it needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from mesh.runtime.context import (CORRELATION_HEADER, SCOPES_HEADER, SESSION_HEADER,
                                  TENANT_HEADER, TOKEN_IAT_HEADER, USER_HEADER)
from mesh.runtime.scopes import holds

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
