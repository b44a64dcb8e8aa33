"""Tables of the templates service. A change here needs a migration:
`agentmesh db revision templates -m "..."`."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mesh.runtime.tables import TenantTable, json_field


class TemplateRow(TenantTable, table=True):
    __tablename__ = "templates"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_templates_tenant_name"),)

    name: str
    description: str = ""
    kind: str
    category: str = ""
    tags: list[str] = json_field(list)
    # The current version's content and parameters (copies of its TemplateVersionRow).
    content: dict[str, Any] = json_field(dict)
    parameters: list[dict[str, Any]] = json_field(list)
    version: int = 1
    labels: dict[str, int] = json_field(dict)
    created_by: str = ""


class TemplateVersionRow(TenantTable, table=True):
    """An immutable version of a template's content and parameters."""

    __tablename__ = "template_versions"
    __audit__ = False  # a record itself, not a change to audit
    __table_args__ = (sa.UniqueConstraint("template_id", "version",
                                          name="uq_template_versions_template_version"),)

    template_id: str = Field(index=True)
    version: int
    content: dict[str, Any] = json_field(dict)
    parameters: list[dict[str, Any]] = json_field(list)
    changelog: str = ""
    created_by: str = ""
