"""The integration service: operations that span services, done through the owning services'
gRPC APIs as the caller (`runtime.peers`), and the tenant's webhooks and API connections, which
it owns. See docs/integration.md."""

from __future__ import annotations

import asyncio
import json
import secrets as pysecrets
import time
from typing import Any

import grpc
import yaml
from google.api import httpbody_pb2
from google.protobuf import field_mask_pb2, json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlmodel import Session, func, select

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.common.v1 import common_pb2
from agentmesh.integration.v1 import integration_pb2 as pb
from agentmesh.integration.v1 import integration_pb2_grpc as pb_grpc
from agentmesh.templates.v1 import templates_pb2, templates_pb2_grpc
from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from mesh.integration import bundle as bundles
from mesh.integration import calls, connections, events, openapi_tools
from mesh.integration.models import ActivityRow, ApiConnectionRow, DeliveryRow, WebhookRow
from mesh.runtime import audit, documents, errors, limits
from mesh.runtime.context import Caller, metadata_value, require_caller
from mesh.runtime.convert import to_message
from mesh.runtime.egress import EgressPolicy, read_capped
from mesh.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, invalid_field
from mesh.runtime.masterdata_client import MasterData
from mesh.runtime.paging import PageRequest
from mesh.runtime.repository import TenantRepository
from mesh.runtime.service import Runtime, ServiceDefinition
from mesh.runtime.tables import utcnow

MAX_BATCH = 100
MAX_DOCUMENT_BYTES = 1024 * 1024
DEPENDENCIES = ("agents", "workflows", "tools", "templates", "masterdata")
_SYNC_KINDS = ("skills", "constraints", "models", "prompts")
# Agents are deployed from ACTIVE: a draft or inactive agent is activated on the way.
_ACTIVATE_FIRST = (agents_pb2.AGENT_STATUS_DRAFT, agents_pb2.AGENT_STATUS_INACTIVE)

webhooks = TenantRepository(WebhookRow, noun="webhook", search_columns=("name", "url"),
                            order_columns=("name",), default_order="name", quota="resource")
api_connections = TenantRepository(ApiConnectionRow, noun="api_connection",
                                   search_columns=("name", "base_url"), order_columns=("name",),
                                   default_order="name", quota="resource")
deliveries = TenantRepository(DeliveryRow, noun="delivery", name_column=None)
_EVENTS: dict[int, events.Events] = {}


def parse_document(raw: bytes, field: str) -> Any:
    """JSON or YAML bytes (YAML is a superset; JSON is tried first), within the limits of
    `mesh.runtime.documents` (size, nesting depth, values JSON can carry)."""
    return documents.parse(raw, field, max_bytes=MAX_DOCUMENT_BYTES)


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def _struct_value(message, name: str) -> Any:
    return calls.plain(json_format.MessageToDict(getattr(message, name))) \
        if message.HasField(name) else None


def _webhook_message(row: WebhookRow) -> pb.Webhook:
    return pb.Webhook(id=row.id, tenant_id=row.tenant_id, name=row.name, url=row.url,
                      events=list(row.events), secret_hint=row.secret_hint, active=row.active,
                      created_at=row.created_at, updated_at=row.updated_at)


def _connection_dict(row: ApiConnectionRow) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "base_url": row.base_url, "auth_type": row.auth_type,
            "secret_ref": row.secret_ref, "auth_param": row.auth_param,
            "headers": dict(row.headers)}


def _connection_message(row: ApiConnectionRow) -> pb.ApiConnection:
    return to_message(row, pb.ApiConnection)


def _parse(data: Any, cls, field: str):
    if not isinstance(data, dict):
        raise invalid_field(field, "must be an object")
    try:
        message = json_format.ParseDict(data, cls())
    except json_format.ParseError as exc:
        raise InvalidArgument(f"{field}: {str(exc).splitlines()[0][:300]}",
                              reason="INVALID_BODY",
                              field_violations=[(field, str(exc).splitlines()[0][:300])]) from None
    try:
        limits.check(message)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{field}.{exc.message}", reason=exc.reason,
                              field_violations=[(f"{field}.{f}", d)
                                                for f, d in exc.field_violations]) from None
    return message


class IntegrationService(pb_grpc.IntegrationServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.db = runtime.database
        self.peers = runtime.peers
        self.egress = EgressPolicy.from_settings(runtime.settings)
        self.events = events.Events(self.db, self.egress)
        _EVENTS[id(runtime)] = self.events
        self.masterdata = MasterData(self.peers)

    # ---- helpers --------------------------------------------------------------------------
    def stub(self, cls):
        return self.peers.stub(cls)

    async def _activity(self, caller: Caller, kind: str, **details: Any) -> None:
        def write(session: Session) -> None:
            row = session.exec(select(ActivityRow).where(
                ActivityRow.tenant_id == caller.tenant_id, ActivityRow.kind == kind)).first()
            if row is None:
                row = ActivityRow(tenant_id=caller.tenant_id, kind=kind, created_at=utcnow())
            row.at, row.details, row.updated_at = utcnow(), details, utcnow()
            session.add(row)
            audit.record(session, caller, kind, "integration", "", **details)
        await self.db.write(write)

    async def _connection(self, caller: Caller, key: str) -> dict[str, Any]:
        row = await self.db.read(lambda s: api_connections.get(s, caller.tenant_id, key))
        return _connection_dict(row)

    async def _fetch(self, url: str, headers: dict[str, str] | None = None) -> bytes:
        """GET through the egress guard, capped in size; an unreachable source is UNAVAILABLE."""
        import httpx2

        await self.egress.check_url(url)
        try:
            async with self.egress.client(timeout=10, max_response_bytes=MAX_DOCUMENT_BYTES
                                          ) as client:
                async with client.stream("GET", url, headers=headers or {}) as response:
                    body = await read_capped(response, MAX_DOCUMENT_BYTES)
                    if response.status_code >= 400:
                        raise errors.Unavailable(
                            f"{url} answered HTTP {response.status_code}",
                            reason="SOURCE_ERROR", details={"status_code": response.status_code})
                    return body
        except httpx2.HTTPError as exc:
            raise errors.Unavailable(f"{url} cannot be reached: {type(exc).__name__}",
                                     reason="SOURCE_UNREACHABLE") from None

    async def _connection_headers(self, connection: dict[str, Any], purpose: str) -> dict[str, str]:
        value = None
        if connections.tool_auth(connection) is not None:
            value = await self.masterdata.reveal_secret(connection["secret_ref"], purpose)
        return connections.request_headers(connection, value)

    # ---- agent from template -----------------------------------------------------------------
    async def CreateAgentFromTemplate(self, request, context):
        caller = require_caller(context)
        if not request.template_id:
            raise invalid_field("template_id", "is required")
        if not request.name:
            raise invalid_field("name", "is required")
        if request.template_version < 0:
            raise invalid_field("template_version", "must be 0 (latest) or a version")
        templates = self.stub(templates_pb2_grpc.TemplateServiceStub)
        template = await calls.call("templates", templates.GetTemplate,
                                    templates_pb2.GetTemplateRequest(
                                        template_id=request.template_id))
        if template.kind != templates_pb2.TEMPLATE_KIND_AGENT:
            raise FailedPrecondition(f"template {template.name!r} is not an agent template",
                                     reason="NOT_AN_AGENT_TEMPLATE",
                                     details={"kind": templates_pb2.TemplateKind.Name(
                                         template.kind)})
        given = _struct_value(request, "parameters") or {}
        if "name" in {p.name for p in template.parameters} and "name" not in given:
            given["name"] = request.name
        rendered = await calls.call("templates", templates.InstantiateTemplate,
                                    templates_pb2.InstantiateTemplateRequest(
                                        template_id=template.id, version=request.template_version,
                                        parameters=_struct(given)))
        body = calls.plain(json_format.MessageToDict(rendered.result))
        body["name"] = request.name
        agent = _parse(body, agents_pb2.Agent, "template content")
        agents = self.stub(agents_pb2_grpc.AgentServiceStub)
        created = await calls.call("agents", agents.CreateAgent,
                                   agents_pb2.CreateAgentRequest(agent=agent))
        if request.deploy:
            try:
                if created.status in _ACTIVATE_FIRST:
                    await calls.call("agents", agents.ActivateAgent,
                                     agents_pb2.ActivateAgentRequest(agent_id=created.id))
                created = await calls.call("agents", agents.DeployAgent,
                                           agents_pb2.DeployAgentRequest(
                                               agent_id=created.id,
                                               environment=request.environment or "production"))
            except errors.DomainError:
                await self._quietly(agents.DeleteAgent(
                    agents_pb2.DeleteAgentRequest(agent_id=created.id)))
                raise
            await self.events.publish(caller.tenant_id, "agent.deployed", {
                "agent_id": created.id, "name": created.name,
                "environment": created.environment, "template_id": template.id})
        return pb.CreateAgentFromTemplateResponse(
            agent_id=created.id, name=created.name, template_id=template.id,
            template_version=rendered.version,
            status=agents_pb2.AgentStatus.Name(created.status).removeprefix("AGENT_STATUS_"),
            deployed=request.deploy, created_at=created.created_at)

    @staticmethod
    async def _quietly(awaitable) -> bool:
        """A compensating call: its failure is logged, never raised over the original error."""
        try:
            await awaitable
            return True
        except grpc.aio.AioRpcError:
            import logging

            logging.getLogger("mesh.integration").exception("compensation failed")
            return False

    # ---- deploy agent + workflow ---------------------------------------------------------------
    async def DeployAgentWorkflow(self, request, context):
        caller = require_caller(context)
        agent_body = _struct_value(request, "agent")
        workflow_body = _struct_value(request, "workflow")
        if bool(request.agent_id) == (agent_body is not None):
            raise invalid_field("agent_id", "give either agent_id (an existing agent) or agent "
                                "(a body that creates or updates one)")
        if bool(request.workflow_id) == (workflow_body is not None):
            raise invalid_field("workflow_id", "give either workflow_id (an existing workflow) "
                                "or workflow (a body)")
        environment = request.environment or "production"
        extra = _struct_value(request, "config") or {}
        agents = self.stub(agents_pb2_grpc.AgentServiceStub)
        flows = self.stub(workflows_pb2_grpc.WorkflowServiceStub)
        # Validate what can be checked before anything changes.
        agent_msg = _parse(agent_body, agents_pb2.Agent, "agent") if agent_body is not None \
            else None
        if agent_msg is not None and not agent_msg.name:
            raise invalid_field("agent.name", "is required")
        workflow_msg = None
        if workflow_body is not None:
            workflow_msg = _parse(workflow_body, workflows_pb2.Workflow, "workflow")
            if not workflow_msg.name:
                raise invalid_field("workflow.name", "is required")
            if not workflow_msg.steps:
                raise invalid_field("workflow.steps", "at least one step")
        undo: list = []  # compensations, run last first
        try:
            # 1. the agent: existing, created or updated
            if agent_msg is None:
                agent = await calls.call("agents", agents.GetAgent,
                                         agents_pb2.GetAgentRequest(agent_id=request.agent_id))
                agent_created = False
            else:
                if extra:
                    merged = calls.plain(json_format.MessageToDict(agent_msg.config))
                    merged.update(extra)
                    agent_msg.config.Clear()
                    agent_msg.config.update(merged)
                try:
                    before = await agents.GetAgent(agents_pb2.GetAgentRequest(
                        agent_id=agent_msg.name))
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.NOT_FOUND:
                        raise calls.peer_error(exc, "agents") from None
                    before = None
                if before is None:
                    agent = await calls.call("agents", agents.CreateAgent,
                                             agents_pb2.CreateAgentRequest(agent=agent_msg))
                    undo.append(lambda a=agent: agents.DeleteAgent(
                        agents_pb2.DeleteAgentRequest(agent_id=a.id)))
                    agent_created = True
                else:
                    paths = [f.name for f, _ in agent_msg.ListFields()]
                    agent = await calls.call("agents", agents.UpdateAgent,
                                             agents_pb2.UpdateAgentRequest(
                                                 agent_id=before.id, agent=agent_msg,
                                                 update_mask=field_mask_pb2.FieldMask(
                                                     paths=paths)))
                    undo.append(lambda b=before, p=paths: agents.UpdateAgent(
                        agents_pb2.UpdateAgentRequest(agent_id=b.id, agent=b,
                                                      update_mask=field_mask_pb2.FieldMask(
                                                          paths=p))))
                    agent_created = False
            # 2. the workflow (validated by the workflows service on create/update)
            if workflow_msg is None:
                workflow = await calls.call("workflows", flows.GetWorkflow,
                                            workflows_pb2.GetWorkflowRequest(
                                                workflow_id=request.workflow_id))
                workflow_created = False
            else:
                for step in workflow_msg.steps:
                    if step.HasField("agent") and step.agent.agent_id in ("{{agent}}",
                                                                          "{{ agent }}"):
                        step.agent.agent_id = agent.id
                slug = workflow_msg.slug
                before_wf = None
                if slug:
                    try:
                        before_wf = await flows.GetWorkflow(workflows_pb2.GetWorkflowRequest(
                            workflow_id=slug))
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() != grpc.StatusCode.NOT_FOUND:
                            raise calls.peer_error(exc, "workflows") from None
                if before_wf is None:
                    workflow = await calls.call("workflows", flows.CreateWorkflow,
                                                workflows_pb2.CreateWorkflowRequest(
                                                    workflow=workflow_msg))
                    undo.append(lambda w=workflow: flows.DeleteWorkflow(
                        workflows_pb2.DeleteWorkflowRequest(workflow_id=w.id)))
                    workflow_created = True
                else:
                    paths = [f.name for f, _ in workflow_msg.ListFields()]
                    workflow = await calls.call("workflows", flows.UpdateWorkflow,
                                                workflows_pb2.UpdateWorkflowRequest(
                                                    workflow_id=before_wf.id,
                                                    workflow=workflow_msg,
                                                    update_mask=field_mask_pb2.FieldMask(
                                                        paths=paths)))
                    undo.append(lambda b=before_wf, p=paths: flows.UpdateWorkflow(
                        workflows_pb2.UpdateWorkflowRequest(
                            workflow_id=b.id, workflow=b,
                            update_mask=field_mask_pb2.FieldMask(paths=p))))
                    workflow_created = False
            # 3. deploy the agent, 4. activate the workflow
            was_deployed = agent.status == agents_pb2.AGENT_STATUS_DEPLOYED
            if agent.status in _ACTIVATE_FIRST:
                agent = await calls.call("agents", agents.ActivateAgent,
                                         agents_pb2.ActivateAgentRequest(agent_id=agent.id))
                if not agent_created:
                    undo.append(lambda a=agent: agents.DeactivateAgent(
                        agents_pb2.DeactivateAgentRequest(agent_id=a.id)))
            agent = await calls.call("agents", agents.DeployAgent, agents_pb2.DeployAgentRequest(
                agent_id=agent.id, environment=environment))
            if not was_deployed:
                undo.append(lambda a=agent: agents.UndeployAgent(
                    agents_pb2.UndeployAgentRequest(agent_id=a.id)))
            if workflow.status != workflows_pb2.WORKFLOW_STATUS_ACTIVE:
                workflow = await calls.call("workflows", flows.ActivateWorkflow,
                                            workflows_pb2.ActivateWorkflowRequest(
                                                workflow_id=workflow.id))
        except (errors.DomainError, grpc.aio.AioRpcError):
            for compensate in reversed(undo):
                await self._quietly(compensate())
            raise
        now = utcnow()
        await self.events.publish(caller.tenant_id, "agent.deployed", {
            "agent_id": agent.id, "name": agent.name, "environment": environment,
            "workflow_id": workflow.id})
        await self.events.publish(caller.tenant_id, "workflow.activated", {
            "workflow_id": workflow.id, "slug": workflow.slug, "agent_id": agent.id})
        return pb.DeployAgentWorkflowResponse(
            agent_id=agent.id, workflow_id=workflow.id, environment=environment,
            agent_status=agents_pb2.AgentStatus.Name(agent.status).removeprefix("AGENT_STATUS_"),
            workflow_status=workflows_pb2.WorkflowStatus.Name(workflow.status).removeprefix(
                "WORKFLOW_STATUS_"),
            deployed_at=now, agent_created=agent_created, workflow_created=workflow_created,
            message=f"agent {agent.name!r} deployed to {environment} with workflow "
                    f"{workflow.slug!r} active")

    # ---- external tools --------------------------------------------------------------------
    async def IntegrateExternalTool(self, request, context):
        caller = require_caller(context)
        if not request.name:
            raise invalid_field("name", "is required")
        sources = [bool(request.endpoint_url), request.HasField("openapi"),
                   bool(request.openapi_url)]
        if sum(sources) != 1:
            raise invalid_field("endpoint_url", "give exactly one of endpoint_url, openapi (a "
                                "document) or openapi_url")
        connection = await self._connection(caller, request.api_connection_id) \
            if request.api_connection_id else None
        base = connection["base_url"] if connection else ""
        config = _struct_value(request, "config") or {}
        specs: list[dict[str, Any]]
        if request.endpoint_url:
            url = connections.join(base, request.endpoint_url) if base else request.endpoint_url
            connections.check_url(url.replace("{", "").replace("}", ""), "endpoint_url")
            method = (request.http_method or "POST").upper()
            if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                raise invalid_field("http_method", "one of GET, POST, PUT, PATCH, DELETE")
            specs = [{"name": request.name, "description": request.description, "method": method,
                      "url": url, "input_schema": _struct_value(request, "input_schema")}]
        else:
            if request.openapi_url:
                where = connections.join(base, request.openapi_url) if base \
                    else request.openapi_url
                connections.check_url(where, "openapi_url")
                headers = await self._connection_headers(connection, "openapi document") \
                    if connection else {}
                document = parse_document(await self._fetch(where, headers), "openapi_url")
            else:
                document = _struct_value(request, "openapi")
            specs = openapi_tools.tools_from_openapi(document, prefix=request.name, base_url=base)
        tools = self.stub(tools_pb2_grpc.ToolServiceStub)
        created: list[tools_pb2.Tool] = []
        try:
            for spec in specs:
                tool_config = dict(config)
                if connection is not None:
                    auth = connections.tool_auth(connection)
                    if auth:
                        tool_config["auth"] = auth
                    tool_config["api_connection"] = connection["name"]
                tool = tools_pb2.Tool(
                    name=spec["name"], description=spec["description"] or "",
                    type=tools_pb2.TOOL_TYPE_HTTP,
                    http=tools_pb2.HttpToolConfig(
                        url=spec["url"], method=spec["method"],
                        headers=connection["headers"] if connection else {}))
                if spec.get("input_schema"):
                    tool.input_schema.update(spec["input_schema"])
                if request.HasField("output_schema"):
                    tool.output_schema.CopyFrom(request.output_schema)
                if tool_config:
                    tool.config.update(tool_config)
                made = await calls.call("tools", tools.CreateTool,
                                        tools_pb2.CreateToolRequest(tool=tool))
                created.append(made)
                if request.deploy:
                    created[-1] = await calls.call("tools", tools.DeployTool,
                                                   tools_pb2.DeployToolRequest(tool_id=made.id))
        except errors.DomainError:
            for tool in created:
                await self._quietly(tools.DeleteTool(tools_pb2.DeleteToolRequest(
                    tool_id=tool.id)))
            raise
        await self.events.publish(caller.tenant_id, "tool.registered", {
            "tools": [{"id": t.id, "name": t.name} for t in created]})
        first = created[0]
        return pb.IntegrateExternalToolResponse(
            tool_id=first.id, name=first.name,
            status=tools_pb2.ToolStatus.Name(first.status).removeprefix("TOOL_STATUS_"),
            deployed=request.deploy, created_at=first.created_at,
            tools=[pb.RegisteredTool(tool_id=t.id, name=t.name, method=t.http.method,
                                     url=t.http.url) for t in created])

    # ---- master-data sync --------------------------------------------------------------------
    async def SyncMasterData(self, request, context):
        caller = require_caller(context)
        if bool(request.api_connection_id) == request.HasField("document"):
            raise invalid_field("document", "give either document or api_connection_id")
        kinds = list(request.entity_types) or list(_SYNC_KINDS)
        unknown = [k for k in kinds if k not in _SYNC_KINDS]
        if unknown:
            raise invalid_field("entity_types", f"unknown {unknown[0]!r}; use "
                                f"{', '.join(_SYNC_KINDS)}")
        if request.HasField("document"):
            document = _struct_value(request, "document")
        else:
            connection = await self._connection(caller, request.api_connection_id)
            headers = await self._connection_headers(connection, "master-data sync")
            document = parse_document(await self._fetch(
                connections.join(connection["base_url"], request.path), headers), "path")
        if not isinstance(document, dict):
            raise invalid_field("document", "must be an object of skills, constraints, prompts, "
                                "models")
        extra = [k for k in document if k not in _SYNC_KINDS]
        if extra:
            raise invalid_field(f"document.{str(extra[0])[:100]}",
                                f"unknown section; use {', '.join(_SYNC_KINDS)}")
        mode = request.mode or pb.IMPORT_MODE_OVERWRITE
        if mode == pb.IMPORT_MODE_RENAME:
            raise invalid_field("mode", "rename is for imports; sync updates by name")
        results: list[pb.EntityResult] = []
        for key in ("skills", "constraints", "models", "prompts"):
            if key not in kinds or key not in document:
                continue
            entities = document[key]
            if not isinstance(entities, list) or len(entities) > bundles.MAX_ENTITIES:
                raise invalid_field(f"document.{key}", f"a list of at most "
                                    f"{bundles.MAX_ENTITIES} objects")
            kind = bundles.BY_KEY[key]
            existing = {m.name: m for m in await bundles.read_kind(self.peers, kind)}
            for i, entity in enumerate(entities):
                results.append(await self._sync_one(kind, f"document.{key}[{i}]", entity,
                                                    existing, mode, request.dry_run))
        counts = {a: sum(1 for r in results if r.action == a)
                  for a in ("created", "updated", "unchanged", "skipped", "failed")}
        if not request.dry_run:
            await self._activity(caller, "sync", created=counts["created"],
                                 updated=counts["updated"])
            await self.events.publish(caller.tenant_id, "master_data.synced", counts)
        return pb.SyncMasterDataResponse(
            created=counts["created"], updated=counts["updated"],
            skipped=counts["skipped"] + counts["unchanged"], failed=counts["failed"],
            results=results, dry_run=request.dry_run, synced_at=utcnow())

    async def _sync_one(self, kind: bundles.Kind, where: str, entity: Any,
                        existing: dict[str, Any], mode: int, dry_run: bool) -> pb.EntityResult:
        name = entity.get("name") if isinstance(entity, dict) else None
        result = pb.EntityResult(entity_type=kind.noun, name=str(name or "")[:100])
        try:
            message = _parse(entity, kind.message, where)
            if not message.name:
                raise invalid_field(f"{where}.name", "is required")
            stub = self.stub(kind.stub)
            current = existing.get(message.name)
            if current is None:
                result.action = "created"
                if not dry_run:
                    made = await calls.call(kind.service, getattr(stub, f"Create{kind.cls}"),
                                            kind.request(f"Create{kind.cls}",
                                                         **{kind.noun: message}))
                    result.id = made.id
                return result
            result.id = current.id
            given = calls.to_dict(message)
            now = calls.to_dict(current)
            if all(now.get(k) == v for k, v in given.items()):
                result.action = "unchanged"
                return result
            if mode == pb.IMPORT_MODE_SKIP_EXISTING:
                result.action = "skipped"
                return result
            if mode == pb.IMPORT_MODE_FAIL_ON_EXISTING:
                raise errors.AlreadyExists(f"{kind.noun} {message.name!r} exists")
            result.action = "updated"
            if not dry_run:
                await calls.call(kind.service, getattr(stub, f"Update{kind.cls}"),
                                 kind.request(f"Update{kind.cls}", **{
                                     f"{kind.noun}_id": current.id, kind.noun: message,
                                     "update_mask": field_mask_pb2.FieldMask(
                                         paths=sorted(given))}))
        except errors.DomainError as exc:
            result.action, result.error = "failed", calls.describe(exc)
        return result

    # ---- export / import ---------------------------------------------------------------------
    async def ExportData(self, request, context):
        caller = require_caller(context)
        kinds = list(request.entity_types) or bundles.ALL_KEYS
        unknown = [k for k in kinds if k not in bundles.ALL_KEYS]
        if unknown:
            raise invalid_field("entity_types", f"unknown {unknown[0]!r}; use "
                                f"{', '.join(bundles.ALL_KEYS)}")
        rows = await self.db.read(lambda s: s.exec(select(ApiConnectionRow).where(
            ApiConnectionRow.tenant_id == caller.tenant_id)).all())
        document = await bundles.export(self.peers, [_connection_dict(r) for r in rows], kinds,
                                        set(request.ids))
        await self._activity(caller, "export", kinds=",".join(kinds))
        wanted = request.format
        if wanted == pb.EXPORT_FORMAT_UNSPECIFIED and \
                "yaml" in metadata_value(context, "accept").lower():
            wanted = pb.EXPORT_FORMAT_YAML
        if wanted == pb.EXPORT_FORMAT_YAML:
            text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
            content_type = "application/yaml"
        else:
            text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
            content_type = "application/json"
        await context.send_initial_metadata((
            ("content-disposition", 'attachment; filename="agentmesh-bundle.'
             + ("yaml" if wanted == pb.EXPORT_FORMAT_YAML else "json") + '"'),))
        return httpbody_pb2.HttpBody(content_type=content_type, data=text.encode())

    async def ImportData(self, request, context):
        caller = require_caller(context)
        if not request.HasField("data"):
            raise invalid_field("data", "is required: a bundle as export writes it")
        return await self._import(caller, _struct_value(request, "data"), request.mode,
                                  request.dry_run)

    async def ImportFile(self, request, context):
        caller = require_caller(context)
        if not request.file.data:
            raise invalid_field("file", "is required: the bundle file as the request body")
        return await self._import(caller, parse_document(request.file.data, "file"),
                                  request.mode, request.dry_run)

    async def _existing(self, keys: set[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for kind in bundles.KINDS:
            if kind.key in keys:
                out[kind.key] = {getattr(m, kind.name_field): m
                                 for m in await bundles.read_kind(self.peers, kind)}
        return out

    async def _import(self, caller: Caller, document: Any, mode: int,
                      dry_run: bool) -> pb.ImportDataResponse:
        if mode not in pb.ImportMode.values():
            raise invalid_field("mode", "unknown import mode")
        problems = bundles.check_shape(document)
        problems.raise_if_any()
        present = {k for k in bundles.ALL_KEYS if document.get(k)}
        needed = set(present)
        if "workflows" in present:
            needed |= {"agents", "tools"}
        existing = await self._existing(needed)
        local = await self.db.read(lambda s: {r.name: r for r in s.exec(select(
            ApiConnectionRow).where(ApiConnectionRow.tenant_id == caller.tenant_id)).all()})
        names = {k: set(v) for k, v in existing.items()}
        names["api_connections"] = set(local)
        bundles.check_against(problems, document, names)
        problems.raise_if_any()
        mode = mode or pb.IMPORT_MODE_SKIP_EXISTING
        renames: dict[str, dict[str, str]] = {}
        taken = {k: set(names.get(k, set())) | {bundles.name_of(k, e) for e in document.get(k)
                                                or []} for k in bundles.ALL_KEYS}
        results: list[pb.EntityResult] = []
        for key in bundles.ALL_KEYS:
            for entity in document.get(key) or []:
                entity = json.loads(json.dumps(entity))
                bundles.rewrite_references(key, entity, renames)
                result = await self._import_one(caller, key, entity, existing.get(key, {}),
                                                local, mode, dry_run, renames, taken)
                results.append(result)
        counts = {a: sum(1 for r in results if r.action == a)
                  for a in ("created", "updated", "skipped", "failed")}
        if not dry_run:
            await self._activity(caller, "import", **counts)
            await self.events.publish(caller.tenant_id, "data.imported", counts)
        return pb.ImportDataResponse(created=counts["created"], updated=counts["updated"],
                                     skipped=counts["skipped"], failed=counts["failed"],
                                     results=results, dry_run=dry_run)

    async def _import_one(self, caller: Caller, key: str, entity: dict[str, Any],
                          existing: dict[str, Any], local: dict[str, ApiConnectionRow],
                          mode: int, dry_run: bool, renames: dict[str, dict[str, str]],
                          taken: dict[str, set[str]]) -> pb.EntityResult:
        name = bundles.name_of(key, entity)
        noun = bundles.BY_KEY[key].noun if key in bundles.BY_KEY else "api_connection"
        result = pb.EntityResult(entity_type=noun, name=name)
        present = existing.get(name) if key in bundles.BY_KEY else local.get(name)
        try:
            if present is not None:
                if mode == pb.IMPORT_MODE_SKIP_EXISTING:
                    result.action, result.id = "skipped", present.id
                    return result
                if mode == pb.IMPORT_MODE_FAIL_ON_EXISTING:
                    raise errors.AlreadyExists(f"{noun} {name!r} already exists",
                                               reason="ALREADY_EXISTS")
                if mode == pb.IMPORT_MODE_RENAME:
                    n = 2
                    while f"{name[:90]}-{n}" in taken[key]:
                        n += 1
                    new = f"{name[:90]}-{n}"
                    taken[key].add(new)
                    renames.setdefault(key, {})[name] = new
                    field = bundles.BY_KEY[key].name_field if key in bundles.BY_KEY else "name"
                    entity[field] = new
                    if key == "workflows":
                        entity["name"] = f"{entity.get('name', name)} ({n})"[:200]
                    result.name, result.original_name = new, name
                    present = None
            if dry_run:
                result.action = "created" if present is None else "updated"
                return result
            if key == "api_connections":
                result.id = await self._import_connection(caller, entity, present)
            elif present is None:
                result.id = await self._create_entity(bundles.BY_KEY[key], entity)
            else:
                result.id = await self._update_entity(bundles.BY_KEY[key], entity, present)
                if not result.id:
                    result.action, result.id = "skipped", present.id
                    return result
            result.action = "created" if present is None else "updated"
        except errors.DomainError as exc:
            result.action, result.error = "failed", calls.describe(exc)
        return result

    async def _import_connection(self, caller: Caller, entity: dict[str, Any],
                                 present: ApiConnectionRow | None) -> str:
        fields = connections.check(entity)

        def write(session: Session) -> str:
            if present is None:
                row = api_connections.add(session, ApiConnectionRow(
                    tenant_id=caller.tenant_id, created_by=caller.user_id, **fields))
                audit.record(session, caller, "import", "api_connection", row.id,
                             name=row.name)
                return row.id
            row = api_connections.get(session, caller.tenant_id, present.id, lock=True)
            return api_connections.change(session, row, fields, caller).id
        return await self.db.write(write)

    async def _create_entity(self, kind: bundles.Kind, entity: dict[str, Any]) -> str:
        stub = self.stub(kind.stub)
        body = {k: v for k, v in entity.items() if k not in ("versions", "labels")}
        versions = entity.get("versions") or []
        if kind.key in ("prompts", "templates"):
            first = {k: v for k, v in versions[0].items() if k not in ("version", "changelog")}
            body.update(first)
        message = json_format.ParseDict(body, kind.message())
        created = await calls.call(kind.service, getattr(stub, f"Create{kind.cls}"),
                                   kind.request(f"Create{kind.cls}", **{kind.noun: message}))
        if kind.key in ("prompts", "templates"):
            number = {versions[0].get("version", 1): 1}
            version_cls = getattr(kind.module, f"{kind.cls}Version")
            for version in versions[1:]:
                data = {k: v for k, v in version.items() if k != "version"}
                made = await calls.call(kind.service, getattr(stub, f"Create{kind.cls}Version"),
                                        kind.request(f"Create{kind.cls}Version", **{
                                            f"{kind.noun}_id": created.id,
                                            f"{kind.noun}_version": json_format.ParseDict(
                                                data, version_cls())}))
                number[version.get("version")] = made.version
            for label, version in sorted((entity.get("labels") or {}).items()):
                await calls.call(kind.service, getattr(stub, f"Set{kind.cls}Label"),
                                 kind.request(f"Set{kind.cls}Label", **{
                                     f"{kind.noun}_id": created.id, "label": label,
                                     "version": number.get(version, version)}))
        return created.id

    async def _update_entity(self, kind: bundles.Kind, entity: dict[str, Any], present) -> str:
        """Overwrite: the bundle's fields onto the existing entity ("" when there is nothing to
        write, as for a secret whose value is still the placeholder)."""
        stub = self.stub(kind.stub)
        body = {k: v for k, v in entity.items() if k not in ("versions", "labels")}
        if kind.key == "secrets" and body.get("value") in (None, "", bundles.SECRET_PLACEHOLDER):
            body.pop("value", None)
            if len(body) <= 1:
                return ""
        if kind.key in ("prompts", "templates"):
            last = (entity.get("versions") or [{}])[-1]
            body.update({k: v for k, v in last.items() if k not in ("version", "changelog")})
        message = json_format.ParseDict(body, kind.message())
        paths = sorted(k for k in body if k != kind.name_field)
        if not paths:
            return present.id
        updated = await calls.call(kind.service, getattr(stub, f"Update{kind.cls}"),
                                   kind.request(f"Update{kind.cls}", **{
                                       f"{kind.noun}_id": present.id, kind.noun: message,
                                       "update_mask": field_mask_pb2.FieldMask(paths=paths)}))
        return updated.id

    # ---- status ------------------------------------------------------------------------------
    async def _health(self, service: str) -> pb.DependencyStatus:
        started = time.perf_counter()
        try:
            stub = health_pb2_grpc.HealthStub(self.peers.channel(service))
            answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            ok = answer.status == health_pb2.HealthCheckResponse.SERVING
        except (grpc.aio.AioRpcError, errors.DomainError):
            ok = False
        return pb.DependencyStatus(name=service, status="healthy" if ok else "unhealthy",
                                   latency_ms=round((time.perf_counter() - started) * 1000, 3))

    async def GetIntegrationStatus(self, request, context):
        caller = require_caller(context)
        services = await asyncio.gather(*(self._health(s) for s in DEPENDENCIES))

        def read(session: Session):
            active = session.exec(select(func.count()).select_from(WebhookRow).where(
                WebhookRow.tenant_id == caller.tenant_id, WebhookRow.active == True)).one()  # noqa: E712
            conns = session.exec(select(func.count()).select_from(ApiConnectionRow).where(
                ApiConnectionRow.tenant_id == caller.tenant_id)).one()
            seen = {r.kind: r.at for r in session.exec(select(ActivityRow).where(
                ActivityRow.tenant_id == caller.tenant_id)).all()}
            return active, conns, seen

        active, conns, seen = await self.db.read(read)
        healthy = all(s.status == "healthy" for s in services)
        return pb.IntegrationStatus(
            status="healthy" if healthy else "degraded", services=services,
            active_webhooks=active, api_connections=conns, last_sync_at=seen.get("sync"),
            last_import_at=seen.get("import"), last_export_at=seen.get("export"),
            timestamp=utcnow())

    # ---- webhooks ----------------------------------------------------------------------------
    async def CreateWebhook(self, request, context):
        caller = require_caller(context)
        hook = request.webhook
        if not hook.name:
            raise invalid_field("name", "is required")
        url = connections.check_url(hook.url, "url")
        for i, event in enumerate(hook.events):
            if not events.known(event):
                raise invalid_field(f"events[{i}]",
                                    f"unknown event; known: {', '.join(events.EVENTS)}")
        await self.egress.check_url(url)
        secret = hook.secret or "whsec_" + pysecrets.token_urlsafe(32)
        if len(secret) < 16:
            raise invalid_field("secret", "at least 16 characters")
        row = WebhookRow(tenant_id=caller.tenant_id, name=hook.name, url=url,
                         events=sorted(set(hook.events)), secret=secret,
                         secret_hint="****" + secret[-4:],
                         active=hook.active if hook.HasField("active") else True,
                         created_by=caller.user_id)

        def add(session: Session) -> WebhookRow:
            webhooks.add(session, row)
            audit.record(session, caller, "create", "webhook", row.id, name=row.name)
            return row

        return _webhook_message(await self.db.write(add))

    async def ListWebhooks(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        where = []
        if request.HasField("active"):
            where.append(WebhookRow.active == request.active)

        def read(session: Session):
            result = webhooks.list(session, caller.tenant_id, page, search=request.search,
                                   where=tuple(where))
            return result

        result = await self.db.read(read)
        items = [r for r in result.items
                 if not request.event or events.matches(list(r.events), request.event)]
        fields = result.fields(_webhook_message)
        if request.event:
            fields["items"] = [_webhook_message(r) for r in items]
        return pb.ListWebhooksResponse(**fields)

    async def DeleteWebhook(self, request, context):
        caller = require_caller(context)
        name = await self.db.write(lambda s: webhooks.remove(
            s, webhooks.get(s, caller.tenant_id, request.webhook_id, lock=True), caller))
        return common_pb2.DeleteResponse(success=True, message=f"webhook {name!r} deleted")

    async def ListWebhookDeliveries(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)

        def read(session: Session):
            hook = webhooks.get(session, caller.tenant_id, request.webhook_id)
            return deliveries.list(session, caller.tenant_id, page,
                                   filters={"webhook_id": hook.id})

        result = await self.db.read(read)
        return pb.ListWebhookDeliveriesResponse(**result.fields(lambda r: pb.WebhookDelivery(
            id=r.delivery_id, webhook_id=r.webhook_id, event=r.event, status=r.status,
            attempts=r.attempts, status_code=r.status_code, error=r.error,
            created_at=r.created_at, updated_at=r.updated_at,
            next_attempt_at=r.next_attempt_at)))

    async def PublishPlatformEvent(self, request, context):
        caller = require_caller(context)
        if request.event not in events.EVENTS:
            raise invalid_field("event", f"is not one of: {', '.join(sorted(events.EVENTS))}")
        data = json_format.MessageToDict(request.data)
        queued = await self.events.publish(caller.tenant_id, request.event, data)
        return pb.PublishPlatformEventResponse(deliveries=queued)

    # ---- API connections ---------------------------------------------------------------------
    async def CreateApiConnection(self, request, context):
        caller = require_caller(context)
        given = calls.to_dict(request.api_connection)
        entity = {k: given[k] for k in ("name", "base_url", "auth_type", "secret_ref",
                                        "headers", "auth_param") if k in given}
        # Fields are named as a REST client writes them (the body is the connection), as the
        # runtime's limits name them.
        fields = connections.check(entity)
        if fields["secret_ref"] and not await self.masterdata.secret_exists(fields["secret_ref"]):
            raise NotFound(f"secret {fields['secret_ref']!r} not found",
                           reason="SECRET_NOT_FOUND", details={"secret": fields["secret_ref"]})

        def add(session: Session) -> ApiConnectionRow:
            row = api_connections.add(session, ApiConnectionRow(
                tenant_id=caller.tenant_id, created_by=caller.user_id, **fields))
            audit.record(session, caller, "create", "api_connection", row.id, name=row.name)
            return row

        return _connection_message(await self.db.write(add))

    async def ListApiConnections(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        auth = pb.AuthType.Name(request.auth_type) if request.auth_type else None
        result = await self.db.read(lambda s: api_connections.list(
            s, caller.tenant_id, page, filters={"auth_type": auth}, search=request.search))
        return pb.ListApiConnectionsResponse(**result.fields(_connection_message))

    async def DeleteApiConnection(self, request, context):
        caller = require_caller(context)
        name = await self.db.write(lambda s: api_connections.remove(
            s, api_connections.get(s, caller.tenant_id, request.connection_id, lock=True),
            caller))
        return common_pb2.DeleteResponse(success=True,
                                         message=f"api connection {name!r} deleted")

    async def TestApiConnection(self, request, context):
        import httpx2

        caller = require_caller(context)
        connection = await self._connection(caller, request.connection_id)
        url = connections.join(connection["base_url"], request.path)
        connections.check_url(url, "path", connections.JOINED_MAX)
        await self.egress.check_url(url)  # an internal address is refused (403), not "not ok"
        headers = await self._connection_headers(connection, "connection test")
        started = time.perf_counter()
        out = pb.TestApiConnectionResponse(url=url)
        try:
            async with self.egress.client(timeout=10) as client:
                async with client.stream("GET", url, headers=headers) as response:
                    out.status_code = response.status_code
                    out.ok = response.status_code < 400
                    if not out.ok:
                        out.error = f"HTTP {response.status_code}"
        except httpx2.HTTPError as exc:
            out.error = f"{type(exc).__name__}: cannot reach {url}"
        except errors.PermissionDenied as exc:  # a redirect to an internal address
            out.error = exc.message
        out.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        return out

    # ---- batches -----------------------------------------------------------------------------
    async def BatchCreateAgents(self, request, context):
        require_caller(context)
        results, ok, failed = await self._batch(
            "agents", list(request.agents), request.atomic, agents_pb2.Agent,
            agents_pb2_grpc.AgentServiceStub, "CreateAgent", "DeleteAgent", "agent", "name")
        return pb.BatchCreateAgentsResponse(results=results, succeeded=ok, failed=failed)

    async def BatchCreateWorkflows(self, request, context):
        require_caller(context)
        results, ok, failed = await self._batch(
            "workflows", list(request.workflows), request.atomic, workflows_pb2.Workflow,
            workflows_pb2_grpc.WorkflowServiceStub, "CreateWorkflow", "DeleteWorkflow",
            "workflow", "name")
        return pb.BatchCreateWorkflowsResponse(results=results, succeeded=ok, failed=failed)

    async def _batch(self, field: str, items: list, atomic: bool, cls, stub_class, create: str,
                     delete: str, noun: str, name_field: str):
        if not items:
            raise invalid_field(field, "at least one item")
        if len(items) > MAX_BATCH:
            raise invalid_field(field, f"at most {MAX_BATCH} items (got {len(items)})")
        module = importlib_module(cls)
        results: list[pb.BatchItemResult] = []
        parsed: list = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            data = calls.plain(json_format.MessageToDict(item))
            result = pb.BatchItemResult(index=i, name=str(data.get(name_field) or "")[:200])
            try:
                message = _parse(data, cls, f"{field}[{i}]")
                if not getattr(message, name_field):
                    raise invalid_field(f"{field}[{i}].{name_field}", "is required")
                key = message.slug if noun == "workflow" and message.slug else \
                    getattr(message, name_field)
                if key in seen:
                    raise invalid_field(f"{field}[{i}].{name_field}",
                                        f"{key!r} appears twice in the batch")
                seen.add(key)
                parsed.append(message)
            except errors.DomainError as exc:
                result.status, result.error = "failed", calls.describe(exc)
                parsed.append(None)
            results.append(result)
        if atomic and any(m is None for m in parsed):
            for result in results:
                if result.status != "failed":
                    result.status = "not_attempted"
            return results, 0, sum(1 for r in results if r.status == "failed")
        stub = self.stub(stub_class)
        created: list[tuple[int, str]] = []
        for i, message in enumerate(parsed):
            if message is None:
                continue
            try:
                made = await calls.call(f"{noun}s", getattr(stub, create),
                                        getattr(module, f"{create}Request")(**{noun: message}))
                results[i].id, results[i].status = made.id, "created"
                created.append((i, made.id))
            except errors.DomainError as exc:
                results[i].status, results[i].error = "failed", calls.describe(exc)
                if atomic:
                    for j, made_id in reversed(created):
                        if await self._quietly(getattr(stub, delete)(
                                getattr(module, f"{delete}Request")(**{f"{noun}_id": made_id}))):
                            results[j].status, results[j].id = "rolled_back", ""
                    for later in results[i + 1:]:
                        later.status = "not_attempted"
                    return results, 0, 1
        ok = sum(1 for r in results if r.status == "created")
        return results, ok, len(results) - ok


def importlib_module(cls):
    import importlib

    return importlib.import_module(cls.__module__)


async def _start(runtime: Runtime) -> None:
    # Deliveries queued before a restart (or by a replica that died) go out from here on.
    _EVENTS[id(runtime)].start()


async def _stop(runtime: Runtime) -> None:
    sender = _EVENTS.pop(id(runtime), None)
    if sender is not None:
        await sender.close()


DEFINITION = ServiceDefinition("integration", servicers=[IntegrationService],
                               tables=[WebhookRow, DeliveryRow, ApiConnectionRow, ActivityRow],
                               on_start=_start, on_stop=_stop)
