"""Who is calling: the identity the gateway vouched for, read from request metadata.

Envoy verifies the JWT (or, through the identity service's ext_authz, the API key), removes any
client-sent copies of these headers, and passes the verified claims on. Services trust them
because only the gateway can reach them.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

import grpc

from mesh.runtime.scopes import holds

TENANT_HEADER = "x-agentmesh-tenant-id"
USER_HEADER = "x-agentmesh-user-id"
SCOPES_HEADER = "x-agentmesh-scopes"
# Every header only the gateway may set: its Lua filter drops client-sent copies of these
# (mesh.gateway.lua fills this list into gateway.lua).
# Claims of the access token, for the revocation check (mesh/runtime/revocation.py).
SESSION_HEADER = "x-agentmesh-session-id"
TOKEN_IAT_HEADER = "x-agentmesh-token-iat"
# The API key a call came with (its id), set by identity's ext_authz; the user header is then the
# key's creator and the scopes are the key's.
API_KEY_HEADER = "x-agentmesh-api-key-id"
# The agent a tool call is made for, set by the agents service on ExecuteTool: its loop has
# decided the call with the agent as principal (mesh.governance.client), so tools does not
# decide it again.
AGENT_HEADER = "x-agentmesh-agent"
# The MCP client a call came through (its name, from the MCP handshake), set by the integration
# service's MCP server (docs/mcp.md): the call records it in its metadata.
MCP_CLIENT_HEADER = "x-agentmesh-mcp-client"
IDENTITY_HEADERS = (TENANT_HEADER, USER_HEADER, SCOPES_HEADER, SESSION_HEADER, TOKEN_IAT_HEADER,
                    API_KEY_HEADER, AGENT_HEADER, MCP_CLIENT_HEADER)
CORRELATION_HEADER = "x-correlation-id"
# The REST status of an answer other than 200, sent by the service as initial metadata; the
# gateway's Lua filter makes it the answer's status (`accepted`: 202 for work that goes on).
HTTP_STATUS_HEADER = "x-agentmesh-http-status"

# The call being served, set by the runtime around every handler; read lazily (the correlation
# id for a log line, the identity passed on to peers) so that a call that logs nothing and
# calls no one pays nothing for them.
current_call: contextvars.ContextVar[grpc.aio.ServicerContext | None] = contextvars.ContextVar(
    "current_call", default=None)
current_service: contextvars.ContextVar[str] = contextvars.ContextVar("current_service", default="")
# The metadata of the call being served, read once by the runtime: grpc.aio builds a new tuple of
# new (key, value) pairs on every `invocation_metadata()`, which several reads per call paid for.
current_metadata: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "current_metadata", default=None)


def call_metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's metadata as a dict (the last value of a repeated key)."""
    if current_call.get() is context:
        cached = current_metadata.get()
        if cached is not None:
            return cached
    return dict(context.invocation_metadata() or ())


def metadata_value(context: grpc.aio.ServicerContext, key: str) -> str:
    return call_metadata(context).get(key, "")


def correlation_id() -> str:
    """The correlation id of the call being served ("" outside a call)."""
    context = current_call.get()
    return metadata_value(context, CORRELATION_HEADER) if context is not None else ""


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    user_id: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    correlation_id: str = ""
    # The API key the call came with (its id), "" for a token.
    api_key_id: str = ""
    # The MCP client the call came through (docs/mcp.md), "" for any other.
    mcp_client: str = ""

    def has_scope(self, needed: str) -> bool:
        return holds(self.scopes, needed)


def caller_from(context: grpc.aio.ServicerContext) -> Caller:
    metadata = call_metadata(context)
    scopes = metadata.get(SCOPES_HEADER, "")
    return Caller(
        tenant_id=metadata.get(TENANT_HEADER, ""),
        user_id=metadata.get(USER_HEADER, ""),
        scopes=frozenset(s for s in scopes.replace(",", " ").split() if s),
        correlation_id=metadata.get(CORRELATION_HEADER, ""),
        api_key_id=metadata.get(API_KEY_HEADER, ""),
        mcp_client=metadata.get(MCP_CLIENT_HEADER, ""),
    )


def require_caller(context: grpc.aio.ServicerContext) -> Caller:
    """The caller, who must belong to a tenant (the gateway guarantees it for non-public RPCs)."""
    from mesh.runtime.errors import Unauthenticated

    caller = caller_from(context)
    if not caller.tenant_id:
        raise Unauthenticated("no verified tenant on this call; send a bearer token or API key")
    return caller


async def accepted(context: grpc.aio.ServicerContext) -> None:
    """The RPC's REST answer is 202 Accepted (an RPC marked `(agentmesh.common.v1.accepted)`:
    the work it started goes on)."""
    await context.send_initial_metadata(((HTTP_STATUS_HEADER, "202"),))
