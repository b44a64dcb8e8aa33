"""A template as a document a client keeps (export) and hands back (import): YAML or JSON of
its fields at one version."""

from __future__ import annotations

from typing import Any, Literal

from mesh.runtime import documents
from mesh.runtime.errors import invalid_field
from mesh.templates.models import TemplateRow, TemplateVersionRow

MAX_DOCUMENT = 1024 * 1024
DOCUMENT_KEYS = ("name", "description", "kind", "category", "tags", "content", "parameters",
                 "version")


def export(row: TemplateRow, version: TemplateVersionRow) -> dict[str, Any]:
    return {"name": row.name, "description": row.description, "kind": row.kind,
            "category": row.category, "tags": list(row.tags), "content": version.content,
            "parameters": version.parameters, "version": version.version}


def imported(content: bytes, syntax: Literal["json", "yaml"], name: str = "") -> dict[str, Any]:
    """The template fields of an exported document (its `version` is not kept: an import is a
    new template at version 1), renamed to `name` when given. Checked by the caller."""
    if not content:
        raise invalid_field("content", "is required: a document as export answers it")
    document = documents.parse(content, "content", syntax=syntax, max_bytes=MAX_DOCUMENT)
    if not isinstance(document, dict):
        raise invalid_field("content", "must be a mapping of template fields")
    unknown = [k for k in document if k not in DOCUMENT_KEYS]
    if unknown:
        raise invalid_field(str(unknown[0]), f"unknown field; known: {', '.join(DOCUMENT_KEYS)}")
    fields = {k: v for k, v in document.items() if k != "version"}
    if name:
        fields["name"] = name
    return fields
