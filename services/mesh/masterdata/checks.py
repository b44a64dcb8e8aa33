"""Checks every masterdata resource shares: its name and its tags."""

from __future__ import annotations

import re

from mesh.runtime.errors import invalid_field
from mesh.runtime.tables import is_uuid

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str, reserved: tuple[str, ...] = ()) -> None:
    """A resource name; `reserved` are words that are paths of the API beside the resource's id
    (`/skills/categories`), so no resource may take them."""
    if not name:
        raise invalid_field("name", "is required")
    if not NAME.match(name) or is_uuid(name):
        raise invalid_field("name", "1-100 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit, and not a UUID")
    if name in reserved:
        raise invalid_field("name", f"{name!r} is reserved (it is a path of the API)")


def check_tags(tags: list[str]) -> None:
    for i, tag in enumerate(tags):
        if not tag or len(tag) > 64:
            raise invalid_field(f"tags[{i}]", "1-64 characters")
