"""The template rules the OpenAPI document states too (`mesh.runtime.limits.When`): a
parameter's `default_value` must have the parameter's `type` (`PARAMETER_TYPES`, which the
service's own validation reads; an empty `type` is `string`)."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from mesh.runtime.limits import When

# A parameter's `type` -> the JSON Schema its values (and its default) must match.
DEFAULT_TYPE = "string"
PARAMETER_TYPES: dict[str, dict[str, Any]] = {
    kind: {"type": kind} for kind in ("string", "number", "integer", "boolean", "object", "array")
}
_VALIDATORS = {kind: Draft202012Validator(schema) for kind, schema in PARAMETER_TYPES.items()}


def is_of_type(kind: str, value: Any) -> bool:
    return _VALIDATORS[kind].is_valid(value)


def type_problem(kind: str, value: Any) -> str | None:
    """What is wrong with `value` as a value of a parameter of type `kind`, or None."""
    if is_of_type(kind, value):
        return None
    return f"{json.dumps(value)[:80]} is not of type {kind}"


def _default_schema(schema: dict[str, Any]) -> dict[str, Any]:
    # null is "no default" (proto3 JSON: a null Value reads as not set).
    return {"properties": {"default_value": {"anyOf": [schema, {"type": "null"}]}}}


CONDITIONS: dict[str, tuple[When, ...]] = {
    "agentmesh.templates.v1.TemplateParameter": tuple(
        # "" (or no type at all) is the default type.
        When("type", (kind, "") if kind == DEFAULT_TYPE else (kind,), _default_schema(schema))
        for kind, schema in PARAMETER_TYPES.items()),
}
