"""ToolService: tools (http, builtin, mcp), their validation, deployment, executions and stats."""

from __future__ import annotations

import json
import re
import statistics
from typing import Any

from google.protobuf import json_format
from sqlmodel import Session, func, select

from agentmesh.common.v1 import common_pb2
from agentmesh.tools.v1 import tools_pb2 as pb
from agentmesh.tools.v1 import tools_pb2_grpc as pb_grpc
from mesh.runtime import schemas
from mesh.runtime.context import require_caller
from mesh.runtime.convert import changes, to_message, values, writable
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import DomainError, FailedPrecondition, InvalidArgument, invalid_field
from mesh.runtime.masterdata_client import MasterData
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.repository import TenantRepository
from mesh.runtime.service import Runtime, ServiceDefinition
from mesh.runtime.tables import is_uuid, utcnow
from mesh.tools import builtins, runners
from mesh.tools.models import ToolExecutionRow, ToolRow

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_RESERVED = {"categories", "types"}
_WRITABLE = writable(pb.Tool)
_TYPED = ("http", "mcp", "builtin")
_TYPE_OF = {"http": pb.TOOL_TYPE_HTTP, "mcp": pb.TOOL_TYPE_MCP, "builtin": pb.TOOL_TYPE_BUILTIN}
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
_EXECUTABLE = {"TOOL_STATUS_ACTIVE", "TOOL_STATUS_DEPLOYED"}
_TYPES = [
    (pb.TOOL_TYPE_HTTP, "http", "An HTTP request to an endpoint (config `http`: url template, "
     "method, headers, timeout; `config.body` and `config.auth` for body mapping and "
     "credentials from a secret)."),
    (pb.TOOL_TYPE_BUILTIN, "builtin", "A function built into Agent Mesh that needs no network "
     f"(config `builtin.builtin_name`: {', '.join(builtins.BUILTINS)})."),
    (pb.TOOL_TYPE_MCP, "mcp", "A tool of a Model Context Protocol server reached over "
     "Streamable HTTP (config `mcp`: server_url, tool_name, timeout)."),
]
E = pb.ToolExecutionStatus

_COLUMN = {"http": "http_config", "mcp": "mcp_config", "builtin": "builtin_config"}


def _attach(message: pb.Tool, config_of) -> pb.Tool:
    """Sets the typed config from its JSON column (json_format reads its Duration)."""
    for key, column in _COLUMN.items():
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


def _check_name(name: str) -> None:
    if not name:
        raise invalid_field("name", "is required")
    if not _NAME.match(name) or is_uuid(name) or name in _RESERVED:
        raise invalid_field("name", "1-100 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit; not a UUID, 'categories' or 'types'")


def _tool(row: ToolRow) -> pb.Tool:
    return _attach(to_message(row, pb.Tool), lambda column: getattr(row, column))


def _row_fields(tool: pb.Tool) -> dict[str, Any]:
    """The row's columns of a tool message's writable fields."""
    fields = values(tool, _WRITABLE - set(_TYPED))
    which = tool.WhichOneof("typed_config")
    for key, column in _COLUMN.items():
        fields[column] = json_format.MessageToDict(getattr(tool, key),
                                                   preserving_proto_field_name=True) \
            if key == which else None
    return fields




def definition_errors(tool: pb.Tool) -> list[tuple[str, str]]:
    """What is wrong with a tool's definition, without looking anything up."""
    errors: list[tuple[str, str]] = []
    if tool.type == pb.TOOL_TYPE_UNSPECIFIED:
        errors.append(("type", "is required: TOOL_TYPE_HTTP, TOOL_TYPE_BUILTIN or TOOL_TYPE_MCP"))
    which = tool.WhichOneof("typed_config")
    expected = next((k for k, v in _TYPE_OF.items() if v == tool.type), None)
    if expected and which != expected:
        errors.append((expected, f"is required for type {pb.ToolType.Name(tool.type)}"
                       + (f" (the tool has `{which}` instead)" if which else "")))
    errors += schemas.problems(json_format.MessageToDict(tool.input_schema), "input_schema")
    errors += schemas.problems(json_format.MessageToDict(tool.output_schema), "output_schema")
    if which == "http":
        url = tool.http.url
        if not url:
            errors.append(("http.url", "is required"))
        elif not re.match(r"^https?://[^/{}]", url):
            errors.append(("http.url", "must be an http:// or https:// URL with a literal host"))
        if tool.http.method and tool.http.method.upper() not in _METHODS:
            errors.append(("http.method", f"must be one of {', '.join(sorted(_METHODS))}"))
        properties = json_format.MessageToDict(tool.input_schema).get("properties", {})
        for name in runners.URL_VARIABLE.findall(url):
            if name not in properties:
                errors.append(("http.url", f"placeholder {{{name}}} is not a property of "
                               "input_schema"))
    elif which == "mcp":
        if not tool.mcp.server_url:
            errors.append(("mcp.server_url", "is required"))
        elif not re.match(r"^https?://", tool.mcp.server_url):
            errors.append(("mcp.server_url", "must be an http:// or https:// URL"))
        if not tool.mcp.tool_name:
            errors.append(("mcp.tool_name", "is required"))
    elif which == "builtin":
        if tool.builtin.builtin_name not in builtins.BUILTINS:
            errors.append(("builtin.builtin_name", f"must be one of {', '.join(builtins.BUILTINS)}"))
    return errors


def _subset_errors(expected: Any, actual: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key, value in expected.items():
            if key not in actual:
                found.append((f"{path}.{key}", "is missing from the output"))
            else:
                found += _subset_errors(value, actual[key], f"{path}.{key}")
        return found
    if expected != actual:
        return [(path, f"expected {expected!r}, got {actual!r}")]
    return []


def _ints(value: Any) -> Any:
    """Struct numbers are doubles; whole ones are given to tools as integers."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def _as_dict(struct) -> dict[str, Any]:
    return _ints(json_format.MessageToDict(struct))


def _percentile(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


class ToolService(pb_grpc.ToolServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.masterdata = MasterData(runtime.peers)
        self.policy = EgressPolicy.from_settings(runtime.settings)

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

    async def _check_secrets(self, tool: pb.Tool) -> list[tuple[str, str]]:
        missing = []
        for name in sorted(runners.secret_names(tool, _as_dict(tool.config))):
            if not await self.masterdata.secret_exists(name):
                missing.append(("secret_refs", f"secret {name!r} does not exist"))
        return missing

    def _prepare(self, tool: pb.Tool) -> None:
        """Create/update rules shared by both: the definition is consistent, the status is
        not DEPLOYED, and the secrets it references are listed in `secret_refs`."""
        if tool.status == pb.TOOL_STATUS_DEPLOYED:
            raise invalid_field("status", "DEPLOYED is set only by deploy")
        errors = definition_errors(tool)
        if errors:
            raise InvalidArgument("; ".join(f"{f}: {p}" for f, p in errors),
                                  field_violations=errors)
        referenced = runners.secret_names(tool, _as_dict(tool.config))
        for name in sorted(referenced - set(tool.secret_refs)):
            tool.secret_refs.append(name)

    async def CreateTool(self, request: pb.CreateToolRequest, context) -> pb.Tool:
        caller = require_caller(context)
        tool = pb.Tool()
        tool.CopyFrom(request.tool)
        _check_name(tool.name)
        if tool.status == pb.TOOL_STATUS_UNSPECIFIED:
            tool.status = pb.TOOL_STATUS_DRAFT
        if tool.WhichOneof("typed_config") == "builtin" and not tool.HasField("input_schema") \
                and tool.builtin.builtin_name in builtins.BUILTINS:
            tool.input_schema.update(builtins.BUILTINS[tool.builtin.builtin_name][2])
        self._prepare(tool)
        missing = await self._check_secrets(tool)
        if missing:
            raise InvalidArgument(missing[0][1], reason="SECRET_NOT_FOUND",
                                  field_violations=missing)
        row = ToolRow(tenant_id=caller.tenant_id, created_by=caller.user_id, **_row_fields(tool))
        return _tool(await self.db.write(lambda s: tools.add(s, row)))

    async def GetTool(self, request: pb.GetToolRequest, context) -> pb.Tool:
        caller = require_caller(context)
        return await tools.fetch(self.db, caller.tenant_id, request.tool_id)

    async def UpdateTool(self, request: pb.UpdateToolRequest, context) -> pb.Tool:
        caller = require_caller(context)
        update = changes(request.tool, _WRITABLE, list(request.update_mask.paths))
        if "name" in update:
            _check_name(update["name"])
        if update.get("status") == "TOOL_STATUS_DEPLOYED":
            raise invalid_field("status", "DEPLOYED is set only by deploy")
        current = await tools.fetch(self.db, caller.tenant_id, request.tool_id)
        merged = pb.Tool()
        merged.CopyFrom(current)
        # Apply the change to a copy first, to check the result as a whole.
        patch = {k: v for k, v in update.items() if v is not None}
        for key in _TYPED:
            if key in update:
                for other in _TYPED:
                    merged.ClearField(other)
        for key in update:
            merged.ClearField(key)
        json_format.ParseDict(patch, merged)
        self._prepare(merged)
        missing = await self._check_secrets(merged)
        if missing:
            raise InvalidArgument(missing[0][1], reason="SECRET_NOT_FOUND",
                                  field_violations=missing)
        final = _row_fields(merged)

        def apply(session: Session) -> ToolRow:
            row = tools.get(session, caller.tenant_id, request.tool_id, lock=True)
            for key in set(update) | {"secret_refs"}:
                if key not in _TYPED:
                    setattr(row, key, final[key])
            if any(key in update for key in _TYPED):
                for column in _COLUMN.values():
                    setattr(row, column, final[column])
            row.version += 1
            return tools.save(session, row)

        return _tool(await self.db.write(apply))

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
    def _reveal(self, tool: pb.Tool):
        async def reveal(name: str) -> str:
            return await self.masterdata.reveal_secret(name, f"tool {tool.name}")
        return reveal

    async def ExecuteTool(self, request: pb.ExecuteToolRequest, context) -> pb.ToolExecution:
        caller = require_caller(context)
        tool = await tools.fetch(self.db, caller.tenant_id, request.tool_id)
        status = pb.ToolStatus.Name(tool.status)
        if status not in _EXECUTABLE:
            raise FailedPrecondition(
                f"tool {tool.name!r} is {status}; only ACTIVE or DEPLOYED tools run",
                reason="TOOL_NOT_EXECUTABLE", details={"tool": tool.name, "status": status})
        arguments = _as_dict(request.arguments)
        errors = await schemas.instance_errors_async(_as_dict(tool.input_schema), arguments,
                                                     "arguments", "input_schema",
                                                     tenant=caller.tenant_id)
        if errors:
            raise InvalidArgument("; ".join(f"{f}: {p}" for f, p in errors),
                                  reason="ARGUMENTS_INVALID", field_violations=errors)
        started = utcnow()
        outcome = await runners.run(tool, arguments, policy=self.policy,
                                    reveal=self._reveal(tool), tenant=caller.tenant_id)
        await self._check_output(tool, outcome, caller.tenant_id)
        row = ToolExecutionRow(
            tenant_id=caller.tenant_id, tool_id=tool.id, tool_version=tool.version,
            status=E.Name(outcome.status), input=arguments, output=outcome.output,
            error=outcome.error, duration_ms=outcome.duration_ms, started_at=started,
            ended_at=utcnow(), caller=caller.user_id, correlation_id=caller.correlation_id,
            call_id=request.call_id)
        saved = await self.db.write(lambda s: executions.add(s, row))
        if outcome.refusal is not None:
            outcome.refusal.details.setdefault("execution_id", saved.id)
            raise outcome.refusal
        return to_message(saved, pb.ToolExecution)

    @staticmethod
    async def _check_output(tool: pb.Tool, outcome: runners.Outcome,
                            tenant: str) -> list[tuple[str, str]]:
        if outcome.status != E.TOOL_EXECUTION_STATUS_COMPLETED:
            return []
        try:
            errors = await schemas.instance_errors_async(
                _as_dict(tool.output_schema), outcome.output, "output", "output_schema",
                tenant=tenant)
        except schemas.SchemaUnusable as exc:  # the tool ran: its execution is still recorded
            outcome.status, outcome.output = E.TOOL_EXECUTION_STATUS_FAILED, None
            outcome.error = exc.message
            return []
        if errors:
            outcome.status = E.TOOL_EXECUTION_STATUS_FAILED
            outcome.error = "the output does not match output_schema: " + "; ".join(
                f"{f}: {p}" for f, p in errors)
        return errors

    async def TestTool(self, request: pb.TestToolRequest, context) -> pb.TestToolResponse:
        caller = require_caller(context)
        tool = await tools.fetch(self.db, caller.tenant_id, request.tool_id)
        arguments = _as_dict(request.arguments)
        errors = await schemas.instance_errors_async(_as_dict(tool.input_schema), arguments,
                                                     "arguments", "input_schema",
                                                     tenant=caller.tenant_id)
        if errors:
            return pb.TestToolResponse(
                passed=False, status=E.TOOL_EXECUTION_STATUS_FAILED,
                error="the arguments do not match input_schema",
                errors=[pb.ValidationError(field=f, message=m) for f, m in errors])
        outcome = await runners.run(tool, arguments, policy=self.policy,
                                    reveal=self._reveal(tool), tenant=caller.tenant_id)
        errors = await self._check_output(tool, outcome, caller.tenant_id)
        if outcome.status == E.TOOL_EXECUTION_STATUS_COMPLETED and \
                request.HasField("expected_output"):
            errors += _subset_errors(_as_dict(request.expected_output), outcome.output, "output")
        answer = pb.TestToolResponse(
            passed=outcome.status == E.TOOL_EXECUTION_STATUS_COMPLETED and not errors,
            status=outcome.status, error=outcome.error, duration_ms=outcome.duration_ms,
            errors=[pb.ValidationError(field=f, message=m) for f, m in errors])
        if outcome.output is not None:
            answer.output.update(outcome.output)
        return answer

    async def _validate(self, tool: pb.Tool) -> list[tuple[str, str]]:
        errors = definition_errors(tool)
        errors += await self._check_secrets(tool)
        which = tool.WhichOneof("typed_config")
        target = tool.http.url if which == "http" else tool.mcp.server_url if which == "mcp" else ""
        field = "http.url" if which == "http" else "mcp.server_url"
        if target and not any(f == field for f, _ in errors):
            try:
                if which == "http":
                    host_only = runners.URL_VARIABLE.sub("x", runners.SECRET_REF.sub("x", target))
                    await self.policy.check_url(host_only)
                else:
                    names = await runners.list_mcp_tools(target, self.policy,
                                                         runners.timeout_of(tool))
                    if tool.mcp.tool_name not in names:
                        errors.append(("mcp.tool_name", f"the server has no tool "
                                       f"{tool.mcp.tool_name!r}; it offers: {', '.join(names)}"))
            except DomainError as exc:
                errors.append((field, exc.message))
            except runners.ToolFailed as exc:
                errors.append((field, str(exc)))
        return errors

    async def ValidateTool(self, request: pb.ValidateToolRequest, context) -> pb.ValidateToolResponse:
        caller = require_caller(context)
        tool = await tools.fetch(self.db, caller.tenant_id, request.tool_id)
        errors = await self._validate(tool)
        return pb.ValidateToolResponse(valid=not errors, errors=[
            pb.ValidationError(field=f, message=m) for f, m in errors])

    async def DeployTool(self, request: pb.DeployToolRequest, context) -> pb.Tool:
        caller = require_caller(context)
        tool = await tools.fetch(self.db, caller.tenant_id, request.tool_id)
        if tool.status == pb.TOOL_STATUS_DEPLOYED:
            raise FailedPrecondition(f"tool {tool.name!r} is already deployed",
                                     reason="TOOL_ALREADY_DEPLOYED", details={"tool": tool.name})
        errors = await self._validate(tool)
        if errors:
            raise FailedPrecondition(
                f"tool {tool.name!r} does not validate: " + "; ".join(f"{f}: {m}" for f, m in errors),
                reason="TOOL_INVALID", details={"tool": tool.name}, field_violations=errors)

        def apply(session: Session) -> ToolRow:
            row = tools.get(session, caller.tenant_id, request.tool_id, lock=True)
            row.status = "TOOL_STATUS_DEPLOYED"
            row.deployed_at = utcnow()
            return tools.save(session, row)

        return _tool(await self.db.write(apply))

    # ---- statistics ---------------------------------------------------------------------------
    async def GetToolStats(self, request: pb.GetToolStatsRequest, context) -> pb.ToolStats:
        caller = require_caller(context)

        def stats(session: Session) -> pb.ToolStats:
            tool = tools.get(session, caller.tenant_id, request.tool_id)
            rows = session.exec(select(ToolExecutionRow.status, ToolExecutionRow.duration_ms,
                                       ToolExecutionRow.started_at).where(
                ToolExecutionRow.tenant_id == caller.tenant_id,
                ToolExecutionRow.tool_id == tool.id)).all()
            durations = sorted(d for _, d, _ in rows)
            ok = sum(1 for s, _, _ in rows if s == "TOOL_EXECUTION_STATUS_COMPLETED")
            failed = sum(1 for s, _, _ in rows if s in ("TOOL_EXECUTION_STATUS_FAILED",
                                                        "TOOL_EXECUTION_STATUS_TIMED_OUT"))
            out = pb.ToolStats(
                tool_id=tool.id, total_executions=len(rows), successful_executions=ok,
                failed_executions=failed,
                average_duration_ms=statistics.fmean(durations) if durations else 0.0,
                error_rate=failed / len(rows) if rows else 0.0,
                p50_duration_ms=_percentile(durations, 50),
                p95_duration_ms=_percentile(durations, 95))
            last = max((s for _, _, s in rows if s), default=None)
            if last:
                out.last_executed_at.FromDatetime(last)
            return out

        return await self.db.read(stats)

    async def ListToolCategories(self, request, context) -> pb.ListToolCategoriesResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        counts = await self.db.read(lambda s: s.exec(
            select(ToolRow.category, func.count()).where(
                ToolRow.tenant_id == caller.tenant_id, ToolRow.category != "")
            .group_by(ToolRow.category).order_by(ToolRow.category)).all())
        items = [pb.ToolCategory(name=name, count=count) for name, count in counts]
        window = items[page.offset:page.offset + page.page_size]
        return pb.ListToolCategoriesResponse(**Page(window, len(items), page.page,
                                                    page.page_size).fields())

    async def ListToolTypes(self, request, context) -> pb.ListToolTypesResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        counts = dict(await self.db.read(lambda s: s.exec(
            select(ToolRow.type, func.count()).where(ToolRow.tenant_id == caller.tenant_id)
            .group_by(ToolRow.type)).all()))
        items = [pb.ToolTypeInfo(type=t, name=n, description=d,
                                 count=counts.get(pb.ToolType.Name(t), 0)) for t, n, d in _TYPES]
        window = items[page.offset:page.offset + page.page_size]
        return pb.ListToolTypesResponse(**Page(window, len(items), page.page,
                                               page.page_size).fields())


DEFINITION = ServiceDefinition("tools", servicers=[ToolService],
                               tables=[ToolRow, ToolExecutionRow])
