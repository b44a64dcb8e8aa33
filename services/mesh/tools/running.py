"""Running a tool for a caller: its status and arguments checked, the run (mesh/tools/runners.py)
with secrets revealed only there, the output held to `output_schema`, the execution recorded;
the same without a record for a test against an expected output; and validating a tool
against the world (its secrets exist, its host is allowed, its MCP server offers the tool)."""

from __future__ import annotations

from typing import Any

from agentmesh.tools.v1 import tools_pb2 as pb
from mesh.governance import client as governance
from mesh.runtime import schemas
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import DomainError, FailedPrecondition, InvalidArgument
from mesh.runtime.masterdata_client import MasterData
from mesh.runtime.tables import utcnow
from mesh.tools import runners
from mesh.tools.definition import as_dict, definition_errors
from mesh.tools.models import ToolExecutionRow
from mesh.tools.store import executions

E = pb.ToolExecutionStatus
EXECUTABLE = {"TOOL_STATUS_ACTIVE", "TOOL_STATUS_DEPLOYED"}


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


async def _check_output(tool: pb.Tool, outcome: runners.Outcome,
                        tenant: str) -> list[tuple[str, str]]:
    """A completed run whose output does not match `output_schema` failed."""
    if outcome.status != E.TOOL_EXECUTION_STATUS_COMPLETED:
        return []
    try:
        errors = await schemas.instance_errors_async(
            as_dict(tool.output_schema), outcome.output, "output", "output_schema",
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


class ToolRunner:
    def __init__(self, db: Database, masterdata: MasterData, policy: EgressPolicy,
                 peers=None) -> None:
        self.db = db
        self.masterdata = masterdata
        self.policy = policy
        self.peers = peers

    async def missing_secrets(self, tool: pb.Tool) -> list[tuple[str, str]]:
        missing = []
        for name in sorted(runners.secret_names(tool, as_dict(tool.config))):
            if not await self.masterdata.secret_exists(name):
                missing.append(("secret_refs", f"secret {name!r} does not exist"))
        return missing

    async def check_secrets(self, tool: pb.Tool) -> None:
        missing = await self.missing_secrets(tool)
        if missing:
            raise InvalidArgument(missing[0][1], reason="SECRET_NOT_FOUND",
                                  field_violations=missing)

    async def _run(self, tool: pb.Tool, arguments: dict[str, Any], tenant: str
                   ) -> runners.Outcome:
        async def reveal(name: str) -> str:
            return await self.masterdata.reveal_secret(name, f"tool {tool.name}")
        return await runners.run(tool, arguments, policy=self.policy, reveal=reveal,
                                 tenant=tenant)

    async def execute(self, caller: Caller, tool: pb.Tool, request: pb.ExecuteToolRequest,
                      agent: str = "") -> ToolExecutionRow:
        """Runs the tool and records the execution; a refusal (egress) is raised after it is
        recorded, naming it. Governance decides the call first (`call_tool` on the tool, the
        caller as principal) unless an agent's loop already decided it as the agent (`agent`);
        a denial is 403 `GOVERNANCE_DENIED` carrying the decision, and nothing runs."""
        status = pb.ToolStatus.Name(tool.status)
        if status not in EXECUTABLE:
            raise FailedPrecondition(
                f"tool {tool.name!r} is {status}; only ACTIVE or DEPLOYED tools run",
                reason="TOOL_NOT_EXECUTABLE", details={"tool": tool.name, "status": status})
        arguments = as_dict(request.arguments)
        errors = await schemas.instance_errors_async(as_dict(tool.input_schema), arguments,
                                                     "arguments", "input_schema",
                                                     tenant=caller.tenant_id)
        if errors:
            raise InvalidArgument("; ".join(f"{f}: {p}" for f, p in errors),
                                  reason="ARGUMENTS_INVALID", field_violations=errors)
        if not agent and self.peers is not None:
            await governance.require(self.peers, f"tool {tool.name!r}", action="call_tool",
                                     resource_type="Tool", resource_id=tool.name,
                                     arguments=arguments)
        started = utcnow()
        outcome = await self._run(tool, arguments, caller.tenant_id)
        await _check_output(tool, outcome, caller.tenant_id)
        row = ToolExecutionRow(
            tenant_id=caller.tenant_id, tool_id=tool.id, tool_version=tool.version,
            status=E.Name(outcome.status), input=arguments, output=outcome.output,
            error=outcome.error, duration_ms=outcome.duration_ms, started_at=started,
            ended_at=utcnow(), caller=caller.user_id, correlation_id=caller.correlation_id,
            call_id=request.call_id)
        saved = await self.db.write(lambda s: executions.add(s, row), inline=True)
        if outcome.refusal is not None:
            outcome.refusal.details.setdefault("execution_id", saved.id)
            raise outcome.refusal
        return saved

    async def test(self, caller: Caller, tool: pb.Tool, request: pb.TestToolRequest
                   ) -> pb.TestToolResponse:
        """Runs the tool without recording it, and compares with `expected_output` (a subset
        of the output)."""
        arguments = as_dict(request.arguments)
        errors = await schemas.instance_errors_async(as_dict(tool.input_schema), arguments,
                                                     "arguments", "input_schema",
                                                     tenant=caller.tenant_id)
        if errors:
            return pb.TestToolResponse(
                passed=False, status=E.TOOL_EXECUTION_STATUS_FAILED,
                error="the arguments do not match input_schema",
                errors=[pb.ValidationError(field=f, message=m) for f, m in errors])
        outcome = await self._run(tool, arguments, caller.tenant_id)
        errors = await _check_output(tool, outcome, caller.tenant_id)
        if outcome.status == E.TOOL_EXECUTION_STATUS_COMPLETED and \
                request.HasField("expected_output"):
            errors += _subset_errors(as_dict(request.expected_output), outcome.output, "output")
        answer = pb.TestToolResponse(
            passed=outcome.status == E.TOOL_EXECUTION_STATUS_COMPLETED and not errors,
            status=outcome.status, error=outcome.error, duration_ms=outcome.duration_ms,
            errors=[pb.ValidationError(field=f, message=m) for f, m in errors])
        if outcome.output is not None:
            answer.output.update(outcome.output)
        return answer

    async def validate(self, tool: pb.Tool) -> list[tuple[str, str]]:
        """Everything wrong with the tool: its definition, missing secrets, a host the egress
        guard refuses, an MCP server without the tool."""
        errors = definition_errors(tool)
        errors += await self.missing_secrets(tool)
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
