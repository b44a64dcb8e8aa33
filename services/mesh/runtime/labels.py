"""Labels on immutably versioned resources (prompts, templates): a name such as `production`
that points at one version and moves atomically. One rule set for every such resource."""

from __future__ import annotations

import re
from typing import Any

from mesh.runtime.errors import NotFound, invalid_field

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")


def check(label: str, version: int) -> None:
    """A label to set: a name of 1-50 letters, digits, '.', '_' or '-', and a version from 1."""
    if not LABEL.match(label):
        raise invalid_field("label", "1-50 letters, digits, '.', '_' or '-'")
    if version < 1:
        raise invalid_field("version", "is required (a version number from 1)")


def point(row: Any, label: str, version: int) -> int | None:
    """Points `label` of `row` (its `labels` JSON column) at `version`; the previous one."""
    previous = row.labels.get(label)
    row.labels = {**row.labels, label: version}
    return previous


def remove(row: Any, label: str, noun: str) -> None:
    """Removes `label` from `row`, or NOT_FOUND (`<NOUN>_LABEL_NOT_FOUND`)."""
    if label not in row.labels:
        raise NotFound(f"{noun} {row.name!r} has no label {label!r}",
                       reason=f"{noun.upper()}_LABEL_NOT_FOUND", details={"label": label})
    row.labels = {k: v for k, v in row.labels.items() if k != label}
