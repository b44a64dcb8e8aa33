"""ToolService: tools (http, builtin, mcp), their validation, deployment, executions and stats.
The rules are in mesh/tools/definition.py (what a definition must be) and running.py (running,
testing, validating against the world)."""

from __future__ import annotations

from sqlmodel import Session

from agentmesh.common.v1 import common_pb2
from agentmesh.tools.v1 import tools_pb2 as pb
from agentmesh.tools.v1 import tools_pb2_grpc as pb_grpc
from mesh.runtime.context import AGENT_HEADER, metadata_value, require_caller
from mesh.runtime import telemetry
from mesh.runtime.convert import changes, to_message
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import FailedPrecondition, invalid_field
from mesh.runtime.masterdata_client import MasterData
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.service import Runtime
from mesh.runtime.tables import utcnow
from mesh.tools import definition
from mesh.tools.models import ToolRow
from mesh.tools.running import ToolRunner
from mesh.tools.store import (COLUMN, WRITABLE, category_counts, row_fields, tool_message,
                              tool_stats, tools, type_counts)


def _window(items: list, page: PageRequest) -> dict:
    """One page of a list made in memory."""
    return Page(items[page.offset:page.offset + page.page_size], len(items), page.page,
                page.page_size).fields()


class ToolService(pb_grpc.ToolServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.runner = ToolRunner(runtime.database, MasterData(runtime.peers),
                                 EgressPolicy.from_settings(runtime.settings), runtime.peers)

    # ---- CRUD ---------------------------------------------------------------------------------
    async def ListTools(self, request: pb.ListToolsRequest, context) -> pb.ListToolsResponse:
        caller = require_caller(context)
        result = await tools.page(self.db, caller.tenant_id, PageRequest.of(request),
                                  search=request.search, filters={
                                      "status": pb.ToolStatus.Name(request.status)
                                      if request.status else None,
                                      "type": pb.ToolType.Name(request.type) if request.type else None,
                                      "category": request.category})
        return pb.ListToolsResponse(**result.fields())

    async def CreateTool(self, request: pb.CreateToolRequest, context) -> pb.Tool:
        caller = require_caller(context)
        tool = definition.new_tool(request.tool)
        await self.runner.check_secrets(tool)
        row = ToolRow(tenant_id=caller.tenant_id, created_by=caller.user_id, **row_fields(tool))
        return tool_message(await self.db.write(lambda s: tools.add(s, row)))

    async def GetTool(self, request: pb.GetToolRequest, context) -> pb.Tool:
        caller = require_caller(context)
        return await tools.fetch(self.db, caller.tenant_id, request.tool_id)

    async def UpdateTool(self, request: pb.UpdateToolRequest, context) -> pb.Tool:
        caller = require_caller(context)
        update = changes(request.tool, WRITABLE, list(request.update_mask.paths))
        if "name" in update:
            definition.check_name(update["name"])
        if update.get("status") == "TOOL_STATUS_DEPLOYED":
            raise invalid_field("status", "DEPLOYED is set only by deploy")
        current = await tools.fetch(self.db, caller.tenant_id, request.tool_id)
        merged = definition.updated_tool(current, update)
        await self.runner.check_secrets(merged)
        final = row_fields(merged)

        def apply(session: Session) -> ToolRow:
            row = tools.get(session, caller.tenant_id, request.tool_id, lock=True)
            for key in set(update) | {"secret_refs"}:
                if key not in definition.TYPED:
                    setattr(row, key, final[key])
            if any(key in update for key in definition.TYPED):
                for column in COLUMN.values():
                    setattr(row, column, final[column])
            row.version += 1
            return tools.save(session, row)

        return tool_message(await self.db.write(apply))

    async def DeleteTool(self, request: pb.DeleteToolRequest, context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = tools.get(session, caller.tenant_id, request.tool_id, lock=True)
            if row.status == "TOOL_STATUS_DEPLOYED":
                raise FailedPrecondition(f"tool {row.name!r} is deployed; set it ACTIVE or "
                                         "INACTIVE first", reason="TOOL_DEPLOYED",
                                         details={"tool": row.name})
            tools.delete(session, row)
            return row.name

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"tool {name!r} deleted")

    # ---- running ------------------------------------------------------------------------------
    async def ExecuteTool(self, request: pb.ExecuteToolRequest, context) -> pb.ToolExecution:
        caller = require_caller(context)
        tool = await tools.fetch(self.db, caller.tenant_id, request.tool_id)
        agent = metadata_value(context, AGENT_HEADER)
        if request.call_id:
            telemetry.annotate(agentmesh__call_id=request.call_id)
        return to_message(await self.runner.execute(caller, tool, request, agent=agent),
                          pb.ToolExecution)

    async def TestTool(self, request: pb.TestToolRequest, context) -> pb.TestToolResponse:
        caller = require_caller(context)
        tool = await tools.fetch(self.db, caller.tenant_id, request.tool_id)
        return await self.runner.test(caller, tool, request)

    async def ValidateTool(self, request: pb.ValidateToolRequest, context) -> pb.ValidateToolResponse:
        caller = require_caller(context)
        tool = await tools.fetch(self.db, caller.tenant_id, request.tool_id)
        errors = await self.runner.validate(tool)
        return pb.ValidateToolResponse(valid=not errors, errors=[
            pb.ValidationError(field=f, message=m) for f, m in errors])

    async def DeployTool(self, request: pb.DeployToolRequest, context) -> pb.Tool:
        caller = require_caller(context)
        tool = await tools.fetch(self.db, caller.tenant_id, request.tool_id)
        if tool.status == pb.TOOL_STATUS_DEPLOYED:
            raise FailedPrecondition(f"tool {tool.name!r} is already deployed",
                                     reason="TOOL_ALREADY_DEPLOYED", details={"tool": tool.name})
        errors = await self.runner.validate(tool)
        if errors:
            raise FailedPrecondition(
                f"tool {tool.name!r} does not validate: " + "; ".join(f"{f}: {m}" for f, m in errors),
                reason="TOOL_INVALID", details={"tool": tool.name}, field_violations=errors)

        def apply(session: Session) -> ToolRow:
            row = tools.get(session, caller.tenant_id, request.tool_id, lock=True)
            row.status = "TOOL_STATUS_DEPLOYED"
            row.deployed_at = utcnow()
            return tools.save(session, row)

        return tool_message(await self.db.write(apply))

    # ---- statistics ---------------------------------------------------------------------------
    async def GetToolStats(self, request: pb.GetToolStatsRequest, context) -> pb.ToolStats:
        caller = require_caller(context)
        return await self.db.read(lambda s: tool_stats(s, caller.tenant_id, request.tool_id))

    async def ListToolCategories(self, request, context) -> pb.ListToolCategoriesResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        counts = await self.db.read(lambda s: category_counts(s, caller.tenant_id))
        items = [pb.ToolCategory(name=name, count=count) for name, count in counts]
        return pb.ListToolCategoriesResponse(**_window(items, page))

    async def ListToolTypes(self, request, context) -> pb.ListToolTypesResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        counts = await self.db.read(lambda s: type_counts(s, caller.tenant_id))
        items = [pb.ToolTypeInfo(type=t, name=n, description=d,
                                 count=counts.get(pb.ToolType.Name(t), 0))
                 for t, n, d in definition.TYPES]
        return pb.ListToolTypesResponse(**_window(items, page))
