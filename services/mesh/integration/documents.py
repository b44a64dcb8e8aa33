"""Documents the integration service is handed or fetches (an OpenAPI description, a bundle
file, a master-data document): fetched through the egress guard and parsed within the limits
of mesh.runtime.documents; and external tools registered from an endpoint or from an OpenAPI
description (mesh.integration.openapi_tools)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentmesh.integration.v1 import integration_pb2 as pb
from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc
from mesh.integration import api_connections, calls, connections, openapi_tools
from mesh.runtime import documents, errors
from mesh.runtime.context import Caller
from mesh.runtime.egress import EgressPolicy, read_capped
from mesh.runtime.errors import invalid_field

if TYPE_CHECKING:
    from mesh.integration.state import IntegrationState

MAX_DOCUMENT_BYTES = 1024 * 1024
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def parse_document(raw: bytes, field: str) -> Any:
    """JSON or YAML bytes (YAML is a superset; JSON is tried first), within the limits of
    `mesh.runtime.documents` (size, nesting depth, values JSON can carry)."""
    return documents.parse(raw, field, max_bytes=MAX_DOCUMENT_BYTES)


async def fetch(egress: EgressPolicy, url: str, headers: dict[str, str] | None = None) -> bytes:
    """GET through the egress guard, capped in size; an unreachable source is UNAVAILABLE."""
    import httpx2

    await egress.check_url(url)
    try:
        async with egress.client(timeout=10, max_response_bytes=MAX_DOCUMENT_BYTES) as client:
            async with client.stream("GET", url, headers=headers or {}) as response:
                body = await read_capped(response, MAX_DOCUMENT_BYTES)
                if response.status_code >= 400:
                    raise errors.Unavailable(
                        f"{url} answered HTTP {response.status_code}",
                        reason="SOURCE_ERROR", details={"status_code": response.status_code})
                return body
    except httpx2.HTTPError as exc:
        raise errors.Unavailable(f"{url} cannot be reached: {type(exc).__name__}",
                                 reason="SOURCE_UNREACHABLE") from None


async def _tool_specs(state: "IntegrationState", request: pb.IntegrateExternalToolRequest,
                      connection: dict[str, Any] | None) -> list[dict[str, Any]]:
    """[{name, description, method, url, input_schema}]: the one endpoint, or one per
    operation of the OpenAPI description (given, or fetched with the connection's headers)."""
    base = connection["base_url"] if connection else ""
    if request.endpoint_url:
        url = connections.join(base, request.endpoint_url) if base else request.endpoint_url
        connections.check_url(url.replace("{", "").replace("}", ""), "endpoint_url")
        method = (request.http_method or "POST").upper()
        if method not in _METHODS:
            raise invalid_field("http_method", "one of GET, POST, PUT, PATCH, DELETE")
        return [{"name": request.name, "description": request.description, "method": method,
                 "url": url, "input_schema": calls.struct_value(request, "input_schema")}]
    if request.openapi_url:
        where = connections.join(base, request.openapi_url) if base else request.openapi_url
        connections.check_url(where, "openapi_url")
        headers = await api_connections.headers(state, connection, "openapi document") \
            if connection else {}
        document = parse_document(await fetch(state.egress, where, headers), "openapi_url")
    else:
        document = calls.struct_value(request, "openapi")
    return openapi_tools.tools_from_openapi(document, prefix=request.name, base_url=base)


def _tool(spec: dict[str, Any], request: pb.IntegrateExternalToolRequest,
          connection: dict[str, Any] | None, config: dict[str, Any]) -> tools_pb2.Tool:
    """The tools service's `http` tool for one spec; a connection's credentials go in by the
    secret's name (`config.auth`), read by the tools service only when the tool runs."""
    tool_config = dict(config)
    if connection is not None:
        auth = connections.tool_auth(connection)
        if auth:
            tool_config["auth"] = auth
        tool_config["api_connection"] = connection["name"]
    tool = tools_pb2.Tool(
        name=spec["name"], description=spec["description"] or "",
        type=tools_pb2.TOOL_TYPE_HTTP,
        http=tools_pb2.HttpToolConfig(url=spec["url"], method=spec["method"],
                                      headers=connection["headers"] if connection else {}))
    if spec.get("input_schema"):
        tool.input_schema.update(spec["input_schema"])
    if request.HasField("output_schema"):
        tool.output_schema.CopyFrom(request.output_schema)
    if tool_config:
        tool.config.update(tool_config)
    return tool


async def integrate_external_tool(state: "IntegrationState", caller: Caller,
                                  request: pb.IntegrateExternalToolRequest
                                  ) -> pb.IntegrateExternalToolResponse:
    """One tool per endpoint or OpenAPI operation, created (and deployed) in the tools service;
    all or none: a failure deletes the ones made before it."""
    if not request.name:
        raise invalid_field("name", "is required")
    sources = [bool(request.endpoint_url), request.HasField("openapi"), bool(request.openapi_url)]
    if sum(sources) != 1:
        raise invalid_field("endpoint_url", "give exactly one of endpoint_url, openapi (a "
                            "document) or openapi_url")
    connection = await api_connections.connection(state, caller, request.api_connection_id) \
        if request.api_connection_id else None
    config = calls.struct_value(request, "config") or {}
    specs = await _tool_specs(state, request, connection)
    tools = state.peers.stub(tools_pb2_grpc.ToolServiceStub)
    created: list[tools_pb2.Tool] = []
    try:
        for spec in specs:
            made = await calls.call("tools", tools.CreateTool, tools_pb2.CreateToolRequest(
                tool=_tool(spec, request, connection, config)))
            created.append(made)
            if request.deploy:
                created[-1] = await calls.call("tools", tools.DeployTool,
                                               tools_pb2.DeployToolRequest(tool_id=made.id))
    except errors.DomainError:
        for tool in created:
            await calls.quietly(tools.DeleteTool(tools_pb2.DeleteToolRequest(tool_id=tool.id)))
        raise
    await state.events.publish(caller.tenant_id, "tool.registered", {
        "tools": [{"id": t.id, "name": t.name} for t in created]})
    first = created[0]
    return pb.IntegrateExternalToolResponse(
        tool_id=first.id, name=first.name,
        status=tools_pb2.ToolStatus.Name(first.status).removeprefix("TOOL_STATUS_"),
        deployed=request.deploy, created_at=first.created_at,
        tools=[pb.RegisteredTool(tool_id=t.id, name=t.name, method=t.http.method,
                                 url=t.http.url) for t in created])
