"""Tables of the tools service. A change here needs a migration:
`agentmesh db revision tools -m "..."` writes it; tests/runtime/test_migrations.py fails until it
exists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mesh.runtime.tables import TenantTable, json_field, timestamp_field


def _optional_json() -> Any:
    """A JSON column where Python None is SQL NULL (an unset typed config)."""
    return Field(default=None, sa_type=sa.JSON(none_as_null=True), nullable=True)


class ToolRow(TenantTable, table=True):
    __tablename__ = "tools"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_tools_tenant_name"),)

    name: str
    description: str = ""
    type: str = "TOOL_TYPE_UNSPECIFIED"
    category: str = ""
    input_schema: dict[str, Any] = json_field(dict)
    output_schema: dict[str, Any] = json_field(dict)
    config: dict[str, Any] = json_field(dict)
    # The typed config (`Tool.http`, `.mcp`, `.builtin`): at most one is set. Named apart from
    # the fields because a Duration inside is read with json_format (mesh.tools.store).
    http_config: dict[str, Any] | None = _optional_json()
    mcp_config: dict[str, Any] | None = _optional_json()
    builtin_config: dict[str, Any] | None = _optional_json()
    secret_refs: list[str] = json_field(list)
    status: str = "TOOL_STATUS_DRAFT"
    version: int = 1
    labels: dict[str, str] = json_field(dict)
    deployed_at: datetime | None = timestamp_field()
    created_by: str = ""


class ToolExecutionRow(TenantTable, table=True):
    __tablename__ = "tool_executions"
    __audit__ = False  # a record itself, not a change to audit
    __table_args__ = (sa.Index("ix_tool_executions_tool", "tenant_id", "tool_id", "started_at"),)

    tool_id: str
    tool_version: int = 1
    status: str = "TOOL_EXECUTION_STATUS_RUNNING"
    input: dict[str, Any] = json_field(dict)
    output: dict[str, Any] | None = _optional_json()
    error: str = ""
    duration_ms: int = 0
    started_at: datetime | None = timestamp_field()
    ended_at: datetime | None = timestamp_field()
    caller: str = ""
    correlation_id: str = ""
    call_id: str = ""
