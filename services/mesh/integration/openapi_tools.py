"""An OpenAPI 3 document turned into `http` tool definitions: one per operation.

The tool's URL is the server URL (or the API connection's base URL) joined with the path, whose
`{param}` placeholders the tools service fills from the arguments; its input schema is a JSON
Schema object with one property per path and query parameter and, for a JSON request body, the
body's properties (an object body) or a `body` property (anything else). Local `$ref`s
(`#/components/...`) are resolved, to a bounded depth; others are refused.
"""

from __future__ import annotations

import re
from typing import Any

from mesh.runtime.errors import InvalidArgument

METHODS = ("get", "put", "post", "delete", "patch")
MAX_OPERATIONS = 100
_MAX_DEPTH = 8
_NAME_PART = re.compile(r"[^A-Za-z0-9_-]+")


def _problem(field: str, text: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {text}", reason="OPENAPI_DOCUMENT_INVALID",
                           field_violations=[(field, text)])


def _resolve(document: dict[str, Any], node: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        return {}
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith("#/"):
                raise _problem("openapi", f"only local $ref are supported, not {ref!r}")
            target: Any = document
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or part not in target:
                    raise _problem("openapi", f"$ref {ref!r} points nowhere")
                target = target[part]
            return _resolve(document, target, depth + 1)
        return {k: _resolve(document, v, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(document, v, depth + 1) for v in node]
    return node


def _operation_name(method: str, path: str, operation: dict[str, Any]) -> str:
    raw = operation.get("operationId")
    if not isinstance(raw, str) or not raw.strip():
        raw = f"{method}_{path.strip('/').replace('/', '_')}" or method
    return re.sub("_+", "_", _NAME_PART.sub("_", raw.strip())).strip("_")[:39] or method


def tools_from_openapi(document: Any, *, prefix: str, base_url: str = "") -> list[dict[str, Any]]:
    """[{name, description, method, url, input_schema}], one per operation."""
    if not isinstance(document, dict):
        raise _problem("openapi", "must be an OpenAPI 3 document (an object)")
    version = document.get("openapi")
    if not isinstance(version, str) or not version.startswith("3."):
        raise _problem("openapi.openapi", "only OpenAPI 3.x documents are supported")
    paths = document.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise _problem("openapi.paths", "the document has no paths")
    if not base_url:
        servers = document.get("servers")
        if isinstance(servers, list) and servers and isinstance(servers[0], dict):
            base_url = str(servers[0].get("url") or "")
    if not base_url.startswith(("http://", "https://")):
        raise _problem("openapi.servers", "give an absolute server URL in the document, or an "
                       "API connection whose base URL is used")
    tools, seen = [], set()
    for path, item in paths.items():
        if not isinstance(item, dict) or not isinstance(path, str):
            continue
        shared = item.get("parameters") if isinstance(item.get("parameters"), list) else []
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            operation = _resolve(document, operation)
            name = f"{prefix}.{_operation_name(method, path, operation)}"
            if name in seen:
                raise _problem(f"openapi.paths.{path}.{method}",
                               f"two operations make the tool name {name!r}")
            seen.add(name)
            properties: dict[str, Any] = {}
            required: list[str] = []
            parameters = [*_resolve(document, shared), *(operation.get("parameters") or [])]
            for parameter in parameters:
                if not isinstance(parameter, dict) or parameter.get("in") not in ("path", "query"):
                    continue
                pname = parameter.get("name")
                if not isinstance(pname, str) or not pname:
                    continue
                schema = parameter.get("schema") if isinstance(parameter.get("schema"), dict) \
                    else {"type": "string"}
                if parameter.get("description"):
                    schema = {**schema, "description": str(parameter["description"])[:500]}
                properties[pname] = schema
                if parameter.get("required") or parameter.get("in") == "path":
                    required.append(pname)
            body = operation.get("requestBody")
            if isinstance(body, dict):
                content = body.get("content") if isinstance(body.get("content"), dict) else {}
                media = content.get("application/json") or {}
                schema = media.get("schema") if isinstance(media, dict) else None
                if isinstance(schema, dict):
                    if schema.get("type") == "object" and isinstance(schema.get("properties"),
                                                                     dict):
                        properties.update(schema["properties"])
                        required.extend(r for r in schema.get("required") or []
                                        if isinstance(r, str))
                    else:
                        properties["body"] = schema
                        if body.get("required"):
                            required.append("body")
            input_schema: dict[str, Any] = {"type": "object", "properties": properties}
            if required:
                input_schema["required"] = list(dict.fromkeys(required))
            description = operation.get("summary") or operation.get("description") or \
                f"{method.upper()} {path}"
            tools.append({"name": name, "description": str(description)[:2000],
                          "method": method.upper(),
                          "url": base_url.rstrip("/") + "/" + path.lstrip("/"),
                          "input_schema": input_schema})
            if len(tools) > MAX_OPERATIONS:
                raise _problem("openapi.paths", f"at most {MAX_OPERATIONS} operations")
    if not tools:
        raise _problem("openapi.paths", "the document has no operations")
    return tools
