"""The tenant's agents, workflows, tools and prompts as one MCP server (docs/mcp.md).

The gateway routes `/api/v1/mcp` (Streamable HTTP) to the integration service's MCP listener
(mesh/integration/mcp_listener.py) after it has authenticated the request exactly as for REST
(a bearer JWT or an API key, its scopes, the per-tenant rate limits) and set the identity
headers. Every handler here reads that identity from the HTTP request and calls the owning
service over gRPC as the caller, so governance decisions, the audit trail, the call records and
the tenant's isolation are the REST API's own. Nothing here goes outside the mesh.

    MCP                      scope                 the service's RPC
    tool  agent_<name>       agents:execute        InteractWithAgent (a running agent)
    tool  workflow_<slug>    workflows:execute     ExecuteWorkflow, then WatchExecution (an
                                                   ACTIVE workflow; progress notifications)
    tool  tool_<name>        tools:execute         ExecuteTool (an ACTIVE or DEPLOYED tool)
    tool  mesh_start_workflow, mesh_get_execution  workflows:execute   a run in the
                                                   background, then its state and outputs
    prompt <name>[@label]    masterdata:read       RenderPrompt at label `production` by default

A caller lists and calls only what its scopes allow. Arguments a service refuses are an MCP
error (INVALID_PARAMS) naming the field; what the call itself ends with (a governance denial,
a failed call) is a tool result with `isError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from mcp import types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.masterdata.v1 import masterdata_pb2, masterdata_pb2_grpc
from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from mesh import contract
from mesh.runtime.context import (API_KEY_HEADER, CORRELATION_HEADER, MCP_CLIENT_HEADER,
                                  SCOPES_HEADER, SESSION_HEADER, TENANT_HEADER, TOKEN_IAT_HEADER,
                                  USER_HEADER)
from mesh.runtime.errors import peer_envelope
from mesh.runtime.peers import Peers
from mesh.runtime.scopes import holds

AGENT_PREFIX, WORKFLOW_PREFIX, TOOL_PREFIX = "agent_", "workflow_", "tool_"
AGENTS_SCOPE, WORKFLOWS_SCOPE, TOOLS_SCOPE = "agents:execute", "workflows:execute", "tools:execute"
PROMPTS_SCOPE = "masterdata:read"
# Any of these lets a caller in at the gateway (mesh.gateway.routes): each shows something.
SCOPES = (AGENTS_SCOPE, WORKFLOWS_SCOPE, TOOLS_SCOPE, PROMPTS_SCOPE)
DEFAULT_LABEL = "production"
RUNNABLE_AGENTS = ("AGENT_STATUS_ACTIVE", "AGENT_STATUS_DEPLOYED")
EXECUTABLE_TOOLS = ("TOOL_STATUS_ACTIVE", "TOOL_STATUS_DEPLOYED")
ENDED = contract.default().final_values("agentmesh.workflows.v1.ExecutionStatus")
# A workflow run is followed at most this long over one tools/call (its execution goes on).
WATCH_SECONDS = 3600.0
PAGE = 100
INVALID_PARAMS, INTERNAL_ERROR = types.INVALID_PARAMS, types.INTERNAL_ERROR
# MCP tool names: letters, digits, `_`, `-`, `.`, at most 128 characters.
_INVALID = re.compile(r"[^A-Za-z0-9_.-]")

# Long runs without holding a connection: start a workflow, then ask for its execution.
MESH_PREFIX = "mesh_"
START_WORKFLOW, GET_EXECUTION = "mesh_start_workflow", "mesh_get_execution"
START_INPUT = {
    "type": "object",
    "properties": {
        "workflow": {"type": "string",
                     "description": "The workflow's slug (its tool's name without workflow_)."},
        "inputs": {"type": "object", "description": "The workflow's inputs."},
        "version": {"type": "integer", "minimum": 1,
                    "description": "Run this version (optional; default: the label's)."},
        "label": {"type": "string",
                  "description": "Run the version this label points at (optional; default: "
                                 "production when set, else latest)."}},
    "required": ["workflow"],
    "additionalProperties": False,
}
EXECUTION_INPUT = {
    "type": "object",
    "properties": {
        "execution_id": {"type": "string", "description": "The execution's id."},
        "wait_seconds": {"type": "number", "minimum": 0, "maximum": 300,
                         "description": "Wait at most this long for it to end (default 0)."}},
    "required": ["execution_id"],
    "additionalProperties": False,
}
AGENT_INPUT = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "description": "The message to the agent."},
        "thread_id": {"type": "string",
                      "description": "Continue this conversation thread (optional)."},
        "version": {"type": "integer", "minimum": 1,
                    "description": "Run this version (optional; default: the label's)."},
        "label": {"type": "string",
                  "description": "Run the version this label points at (optional; default: "
                                 "production when set, else latest)."}},
    "required": ["message"],
    "additionalProperties": False,
}


def _version_and_label(arguments: dict) -> dict:
    """The optional `version` and `label` arguments (issue 29), checked, as request fields."""
    version, label = arguments.get("version", 0), arguments.get("label", "")
    if "version" in arguments and (isinstance(version, bool) or not isinstance(version, int)
                                   or version < 1):
        raise MCPError(INVALID_PARAMS, "version: a whole number from 1 is required",
                       {"field": "version", "reason": "ARGUMENTS_INVALID"})
    if not isinstance(label, str):
        raise MCPError(INVALID_PARAMS, "label: a text is required",
                       {"field": "label", "reason": "ARGUMENTS_INVALID"})
    return {"version": version, "label": label}


def tool_name(prefix: str, name: str) -> str:
    return (prefix + _INVALID.sub("_", name))[:128]


@dataclass(frozen=True)
class Identity:
    """The caller the gateway verified (its identity headers on the HTTP request)."""

    tenant_id: str
    user_id: str
    scopes: frozenset[str]
    api_key_id: str = ""
    correlation_id: str = ""
    session_id: str = ""
    token_iat: str = ""

    @classmethod
    def of(cls, headers: Any) -> "Identity":
        scopes = (headers.get(SCOPES_HEADER) or "").replace(",", " ").split()
        return cls(headers.get(TENANT_HEADER) or "", headers.get(USER_HEADER) or "",
                   frozenset(scopes), headers.get(API_KEY_HEADER) or "",
                   headers.get(CORRELATION_HEADER) or "", headers.get(SESSION_HEADER) or "",
                   headers.get(TOKEN_IAT_HEADER) or "")

    def may(self, scope: str) -> bool:
        return holds(self.scopes, scope)

    def metadata(self, client: str) -> tuple[tuple[str, str], ...]:
        """The headers of a call made as this caller, with the MCP client's name."""
        found = [(TENANT_HEADER, self.tenant_id), (USER_HEADER, self.user_id),
                 (SCOPES_HEADER, " ".join(sorted(self.scopes))),
                 (CORRELATION_HEADER, self.correlation_id), (MCP_CLIENT_HEADER, client or "mcp")]
        for key, value in ((API_KEY_HEADER, self.api_key_id), (SESSION_HEADER, self.session_id),
                           (TOKEN_IAT_HEADER, self.token_iat)):
            if value:
                found.append((key, value))
        return tuple(found)


def _headers(ctx) -> Any:
    """The HTTP request's headers: the request a handshake-era message came on, or those the
    transport keeps for a request of the current protocol revision (one request, one POST)."""
    if ctx.request is not None:
        return ctx.request.headers
    outbound = getattr(ctx.session, "_request_outbound", None)
    return getattr(getattr(outbound, "transport", None), "headers", None) or {}


def _identity(ctx) -> Identity:
    identity = Identity.of(_headers(ctx))
    if not identity.tenant_id:
        # Only the gateway reaches this listener, and it sets the tenant on every request.
        raise MCPError(types.INVALID_REQUEST, "no verified tenant on this request; send a "
                                              "bearer token or an API key through the gateway")
    return identity


def _client_name(ctx) -> str:
    """The MCP client's name: from its session (mesh/integration/mcp_listener.py keeps the
    handshake's), the handshake itself, or a modern request's _meta."""
    labelled = _headers(ctx).get(MCP_CLIENT_HEADER)
    if labelled:
        return labelled[:100]
    params = getattr(ctx.session, "client_params", None)
    info = getattr(params, "client_info", None)
    if info is not None and info.name:
        return info.name[:100]
    meta = (ctx.params or {}).get("_meta") or {}
    found = meta.get(types.CLIENT_INFO_META_KEY) if isinstance(meta, dict) else None
    if isinstance(found, dict) and isinstance(found.get("name"), str):
        return found["name"][:100]
    return "mcp"


def _wants_progress(ctx) -> bool:
    """Whether the request carries a progress token (the client takes progress)."""
    meta = ctx.meta or {}
    raw = (ctx.params or {}).get("_meta") or {}
    return bool(meta.get("progress_token") or meta.get("progressToken")
                or (isinstance(raw, dict) and raw.get("progressToken")))


def _as_dict(message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    found = struct_pb2.Struct()
    found.update(value)
    return found


@dataclass
class Refusal:
    """A service's error, read from its envelope trailer."""

    code: grpc.StatusCode
    message: str
    reason: str
    details: dict[str, Any]
    violations: list[dict[str, str]]

    @classmethod
    def of(cls, error: grpc.aio.AioRpcError) -> "Refusal":
        envelope = peer_envelope(error)
        details = dict(envelope.get("details") or {})
        violations = [v for v in details.pop("field_violations", []) if isinstance(v, dict)]
        return cls(error.code(), envelope.get("message") or error.details() or "the call failed",
                   str(details.pop("reason", "") or error.code().name), details, violations)

    def invalid_params(self) -> MCPError:
        """Arguments refused: INVALID_PARAMS naming the field(s)."""
        fields = [v.get("field", "") for v in self.violations if v.get("field")]
        message = self.message
        if fields and not any(f in message for f in fields):
            message = f"{', '.join(fields)}: {message}"
        return MCPError(INVALID_PARAMS, message,
                        {"reason": self.reason, "field_violations": self.violations,
                         **({"field": fields[0]} if fields else {})})

    def result(self) -> types.CallToolResult:
        """What the call ended with, as a tool result the model can read (`isError`)."""
        body = {"error": self.code.name, "reason": self.reason, "message": self.message,
                **{k: v for k, v in self.details.items() if k != "field"}}
        return types.CallToolResult(content=[types.TextContent(text=self.message)],
                                    structured_content=body, is_error=True)


class MeshMCP:
    """The MCP server of the mesh: one lowlevel `Server` whose handlers call the services."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers
        self.server = Server(
            "agentmesh", version="1",
            instructions="The agents, workflows and tools of your Agent Mesh tenant as tools, "
                         "its prompts as prompts.",
            on_list_tools=self.list_tools, on_call_tool=self.call_tool,
            on_list_prompts=self.list_prompts, on_get_prompt=self.get_prompt)

    # ---- listing ------------------------------------------------------------------------------
    async def _pages(self, call: Callable[..., Awaitable[Any]], request_type, metadata,
                     **fields: Any) -> list[Any]:
        found, page = [], 1
        while True:
            reply = await call(request_type(page=page, page_size=PAGE, **fields),
                               metadata=metadata)
            found.extend(reply.items)
            if not reply.items or len(found) >= reply.total or page >= 100:
                return found
            page += 1

    async def list_tools(self, ctx, params) -> types.ListToolsResult:
        identity = _identity(ctx)
        try:
            listed = await self.tools_for(identity, _client_name(ctx))
        except grpc.aio.AioRpcError as exc:
            raise MCPError(INTERNAL_ERROR, Refusal.of(exc).message) from None
        return types.ListToolsResult(tools=listed)

    async def tools_for(self, identity: Identity, client: str) -> list[types.Tool]:
        """What this caller may call: its tenant's running agents, active workflows and
        executable tools, each kind only with its scope."""
        metadata = identity.metadata(client)
        listed: list[types.Tool] = []
        if identity.may(AGENTS_SCOPE):
            stub = self.peers.stub(agents_pb2_grpc.AgentServiceStub)
            for agent in await self._pages(stub.ListAgents, agents_pb2.ListAgentsRequest,
                                           metadata):
                if agents_pb2.AgentStatus.Name(agent.status) in RUNNABLE_AGENTS:
                    listed.append(types.Tool(
                        name=tool_name(AGENT_PREFIX, agent.name), title=agent.name,
                        description=agent.description or f"Talk to the agent {agent.name}.",
                        input_schema=AGENT_INPUT))
        if identity.may(WORKFLOWS_SCOPE):
            listed.append(types.Tool(
                name=START_WORKFLOW, title="Start a workflow in the background",
                description="Starts a run of one of the workflows and answers its execution "
                            "id at once, for runs too long to wait for; follow it with "
                            f"{GET_EXECUTION}.", input_schema=START_INPUT))
            listed.append(types.Tool(
                name=GET_EXECUTION, title="A workflow execution's state and outputs",
                description="The state, progress and outputs of a workflow execution, "
                            "waiting for its end at most wait_seconds.",
                input_schema=EXECUTION_INPUT))
            stub = self.peers.stub(workflows_pb2_grpc.WorkflowServiceStub)
            for flow in await self._pages(stub.ListWorkflows, workflows_pb2.ListWorkflowsRequest,
                                          metadata, status=workflows_pb2.WORKFLOW_STATUS_ACTIVE):
                schema = _as_dict(flow.input_schema) or {"type": "object"}
                listed.append(types.Tool(
                    name=tool_name(WORKFLOW_PREFIX, flow.slug or flow.name), title=flow.name,
                    description=flow.description or f"Run the workflow {flow.name}.",
                    input_schema=_object_schema(schema)))
        if identity.may(TOOLS_SCOPE):
            stub = self.peers.stub(tools_pb2_grpc.ToolServiceStub)
            for tool in await self._pages(stub.ListTools, tools_pb2.ListToolsRequest, metadata):
                if tools_pb2.ToolStatus.Name(tool.status) in EXECUTABLE_TOOLS:
                    schema = _as_dict(tool.input_schema) or {"type": "object"}
                    listed.append(types.Tool(
                        name=tool_name(TOOL_PREFIX, tool.name), title=tool.name,
                        description=tool.description or f"Run the tool {tool.name}.",
                        input_schema=_object_schema(schema)))
        return listed

    # ---- calls --------------------------------------------------------------------------------
    async def call_tool(self, ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        identity = _identity(ctx)
        name, arguments = params.name, dict(params.arguments or {})
        kinds = ((START_WORKFLOW, WORKFLOWS_SCOPE, self._start_workflow),
                 (GET_EXECUTION, WORKFLOWS_SCOPE, self._get_execution),
                 (AGENT_PREFIX, AGENTS_SCOPE, self._call_agent),
                 (WORKFLOW_PREFIX, WORKFLOWS_SCOPE, self._call_workflow),
                 (TOOL_PREFIX, TOOLS_SCOPE, self._call_mesh_tool))
        for prefix, scope, run in kinds:
            if name.startswith(prefix) and (not prefix.startswith(MESH_PREFIX) or
                                            name == prefix):
                if not identity.may(scope):
                    raise MCPError(INVALID_PARAMS, f"unknown tool {name!r}: calling it needs "
                                                   f"scope {scope}, which this credential lacks",
                                   {"reason": "MISSING_SCOPE", "required_scope": scope})
                metadata = identity.metadata(_client_name(ctx))
                try:
                    return await run(ctx, name[len(prefix):], arguments, metadata)
                except grpc.aio.AioRpcError as exc:
                    refusal = Refusal.of(exc)
                    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                        raise refusal.invalid_params() from None
                    if exc.code() == grpc.StatusCode.NOT_FOUND:
                        raise MCPError(INVALID_PARAMS, f"unknown tool {name!r}: "
                                                       f"{refusal.message}",
                                       {"reason": refusal.reason}) from None
                    return refusal.result()
        raise MCPError(INVALID_PARAMS, f"unknown tool {name!r}", {"reason": "UNKNOWN_TOOL"})

    async def _call_agent(self, ctx, agent: str, arguments: dict, metadata) -> types.CallToolResult:
        _only(arguments, AGENT_INPUT["properties"])
        message = arguments.get("message")
        if not isinstance(message, str) or not message.strip():
            raise MCPError(INVALID_PARAMS, "message: a non-empty text is required",
                           {"field": "message", "reason": "ARGUMENTS_INVALID"})
        thread = arguments.get("thread_id") or ""
        if not isinstance(thread, str):
            raise MCPError(INVALID_PARAMS, "thread_id: a text is required",
                           {"field": "thread_id", "reason": "ARGUMENTS_INVALID"})
        chosen = _version_and_label(arguments)
        stub = self.peers.stub(agents_pb2_grpc.AgentServiceStub)
        if _wants_progress(ctx):
            reply = await self._streamed(ctx, stub, agents_pb2.StreamInteractionRequest(
                agent_id=agent, message=message, thread_id=thread, **chosen), metadata)
        else:
            reply = await stub.InteractWithAgent(agents_pb2.InteractWithAgentRequest(
                agent_id=agent, message=message, thread_id=thread, **chosen),
                metadata=metadata)
        status = agents_pb2.CallStatus.Name(reply.status)
        body = {"reply": reply.reply, "call_id": reply.call_id, "status": status,
                "tokens": reply.tokens, "cost_usd": reply.cost_usd}
        failed = status != "CALL_STATUS_COMPLETED"
        if failed:
            body.update(reason=reply.reason, error=reply.error)
        text = reply.reply if not failed else f"the call failed ({reply.reason}): {reply.error}"
        return types.CallToolResult(content=[types.TextContent(text=text)],
                                    structured_content=body, is_error=failed)

    async def _streamed(self, ctx, stub, request, metadata) -> agents_pb2.InteractWithAgentResponse:
        """The reply as it is written: each piece of text (and each tool call) a progress
        notification, the answer of the `ended` event the result."""
        events = stub.StreamInteraction(request, metadata=metadata)
        try:
            async for event in events:
                if event.type == "ended":
                    return event.result
                if event.type == "token" and event.text:
                    await ctx.session.report_progress(event.seq, None, event.text)
                elif event.type == "tool_call.started":
                    name = event.tool_call.fields["name"].string_value \
                        if "name" in event.tool_call.fields else "a tool"
                    await ctx.session.report_progress(event.seq, None, f"[calling {name}]")
        finally:
            events.cancel()
        raise MCPError(INTERNAL_ERROR, "the agent's answer ended without a result")

    async def _call_workflow(self, ctx, slug: str, arguments: dict,
                             metadata) -> types.CallToolResult:
        stub = self.peers.stub(workflows_pb2_grpc.WorkflowServiceStub)
        execution = await stub.ExecuteWorkflow(workflows_pb2.ExecuteWorkflowRequest(
            workflow_id=slug, inputs=_struct(arguments)), metadata=metadata)
        await self._follow(ctx, stub, execution.id, metadata, WATCH_SECONDS)
        return await self._execution_result(stub, execution.id, metadata)

    async def _follow(self, ctx, stub, execution_id: str, metadata, seconds: float) -> None:
        """Progress notifications of the run until it ends or `seconds` pass. The watch begins
        with the current state (even of a run that has already ended), then each change; the
        first notification names the execution, so a client that stops waiting can ask for it
        later (`mesh_get_execution`)."""
        watch = stub.WatchExecution(workflows_pb2.WatchExecutionRequest(
            execution_id=execution_id), metadata=metadata, timeout=seconds)
        first = True
        try:
            async for progress in watch:
                status = workflows_pb2.ExecutionStatus.Name(progress.status)
                phase = progress.current_phase or status.removeprefix("EXECUTION_STATUS_")
                await ctx.session.report_progress(
                    progress.progress, 100.0,
                    f"execution {execution_id}: {phase}" if first else phase)
                first = False
                if status in ENDED:
                    break
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise  # waited long enough: the current state is the answer
        finally:
            watch.cancel()

    async def _execution_result(self, stub, execution_id: str,
                                metadata) -> types.CallToolResult:
        done = await stub.GetExecution(workflows_pb2.GetExecutionRequest(
            execution_id=execution_id), metadata=metadata)
        status = workflows_pb2.ExecutionStatus.Name(done.status)
        outputs = _as_dict(done.outputs)
        body: dict[str, Any] = {"execution_id": done.id, "status": status, "outputs": outputs,
                                "progress": done.progress}
        failed = status in ENDED and status != "EXECUTION_STATUS_COMPLETED"
        if failed:
            body["errors"] = [_as_dict(e) for e in done.errors]
        text = json.dumps(outputs if status == "EXECUTION_STATUS_COMPLETED" else body,
                          ensure_ascii=False)
        return types.CallToolResult(content=[types.TextContent(text=text)],
                                    structured_content=body, is_error=failed)

    async def _start_workflow(self, ctx, _: str, arguments: dict,
                              metadata) -> types.CallToolResult:
        """`mesh_start_workflow`: a run started in the background; its id at once."""
        _only(arguments, START_INPUT["properties"])
        workflow, inputs = arguments.get("workflow"), arguments.get("inputs", {})
        if not isinstance(workflow, str) or not workflow:
            raise MCPError(INVALID_PARAMS, "workflow: the workflow's slug is required",
                           {"field": "workflow", "reason": "ARGUMENTS_INVALID"})
        if not isinstance(inputs, dict):
            raise MCPError(INVALID_PARAMS, "inputs: an object is required",
                           {"field": "inputs", "reason": "ARGUMENTS_INVALID"})
        chosen = _version_and_label(arguments)
        stub = self.peers.stub(workflows_pb2_grpc.WorkflowServiceStub)
        execution = await stub.ExecuteWorkflow(workflows_pb2.ExecuteWorkflowRequest(
            workflow_id=workflow.removeprefix(WORKFLOW_PREFIX), inputs=_struct(inputs),
            **chosen), metadata=metadata)
        body = {"execution_id": execution.id,
                "status": workflows_pb2.ExecutionStatus.Name(execution.status)}
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(body))],
                                    structured_content=body)

    async def _get_execution(self, ctx, _: str, arguments: dict,
                             metadata) -> types.CallToolResult:
        """`mesh_get_execution`: a run's state and outputs, after waiting for its end at most
        `wait_seconds` (with progress notifications)."""
        _only(arguments, EXECUTION_INPUT["properties"])
        execution_id, wait = arguments.get("execution_id"), arguments.get("wait_seconds", 0)
        if not isinstance(execution_id, str) or not execution_id:
            raise MCPError(INVALID_PARAMS, "execution_id: the execution's id is required",
                           {"field": "execution_id", "reason": "ARGUMENTS_INVALID"})
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 300:
            raise MCPError(INVALID_PARAMS, "wait_seconds: a number of seconds from 0 to 300",
                           {"field": "wait_seconds", "reason": "ARGUMENTS_INVALID"})
        stub = self.peers.stub(workflows_pb2_grpc.WorkflowServiceStub)
        if wait:
            await self._follow(ctx, stub, execution_id, metadata, float(wait))
        return await self._execution_result(stub, execution_id, metadata)

    async def _call_mesh_tool(self, ctx, tool: str, arguments: dict,
                              metadata) -> types.CallToolResult:
        stub = self.peers.stub(tools_pb2_grpc.ToolServiceStub)
        done = await stub.ExecuteTool(tools_pb2.ExecuteToolRequest(
            tool_id=tool, arguments=_struct(arguments)), metadata=metadata)
        status = tools_pb2.ToolExecutionStatus.Name(done.status)
        output = _as_dict(done.output)
        failed = not status.endswith("COMPLETED") and not status.endswith("SUCCESS")
        body: dict[str, Any] = {**output} if not failed else {
            "error": done.error, "status": status, "execution_id": done.id}
        text = json.dumps(output, ensure_ascii=False) if not failed else done.error
        return types.CallToolResult(content=[types.TextContent(text=text or status)],
                                    structured_content=body, is_error=failed)

    # ---- prompts ------------------------------------------------------------------------------
    async def list_prompts(self, ctx, params) -> types.ListPromptsResult:
        identity = _identity(ctx)
        try:
            found = await self.prompts_for(identity, _client_name(ctx))
        except grpc.aio.AioRpcError as exc:
            raise MCPError(INTERNAL_ERROR, Refusal.of(exc).message) from None
        return types.ListPromptsResult(prompts=found)

    async def prompts_for(self, identity: Identity, client: str) -> list[types.Prompt]:
        """The tenant's prompts, each with the variables of the version `production` serves
        (the current one when it has no such label); none without the scope."""
        if not identity.may(PROMPTS_SCOPE):
            return []
        metadata = identity.metadata(client)
        stub = self.peers.stub(masterdata_pb2_grpc.PromptServiceStub)
        found = []
        for prompt in await self._pages(stub.ListPrompts, masterdata_pb2.ListPromptsRequest,
                                        metadata):
            if DEFAULT_LABEL in prompt.labels:
                prompt = await stub.GetPrompt(masterdata_pb2.GetPromptRequest(
                    prompt_id=prompt.id, label=DEFAULT_LABEL), metadata=metadata)
            found.append(types.Prompt(
                name=prompt.name, title=prompt.name, description=prompt.description or None,
                arguments=[types.PromptArgument(name=v.name, description=v.description or None,
                                                required=v.required and not v.default_value)
                           for v in prompt.variables]))
        return found

    async def get_prompt(self, ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        identity = _identity(ctx)
        if not identity.may(PROMPTS_SCOPE):
            raise MCPError(INVALID_PARAMS, f"unknown prompt {params.name!r}: reading prompts "
                                           f"needs scope {PROMPTS_SCOPE}",
                           {"reason": "MISSING_SCOPE", "required_scope": PROMPTS_SCOPE})
        name, _, label = params.name.partition("@")
        stub = self.peers.stub(masterdata_pb2_grpc.PromptServiceStub)
        metadata = identity.metadata(_client_name(ctx))
        arguments = {k: v if isinstance(v, str) else json.dumps(v)
                     for k, v in (params.arguments or {}).items()}
        try:
            rendered = await stub.RenderPrompt(masterdata_pb2.RenderPromptRequest(
                prompt_id=name, variables=arguments, label=label or DEFAULT_LABEL),
                metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            refusal = Refusal.of(exc)
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise refusal.invalid_params() from None
            code = INVALID_PARAMS if exc.code() == grpc.StatusCode.NOT_FOUND else INTERNAL_ERROR
            raise MCPError(code, f"prompt {params.name!r}: {refusal.message}",
                           {"reason": refusal.reason}) from None
        return types.GetPromptResult(
            description=f"{name} version {rendered.version}",
            messages=[types.PromptMessage(role="user",
                                          content=types.TextContent(text=rendered.content))])


def _object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """MCP wants an object schema for a tool's input; anything else is wrapped as one."""
    if schema.get("type") == "object":
        return schema
    return {"type": "object", **{k: v for k, v in schema.items() if k != "type"}}


def _only(arguments: dict, allowed: dict) -> None:
    unknown = sorted(set(arguments) - set(allowed))
    if unknown:
        raise MCPError(INVALID_PARAMS, f"{unknown[0]}: unknown argument; expected "
                                       f"{', '.join(sorted(allowed))}",
                       {"field": unknown[0], "reason": "UNKNOWN_FIELD"})
