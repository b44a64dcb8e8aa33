"""Who is calling: the identity the gateway vouched for, read from request metadata.

Envoy verifies the JWT (or, through the identity service's ext_authz, the API key), removes any
client-sent copies of these headers, and passes the verified claims on. Services trust them
because only the gateway can reach them.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

import grpc

TENANT_HEADER = "x-agentmesh-tenant-id"
USER_HEADER = "x-agentmesh-user-id"
SCOPES_HEADER = "x-agentmesh-scopes"
# Every header only the gateway may set: its Lua filter drops client-sent copies of these
# (mesh.gateway.config fills this list into gateway.lua).
IDENTITY_HEADERS = (TENANT_HEADER, USER_HEADER, SCOPES_HEADER)
CORRELATION_HEADER = "x-correlation-id"

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    user_id: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    correlation_id: str = ""

    def has_scope(self, needed: str) -> bool:
        resource = needed.split(":", 1)[0]
        return bool({"*", needed, f"{resource}:*"} & self.scopes)


def caller_from(context: grpc.aio.ServicerContext) -> Caller:
    metadata = {k: v for k, v in context.invocation_metadata() or ()}
    scopes = metadata.get(SCOPES_HEADER, "")
    return Caller(
        tenant_id=metadata.get(TENANT_HEADER, ""),
        user_id=metadata.get(USER_HEADER, ""),
        scopes=frozenset(s for s in scopes.replace(",", " ").split() if s),
        correlation_id=metadata.get(CORRELATION_HEADER, ""),
    )


def require_caller(context: grpc.aio.ServicerContext) -> Caller:
    """The caller, who must belong to a tenant (the gateway guarantees it for non-public RPCs)."""
    from mesh.runtime.errors import Unauthenticated

    caller = caller_from(context)
    if not caller.tenant_id:
        raise Unauthenticated("no verified tenant on this call; send a bearer token or API key")
    return caller
