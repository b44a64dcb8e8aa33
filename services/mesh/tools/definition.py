"""What a tool's definition must be, without looking anything up: a name that is not an id nor
a route word (the contract holds its pattern), a type with its typed config, usable schemas, an
http URL with a literal host whose placeholders are input properties, a known builtin; and the
secrets its config references listed in `secret_refs`."""

from __future__ import annotations

import re
from typing import Any

from google.protobuf import json_format

from agentmesh.tools.v1 import tools_pb2 as pb
from mesh.runtime import schemas
from mesh.runtime.convert import plain
from mesh.runtime.errors import InvalidArgument, invalid_field
from mesh.runtime.tables import is_uuid
from mesh.tools import builtins, runners

RESERVED = {"categories", "types"}  # routes beside /tools/{tool_id}
TYPED = ("http", "mcp", "builtin")
TYPE_OF = {"http": pb.TOOL_TYPE_HTTP, "mcp": pb.TOOL_TYPE_MCP, "builtin": pb.TOOL_TYPE_BUILTIN}
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
TYPES = [
    (pb.TOOL_TYPE_HTTP, "http", "An HTTP request to an endpoint (config `http`: url template, "
     "method, headers, timeout; `config.body` and `config.auth` for body mapping and "
     "credentials from a secret)."),
    (pb.TOOL_TYPE_BUILTIN, "builtin", "A function built into Agent Mesh that needs no network "
     f"(config `builtin.builtin_name`: {', '.join(builtins.BUILTINS)})."),
    (pb.TOOL_TYPE_MCP, "mcp", "A tool of a Model Context Protocol server reached over "
     "Streamable HTTP (config `mcp`: server_url, tool_name, timeout)."),
]


def check_name(name: str) -> None:
    if not name:
        raise invalid_field("name", "is required")
    if is_uuid(name) or name in RESERVED:
        raise invalid_field("name", "1-100 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit; not a UUID, 'categories' or 'types'")


def as_dict(struct) -> dict[str, Any]:
    return plain(json_format.MessageToDict(struct))  # whole numbers as integers


def definition_errors(tool: pb.Tool) -> list[tuple[str, str]]:
    """What is wrong with a tool's definition, without looking anything up."""
    errors: list[tuple[str, str]] = []
    if tool.type == pb.TOOL_TYPE_UNSPECIFIED:
        errors.append(("type", "is required: TOOL_TYPE_HTTP, TOOL_TYPE_BUILTIN or TOOL_TYPE_MCP"))
    which = tool.WhichOneof("typed_config")
    expected = next((k for k, v in TYPE_OF.items() if v == tool.type), None)
    if expected and which != expected:
        errors.append((expected, f"is required for type {pb.ToolType.Name(tool.type)}"
                       + (f" (the tool has `{which}` instead)" if which else "")))
    errors += schemas.problems(json_format.MessageToDict(tool.input_schema), "input_schema")
    errors += schemas.problems(json_format.MessageToDict(tool.output_schema), "output_schema")
    if which == "http":
        url = tool.http.url
        if not url:
            errors.append(("http.url", "is required"))
        elif not re.match(r"^https?://[^/{}]", url):
            errors.append(("http.url", "must be an http:// or https:// URL with a literal host"))
        if tool.http.method and tool.http.method.upper() not in METHODS:
            errors.append(("http.method", f"must be one of {', '.join(sorted(METHODS))}"))
        properties = json_format.MessageToDict(tool.input_schema).get("properties", {})
        for name in runners.URL_VARIABLE.findall(url):
            if name not in properties:
                errors.append(("http.url", f"placeholder {{{name}}} is not a property of "
                               "input_schema"))
    elif which == "mcp":
        if not tool.mcp.server_url:
            errors.append(("mcp.server_url", "is required"))
        elif not re.match(r"^https?://", tool.mcp.server_url):
            errors.append(("mcp.server_url", "must be an http:// or https:// URL"))
        if not tool.mcp.tool_name:
            errors.append(("mcp.tool_name", "is required"))
    elif which == "builtin":
        if tool.builtin.builtin_name not in builtins.BUILTINS:
            errors.append(("builtin.builtin_name", f"must be one of {', '.join(builtins.BUILTINS)}"))
    return errors


def prepare(tool: pb.Tool) -> None:
    """Create/update rules shared by both: the definition is consistent, the status is
    not DEPLOYED, and the secrets it references are listed in `secret_refs`."""
    if tool.status == pb.TOOL_STATUS_DEPLOYED:
        raise invalid_field("status", "DEPLOYED is set only by deploy")
    errors = definition_errors(tool)
    if errors:
        raise InvalidArgument("; ".join(f"{f}: {p}" for f, p in errors), field_violations=errors)
    referenced = runners.secret_names(tool, as_dict(tool.config))
    for name in sorted(referenced - set(tool.secret_refs)):
        tool.secret_refs.append(name)


def new_tool(spec: pb.Tool) -> pb.Tool:
    """The tool a create makes of `spec`: DRAFT unless a status is given, a builtin's input
    schema its function's unless one is given."""
    tool = pb.Tool()
    tool.CopyFrom(spec)
    check_name(tool.name)
    if tool.status == pb.TOOL_STATUS_UNSPECIFIED:
        tool.status = pb.TOOL_STATUS_DRAFT
    if tool.WhichOneof("typed_config") == "builtin" and not tool.HasField("input_schema") \
            and tool.builtin.builtin_name in builtins.BUILTINS:
        tool.input_schema.update(builtins.BUILTINS[tool.builtin.builtin_name][2])
    prepare(tool)
    return tool


def updated_tool(current: pb.Tool, update: dict[str, Any]) -> pb.Tool:
    """`current` with `update` applied, to check the result as a whole (a new typed config
    replaces the old one)."""
    merged = pb.Tool()
    merged.CopyFrom(current)
    patch = {k: v for k, v in update.items() if v is not None}
    for key in TYPED:
        if key in update:
            for other in TYPED:
                merged.ClearField(other)
    for key in update:
        merged.ClearField(key)
    json_format.ParseDict(patch, merged)
    prepare(merged)
    return merged
