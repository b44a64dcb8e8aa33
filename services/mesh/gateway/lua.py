"""The Lua filter (`gateway.lua`) with what it shares with Python filled in: the identity
headers it strips, the error trailer, the contract's REST routes (for its 405 check) and the
shape of every route's JSON body (`mesh.gateway.bodies`), and the gateway's body limit."""

from __future__ import annotations

import json
import re
from typing import Any

from mesh import resources
from mesh.contract import Contract
from mesh.gateway.bodies import SCALAR_NAMES, BodySchemas, enum_values
from mesh.gateway.envoy import EXTENSIONS
from mesh.gateway.options import GatewayOptions
from mesh.gateway.routes import template_pattern
from mesh.gateway.routes import MCP_PATH
from mesh.runtime.context import HTTP_STATUS_HEADER, IDENTITY_HEADERS
from mesh.runtime.errors import ERROR_TRAILER
from mesh.runtime.internal import HEADER as INTERNAL_TOKEN_HEADER

# Set by a local reply (mesh.gateway.replies) for a method no route takes: the Lua filter
# answers 405 with `Allow` for the path it carries.
UNDECLARED_METHOD_HEADER = "x-agentmesh-undeclared-method"


def _lua_literal(value: Any) -> str:
    """A Lua literal for strings, numbers, booleans, lists and string-keyed tables."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)  # JSON's escapes of ASCII text are Lua's
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "{" + ", ".join(_lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua_literal(k)}] = {_lua_literal(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"no Lua literal for {value!r}")


def _lua_pattern(template: str) -> str:
    """A Lua pattern matching a REST path template (`%` escapes every other character)."""
    return template_pattern(template, lambda segment: re.sub(r"([^A-Za-z0-9])", r"%\1", segment))


def _lua_routes(contract: Contract, schemas: BodySchemas) -> tuple[dict[str, list], list]:
    """The REST routes for the Lua 405 check and body check: templates with their methods and
    the shape of each method's JSON body (mesh.gateway.bodies), grouped by the key
    `gateway.lua`'s `route_key` computes (segment count and the first three segments)."""
    methods: dict[str, set[str]] = {}
    bodies: dict[str, dict[str, list]] = {}
    for rpc in contract.rpcs:
        for binding in rpc.bindings:
            methods.setdefault(binding.template, set()).add(binding.method)
            body = schemas.route_body(rpc, binding) if rpc.exposed else None
            if body is not None:
                bodies.setdefault(binding.template, {})[binding.method] = list(body)
    grouped: dict[str, list] = {}
    wildcard: list = []
    for template, allowed in sorted(methods.items()):
        segments = template.strip("/").split("/")
        # Literal segments: as in the transcoder, the routes with the most of them win
        # (`/tools/categories` over `/tools/{tool_id}`).
        literals = sum(1 for s in segments if not s.startswith("{"))
        entry = [_lua_pattern(template), sorted(allowed), literals, bodies.get(template, {})]
        if "**" in template or any(s.startswith("{") for s in segments[:3]):
            wildcard.append(entry)
        else:
            grouped.setdefault(f"{len(segments)}:{'/'.join(segments[:3])}", []).append(entry)
    return grouped, wildcard


def _openai_paths(contract: Contract) -> dict[str, str]:
    """The OpenAI-compatible door's paths, from the contract's ChatCompletionService."""
    paths = {rpc.name: rpc.bindings[0].template for rpc in contract.rpcs
             if rpc.service == "ChatCompletionService" and rpc.bindings}
    chat = paths.get("CreateChatCompletion", "/api/v1/openai/v1/chat/completions")
    return {"OPENAI_PREFIX": chat.split("/v1/chat/")[0] + "/",
            "OPENAI_CHAT_PATH": chat,
            "OPENAI_CHAT_STREAM_PATH": paths.get("StreamChatCompletion", chat + "/stream")}


def lua_source(contract: Contract) -> str:
    """`gateway.lua` with the names it shares with Python and the contract's routes filled in."""
    schemas = BodySchemas(contract)
    routes, wildcard = _lua_routes(contract, schemas)
    values = {
        "IDENTITY_HEADERS": [*IDENTITY_HEADERS, INTERNAL_TOKEN_HEADER],
        "ERROR_TRAILER": ERROR_TRAILER,
        "HTTP_STATUS_HEADER": HTTP_STATUS_HEADER,
        **_openai_paths(contract),
        "UNDECLARED_METHOD_HEADER": UNDECLARED_METHOD_HEADER,
        "MCP_PATH": MCP_PATH,
        "ROUTES": routes,
        "WILDCARD_ROUTES": wildcard,
        "BODY_TYPES": schemas.types,
        "SCALAR_NAMES": SCALAR_NAMES,
        "ENUM_VALUES": enum_values(contract),
    }
    source = resources.gateway_lua()
    for name, value in values.items():
        marker = f"__AGENTMESH_{name}__"
        if marker not in source:
            raise ValueError(f"gateway.lua has no {marker}")
        source = source.replace(marker, _lua_literal(value))
    left = re.findall(r"__AGENTMESH_[A-Z_]+__", source)
    if left:
        raise ValueError(f"gateway.lua: nothing fills in {', '.join(sorted(set(left)))}")
    return source


def lua_filter(contract: Contract, options: GatewayOptions) -> dict[str, Any]:
    """The first filter of the chain: gateway.lua with the contract's names and the gateway's
    own numbers filled in."""
    source = f"local MAX_REQUEST_BYTES = {int(options.max_request_bytes)}\n" + lua_source(contract)
    return {"name": "envoy.filters.http.lua", "typed_config": {
        "@type": f"{EXTENSIONS}filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": source}}}
