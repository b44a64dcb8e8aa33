"""A template version rendered with the caller's values: each value checked against its
parameter's type, defaults filled in, the content rendered safely (mesh.runtime.placeholders)."""

from __future__ import annotations

from typing import Any

from mesh.runtime import placeholders
from mesh.runtime.convert import plain
from mesh.runtime.errors import InvalidArgument
from mesh.templates.rules import type_problem


def values(declared: list[dict[str, Any]], given: dict[str, Any]) -> tuple[dict, list[str]]:
    """The value of each parameter (given, else its default, else empty for an optional one),
    and the required ones that have none. An unknown or mistyped value is a 400."""
    by_name = {p["name"]: p for p in declared}
    unknown = sorted(k for k in given if k not in by_name)
    if unknown:
        raise InvalidArgument(f"unknown parameter(s) {', '.join(unknown)}",
                              reason="UNKNOWN_TEMPLATE_PARAMETER",
                              field_violations=[(f"parameters.{k}", "unknown parameter")
                                                for k in unknown])
    out, missing, wrong = {}, [], []
    for name, param in by_name.items():
        if name in given:
            value = plain(given[name])
            problem = type_problem(param["type"], value)
            if problem:
                wrong.append((f"parameters.{name}", problem))
            out[name] = value
        elif "default_value" in param:
            out[name] = param["default_value"]
        elif param["required"]:
            missing.append(name)
        else:
            out[name] = "" if param["type"] == "string" else None
    if wrong:
        raise InvalidArgument("parameter(s) of the wrong type: " + "; ".join(
            f"{f}: {p}" for f, p in wrong), reason="TEMPLATE_PARAMETER_TYPE",
            field_violations=wrong)
    return out, missing


def require(missing: list[str]) -> None:
    """Instantiating needs every required parameter."""
    if missing:
        raise InvalidArgument(f"missing required parameter(s) {', '.join(missing)}",
                              reason="TEMPLATE_PARAMETERS_MISSING",
                              details={"missing": ",".join(missing)},
                              field_violations=[(f"parameters.{n}", "is required")
                                                for n in missing])


async def render(content: Any, values_: dict[str, Any], *, keep_missing: bool,
                 tenant_id: str) -> Any:
    """The content rendered: its size bounded before anything is built (400
    RENDERED_TOO_LARGE), large renderings in the sandbox (mesh.runtime.placeholders)."""
    try:
        return await placeholders.render_tree_async(content, values_, keep_missing=keep_missing,
                                                    tenant=tenant_id)
    except placeholders.PlaceholderError as exc:
        raise placeholders.refusal(exc, "TEMPLATE_RENDER_FAILED", "parameters") from None
