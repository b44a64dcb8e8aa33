"""The live WebSockets, declared once: what each path streams and the scope it needs.

The live service matches a socket's path against this table (`match`), the gateway routes
`/ws/...` with the same scopes (its RBAC per socket), and the OpenAPI document lists them (OpenAPI
cannot describe WebSockets). A socket's scope is the one reading the same resource over REST
needs. Order matters: a literal path comes before the template that would also match it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "/ws/"
# An id in a socket's path. Unbounded in the pattern (Envoy's RE2 refuses a counted repeat's
# program size in a route); the live service also refuses one over MAX_ID characters.
ID_PATTERN = "[A-Za-z0-9_-]+"
MAX_ID = 128


@dataclass(frozen=True)
class Socket:
    path: str         # "/ws/calls/{call_id}"
    kind: str         # what the event bus carries: "execution" | "call"
    scope: str
    description: str

    @property
    def keyed(self) -> bool:
        """Whether the path names one resource (a `{variable}`), not the whole tenant's."""
        return "{" in self.path

    @property
    def regex(self) -> str:
        """The path as a regular expression (the gateway's route match)."""
        return "^" + re.sub(r"\{[a-z_]+\}", ID_PATTERN, self.path) + "$"


SOCKETS = (
    Socket("/ws/executions", "execution", "workflows:read",
           "every execution event of the tenant"),
    Socket("/ws/calls", "call", "calls:read",
           "every agent call event of the tenant (`call.started`, `call.ended`)"),
    Socket("/ws/calls/{call_id}", "call", "calls:read", "the events of one call"),
    Socket("/ws/{session_id}", "execution", "workflows:read",
           "the progress of one workflow execution, ending with its final state"),
)
_COMPILED = tuple((re.compile(s.regex), s) for s in SOCKETS)


def match(path: str) -> tuple[Socket, str | None] | None:
    """The socket a request path opens and the id it names (None for a tenant-wide one)."""
    for pattern, socket in _COMPILED:
        if pattern.match(path):
            key = path.rsplit("/", 1)[1] if socket.keyed else None
            return None if key is not None and len(key) > MAX_ID else (socket, key)
    return None


def table() -> str:
    """The sockets as a Markdown table (the OpenAPI document's description)."""
    rows = [f"| `GET {s.path}` | {s.description} | `{s.scope}` |" for s in SOCKETS]
    return "\n".join(["| socket | what it carries | scope |", "|---|---|---|", *rows])
