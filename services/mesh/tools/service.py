"""The tools service: ToolService (mesh/tools/api/tools.py): tools (http, builtin, mcp), their
validation, deployment, executions and stats."""

from __future__ import annotations

from mesh.runtime.service import ServiceDefinition
from mesh.tools.api.tools import ToolService
from mesh.tools.models import ToolExecutionRow, ToolRow

DEFINITION = ServiceDefinition("tools", servicers=[ToolService],
                               tables=[ToolRow, ToolExecutionRow])
