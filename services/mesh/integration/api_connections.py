"""The tenant's API connections: created (checked by mesh.integration.connections, the secret
it names must exist), listed, deleted and tested; and a connection's request headers with its
secret's value, read from masterdata only when a request is made."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from agentmesh.integration.v1 import integration_pb2 as pb
from mesh.integration import calls, connections
from mesh.integration.models import ApiConnectionRow
from mesh.integration.store import api_connections, connection_dict, connection_message
from mesh.runtime import audit, errors
from mesh.runtime.context import Caller
from mesh.runtime.errors import NotFound
from mesh.runtime.paging import PageRequest

if TYPE_CHECKING:
    from mesh.integration.state import IntegrationState

_FIELDS = ("name", "base_url", "auth_type", "secret_ref", "headers", "auth_param")


async def connection(state: "IntegrationState", caller: Caller, key: str) -> dict[str, Any]:
    """The connection by id or name, as a dict (`store.connection_dict`)."""
    row = await state.db.read(lambda s: api_connections.get(s, caller.tenant_id, key))
    return connection_dict(row)


async def headers(state: "IntegrationState", connection: dict[str, Any],
                  purpose: str) -> dict[str, str]:
    """The connection's headers for one request, with its credentials (revealed for
    `purpose`, which masterdata's audit trail records)."""
    value = None
    if connections.tool_auth(connection) is not None:
        value = await state.masterdata.reveal_secret(connection["secret_ref"], purpose)
    return connections.request_headers(connection, value)


async def create(state: "IntegrationState", caller: Caller,
                 given: pb.ApiConnection) -> pb.ApiConnection:
    body = calls.to_dict(given)
    # Fields are named as a REST client writes them (the body is the connection), as the
    # runtime's limits name them.
    fields = connections.check({k: body[k] for k in _FIELDS if k in body})
    if fields["secret_ref"] and not await state.masterdata.secret_exists(fields["secret_ref"]):
        raise NotFound(f"secret {fields['secret_ref']!r} not found",
                       reason="SECRET_NOT_FOUND", details={"secret": fields["secret_ref"]})

    def add(session: Session) -> ApiConnectionRow:
        row = api_connections.add(session, ApiConnectionRow(
            tenant_id=caller.tenant_id, created_by=caller.user_id, **fields))
        audit.record(session, caller, "create", "api_connection", row.id, name=row.name)
        return row

    return connection_message(await state.db.write(add))


async def page(state: "IntegrationState", caller: Caller, page: PageRequest, auth_type: str,
               search: str) -> dict[str, Any]:
    result = await state.db.read(lambda s: api_connections.list(
        s, caller.tenant_id, page, filters={"auth_type": auth_type}, search=search))
    return result.fields(connection_message)


async def delete(state: "IntegrationState", caller: Caller, key: str) -> str:
    return await state.db.write(lambda s: api_connections.remove(
        s, api_connections.get(s, caller.tenant_id, key, lock=True), caller))


async def test(state: "IntegrationState", caller: Caller, key: str,
               path: str) -> pb.TestApiConnectionResponse:
    """A GET of the connection's base URL (or `path` below it) with its credentials: whether it
    answers below 400, and how fast. An internal address is refused (403), not "not ok"."""
    import httpx2

    found = await connection(state, caller, key)
    url = connections.join(found["base_url"], path)
    connections.check_url(url, "path", connections.JOINED_MAX)
    await state.egress.check_url(url)
    request_headers = await headers(state, found, "connection test")
    started = time.perf_counter()
    out = pb.TestApiConnectionResponse(url=url)
    try:
        async with state.egress.client(timeout=10) as client:
            async with client.stream("GET", url, headers=request_headers) as response:
                out.status_code = response.status_code
                out.ok = response.status_code < 400
                if not out.ok:
                    out.error = f"HTTP {response.status_code}"
    except httpx2.HTTPError as exc:
        out.error = f"{type(exc).__name__}: cannot reach {url}"
    except errors.PermissionDenied as exc:  # a redirect to an internal address
        out.error = exc.message
    out.latency_ms = round((time.perf_counter() - started) * 1000, 3)
    return out
