"""The tools service's repositories and row <-> message: a tool's typed config lives in one
JSON column per type; executions; and the figures read from them."""

from __future__ import annotations

import json
import statistics
from typing import Any

from google.protobuf import json_format
from sqlmodel import Session, func, select

from agentmesh.tools.v1 import tools_pb2 as pb
from mesh.runtime.convert import to_message, values, writable
from mesh.runtime.repository import TenantRepository
from mesh.tools.models import ToolExecutionRow, ToolRow

WRITABLE = writable(pb.Tool)
COLUMN = {"http": "http_config", "mcp": "mcp_config", "builtin": "builtin_config"}


def _attach(message: pb.Tool, config_of) -> pb.Tool:
    """Sets the typed config from its JSON column (json_format reads its Duration)."""
    for key, column in COLUMN.items():
        value = config_of(column)
        if isinstance(value, str):
            value = json.loads(value)
        if value is not None:
            getattr(message, key).SetInParent()
            json_format.ParseDict(value, getattr(message, key))
    return message


class _ToolRepository(TenantRepository):
    def _convert(self, row: tuple) -> pb.Tool:
        message = super()._convert(row)
        return _attach(message, lambda column: row[self.columns.index(column)])


tools = _ToolRepository(ToolRow, noun="tool", message=pb.Tool,
                        search_columns=("name", "description"),
                        order_columns=("name", "status", "category"), quota="resource")
executions = TenantRepository(ToolExecutionRow, noun="tool_execution", message=pb.ToolExecution,
                              name_column=None)


def tool_message(row: ToolRow) -> pb.Tool:
    return _attach(to_message(row, pb.Tool), lambda column: getattr(row, column))


def row_fields(tool: pb.Tool) -> dict[str, Any]:
    """The row's columns of a tool message's writable fields."""
    fields = values(tool, WRITABLE - set(COLUMN))
    which = tool.WhichOneof("typed_config")
    for key, column in COLUMN.items():
        fields[column] = json_format.MessageToDict(getattr(tool, key),
                                                   preserving_proto_field_name=True) \
            if key == which else None
    return fields


def _percentile(durations: list[int], q: float) -> float:
    if not durations:
        return 0.0
    if len(durations) == 1:
        return float(durations[0])
    return float(statistics.quantiles(durations, n=100, method="inclusive")[int(q) - 1])


def tool_stats(session: Session, tenant_id: str, tool_key: str) -> pb.ToolStats:
    tool = tools.get(session, tenant_id, tool_key)
    rows = session.exec(select(ToolExecutionRow.status, ToolExecutionRow.duration_ms,
                               ToolExecutionRow.started_at).where(
        ToolExecutionRow.tenant_id == tenant_id, ToolExecutionRow.tool_id == tool.id)).all()
    durations = sorted(d for _, d, _ in rows)
    ok = sum(1 for s, _, _ in rows if s == "TOOL_EXECUTION_STATUS_COMPLETED")
    failed = sum(1 for s, _, _ in rows if s in ("TOOL_EXECUTION_STATUS_FAILED",
                                                "TOOL_EXECUTION_STATUS_TIMED_OUT"))
    out = pb.ToolStats(
        tool_id=tool.id, total_executions=len(rows), successful_executions=ok,
        failed_executions=failed,
        average_duration_ms=statistics.fmean(durations) if durations else 0.0,
        error_rate=failed / len(rows) if rows else 0.0,
        p50_duration_ms=_percentile(durations, 50), p95_duration_ms=_percentile(durations, 95))
    last = max((s for _, _, s in rows if s), default=None)
    if last:
        out.last_executed_at.FromDatetime(last)
    return out


def category_counts(session: Session, tenant_id: str) -> list[tuple[str, int]]:
    return list(session.exec(
        select(ToolRow.category, func.count()).where(
            ToolRow.tenant_id == tenant_id, ToolRow.category != "")
        .group_by(ToolRow.category).order_by(ToolRow.category)).all())


def type_counts(session: Session, tenant_id: str) -> dict[str, int]:
    return dict(session.exec(select(ToolRow.type, func.count())
                             .where(ToolRow.tenant_id == tenant_id).group_by(ToolRow.type)).all())
