"""Constraints: the rules of each type (mesh.masterdata.rules), checked when written."""

from __future__ import annotations

from typing import Any

from mesh.masterdata.rules import CONSTRAINT_TYPES, rule_problems
from mesh.runtime.errors import InvalidArgument, invalid_field

# Paths of the API beside /constraints/{id}.
RESERVED = ("types",)
DEFAULT_ENFORCEMENT = "CONSTRAINT_ENFORCEMENT_BLOCK"


def check_rules(state: dict[str, Any]) -> None:
    """The constraint's `rules` fit its `constraint_type` (the whole state after a change)."""
    kind = state.get("constraint_type")
    if not kind or kind == "CONSTRAINT_TYPE_UNSPECIFIED":
        raise invalid_field("constraint_type",
                            f"is required: one of {', '.join(CONSTRAINT_TYPES)}")
    problems = rule_problems(kind, state.get("rules") or {})
    if problems:
        raise InvalidArgument(f"rules do not fit {kind}: " + "; ".join(
            f"{f}: {p}" for f, p in problems), reason="INVALID_CONSTRAINT_RULES",
            field_violations=problems, details={"constraint_type": kind})


def default_enforcement(fields: dict[str, Any]) -> None:
    """An unspecified enforcement blocks."""
    if fields.get("enforcement") == "CONSTRAINT_ENFORCEMENT_UNSPECIFIED":
        fields["enforcement"] = DEFAULT_ENFORCEMENT
