"""What a template must be: its name, kind and tags, its declared parameters (types from
mesh.templates.rules), and content whose every placeholder is safe (mesh.runtime.placeholders)
and declared."""

from __future__ import annotations

import re
from typing import Any

from mesh.runtime import placeholders
from mesh.runtime.convert import plain
from mesh.runtime.errors import InvalidArgument, invalid_field
from mesh.runtime.tables import is_uuid
from mesh.templates.rules import DEFAULT_TYPE, PARAMETER_TYPES, type_problem

KINDS = ("TEMPLATE_KIND_AGENT", "TEMPLATE_KIND_WORKFLOW", "TEMPLATE_KIND_TOOL")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_PARAMETER_KEYS = ("name", "description", "type", "required", "default_value")


def check_name(name: Any, field: str = "name") -> None:
    if not name:
        raise invalid_field(field, "is required")
    if not isinstance(name, str) or not _NAME.match(name) or is_uuid(name):
        raise invalid_field(field, "1-100 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit, and not a UUID")
    if name == "import":
        raise invalid_field(field, "'import' is reserved (it is a path of the API)")


def check_kind(kind: Any) -> str:
    """The kind's enum name; `agent`, `workflow` and `tool` are taken for their kinds."""
    if isinstance(kind, str) and kind.upper() in ("AGENT", "WORKFLOW", "TOOL"):
        kind = f"TEMPLATE_KIND_{kind.upper()}"
    if kind not in KINDS:
        raise invalid_field("kind", "one of TEMPLATE_KIND_AGENT, TEMPLATE_KIND_WORKFLOW, "
                            "TEMPLATE_KIND_TOOL")
    return kind


def parameters(raw: list[Any], field: str = "parameters") -> list[dict[str, Any]]:
    """The declared parameters, checked and normalised (a type, `required`, a default of the
    parameter's type)."""
    out, seen = [], set()
    for i, param in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(param, dict):
            raise invalid_field(where, "must be an object")
        unknown = [k for k in param if k not in _PARAMETER_KEYS]
        if unknown:
            raise invalid_field(f"{where}.{unknown[0]}", "unknown field")
        name = param.get("name")
        if not isinstance(name, str) or not _PARAM.match(name):
            raise invalid_field(f"{where}.name", "letters, digits and _, not starting with a digit")
        if name in seen:
            raise invalid_field(f"{where}.name", f"{name!r} is declared twice")
        seen.add(name)
        kind = param.get("type") or DEFAULT_TYPE
        if kind not in PARAMETER_TYPES:
            raise invalid_field(f"{where}.type", f"one of {', '.join(PARAMETER_TYPES)}")
        description = param.get("description") or ""
        if not isinstance(description, str):
            raise invalid_field(f"{where}.description", "must be a string")
        required = param.get("required", False)
        if not isinstance(required, bool):
            raise invalid_field(f"{where}.required", "must be true or false")
        entry: dict[str, Any] = {"name": name, "description": description, "type": kind,
                                 "required": required}
        if param.get("default_value") is not None:
            default = plain(param["default_value"])
            problem = type_problem(kind, default)
            if problem:
                raise invalid_field(f"{where}.default_value", problem)
            entry["default_value"] = default
        out.append(entry)
    return out


def _strings(node: Any, path: str):
    """(path, text) of every string value in `node` (object keys are not rendered)."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")


def check_content(content: Any, declared: list[dict[str, Any]], field: str = "content") -> None:
    if not isinstance(content, dict) or not content:
        raise invalid_field(field, "is required: the body of the resource, an object")
    names = {p["name"] for p in declared}
    try:  # counted before any text is parsed
        placeholders.check_count(sum(placeholders.count(t) for _, t in _strings(content, field)))
    except placeholders.TooManyPlaceholders as exc:
        raise placeholders.refusal(exc, "", field) from None
    for path, text in _strings(content, field):
        try:
            used = placeholders.check(text)
        except placeholders.PlaceholderError as exc:
            raise InvalidArgument(f"{path}: {exc}", reason="UNSAFE_TEMPLATE_EXPRESSION",
                                  field_violations=[(path, str(exc))]) from None
        undeclared = [n for n in used if n not in names]
        if undeclared:
            raise invalid_field(path, f"placeholder(s) {', '.join(undeclared)} not declared in "
                                "parameters")


def check_tags(tags: Any) -> list[str]:
    if not isinstance(tags, list):
        raise invalid_field("tags", "must be a list of strings")
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag or len(tag) > 64:
            raise invalid_field(f"tags[{i}]", "1-64 characters")
    return tags


def check_template(fields: dict[str, Any]) -> dict[str, Any]:
    """A full template's fields, checked and normalised (create and import)."""
    check_name(fields.get("name"))
    fields["kind"] = check_kind(fields.get("kind"))
    for key in ("description", "category"):
        if not isinstance(fields.get(key) or "", str):
            raise invalid_field(key, "must be a string")
        fields[key] = fields.get(key) or ""
    fields["tags"] = check_tags(fields.get("tags") or [])
    fields["parameters"] = parameters(fields.get("parameters") or [])
    fields["content"] = plain(fields.get("content"))
    check_content(fields["content"], fields["parameters"])
    return fields
