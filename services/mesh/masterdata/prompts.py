"""Prompts: the variables of a version, and rendering one with the caller's values. Versions
and labels follow the shared rules (mesh.runtime.versions, `store.PROMPT_VERSIONS`)."""

from __future__ import annotations

import re
from typing import Any

from mesh.runtime import placeholders
from mesh.runtime.errors import InvalidArgument, invalid_field

# Paths of the API beside /prompts/{id}.
RESERVED = ("categories",)
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def variables(content: str, declared: list[dict[str, Any]] | None,
              previous: list[dict[str, Any]] | None = None,
              field: str = "variables") -> list[dict[str, Any]]:
    """The variables of a version. Declared ones must cover every placeholder; with none
    declared, the previous version's are kept and new placeholders become required variables."""
    if not content:
        raise invalid_field("content", "is required")
    try:
        placeholders.check_count(placeholders.count(content))  # before it is parsed
        used = placeholders.check(content)
    except placeholders.TooManyPlaceholders as exc:
        raise placeholders.refusal(exc, "", "content") from None
    except placeholders.PlaceholderError as exc:
        raise invalid_field("content", str(exc)) from None
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, var in enumerate(declared or []):
        name = var.get("name", "")
        if not _VARIABLE.match(name):
            raise invalid_field(f"{field}[{i}].name", "letters, digits and _, not starting "
                                "with a digit")
        if name in seen:
            raise invalid_field(f"{field}[{i}].name", f"{name!r} is declared twice")
        seen.add(name)
        out.append({"name": name, "description": var.get("description", ""),
                    "required": bool(var.get("required", False)),
                    "default_value": var.get("default_value", "")})
    if declared:
        undeclared = [n for n in used if n not in seen]
        if undeclared:
            raise invalid_field("content", f"placeholder(s) {', '.join(undeclared)} not "
                                f"declared in {field}")
        return out
    kept = {v["name"]: v for v in previous or []}
    return [kept.get(n) or {"name": n, "description": "", "required": True, "default_value": ""}
            for n in used]


async def render(name: str, content: str, declared: list[dict[str, Any]],
                 given: dict[str, str], tenant_id: str) -> str:
    """`content` with each placeholder's value: given, else the variable's default, else ""
    for an optional one; a required one without a value is a 400 naming every such variable."""
    by_name = {v["name"]: v for v in declared}
    values: dict[str, Any] = {}
    missing = []
    for placeholder in placeholders.check(content):
        var = by_name.get(placeholder, {"required": True, "default_value": ""})
        if placeholder in given:
            values[placeholder] = given[placeholder]
        elif var.get("default_value"):
            values[placeholder] = var["default_value"]
        elif var.get("required"):
            missing.append(placeholder)
        else:
            values[placeholder] = ""
    if missing:
        raise InvalidArgument(
            f"missing value for variable(s) {', '.join(missing)} of prompt {name!r}",
            reason="PROMPT_VARIABLES_MISSING", details={"missing": ",".join(missing)},
            field_violations=[(f"variables.{n}", "is required") for n in missing])
    try:
        # Bounded before it is built; long prompts render in the sandbox.
        return await placeholders.render_async(content, values, tenant=tenant_id)
    except placeholders.PlaceholderError as exc:
        raise placeholders.refusal(exc, "PROMPT_RENDER_FAILED", "variables") from None
