"""IntegrationService: each RPC reads its request and hands it to the domain module of its
concern (compose, transfer, documents, webhooks, api_connections, status)."""

from __future__ import annotations

from google.api import httpbody_pb2

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.common.v1 import common_pb2
from agentmesh.integration.v1 import integration_pb2 as pb
from agentmesh.integration.v1 import integration_pb2_grpc as pb_grpc
from agentmesh.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from mesh.integration import (api_connections, calls, compose, documents, status, transfer,
                              webhooks)
from mesh.integration.state import IntegrationState
from mesh.runtime import documents as runtime_documents
from mesh.runtime.context import metadata_value, require_caller
from mesh.runtime.errors import invalid_field
from mesh.runtime.paging import PageRequest
from mesh.runtime.service import Runtime

_SYNTAX = {pb.EXPORT_FORMAT_JSON: "json", pb.EXPORT_FORMAT_YAML: "yaml"}


class IntegrationService(pb_grpc.IntegrationServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.state: IntegrationState = runtime.state

    # ---- compose ----------------------------------------------------------------------------
    async def CreateAgentFromTemplate(self, request, context):
        return await compose.agent_from_template(self.state, require_caller(context), request)

    async def DeployAgentWorkflow(self, request, context):
        return await compose.deploy_agent_workflow(self.state, require_caller(context), request)

    async def BatchCreateAgents(self, request, context):
        require_caller(context)
        results, ok, failed = await compose.batch(
            self.state, "agents", list(request.agents), request.atomic, agents_pb2.Agent,
            agents_pb2_grpc.AgentServiceStub, "agent")
        return pb.BatchCreateAgentsResponse(results=results, succeeded=ok, failed=failed)

    async def BatchCreateWorkflows(self, request, context):
        require_caller(context)
        results, ok, failed = await compose.batch(
            self.state, "workflows", list(request.workflows), request.atomic,
            workflows_pb2.Workflow, workflows_pb2_grpc.WorkflowServiceStub, "workflow")
        return pb.BatchCreateWorkflowsResponse(results=results, succeeded=ok, failed=failed)

    # ---- documents --------------------------------------------------------------------------
    async def IntegrateExternalTool(self, request, context):
        return await documents.integrate_external_tool(self.state, require_caller(context),
                                                       request)

    # ---- transfer ---------------------------------------------------------------------------
    async def SyncMasterData(self, request, context):
        return await transfer.sync_master_data(self.state, require_caller(context), request)

    async def ExportData(self, request, context):
        caller = require_caller(context)
        bundle = await transfer.export(self.state, caller, list(request.entity_types),
                                       set(request.ids))
        syntax = runtime_documents.syntax_for(_SYNTAX.get(request.format, ""),
                                              metadata_value(context, "accept"))
        content_type, data = runtime_documents.dump(bundle, syntax)
        await context.send_initial_metadata((
            ("content-disposition", f'attachment; filename="agentmesh-bundle.{syntax}"'),))
        return httpbody_pb2.HttpBody(content_type=content_type, data=data)

    async def ImportData(self, request, context):
        caller = require_caller(context)
        if not request.HasField("data"):
            raise invalid_field("data", "is required: a bundle as export writes it")
        return await transfer.import_bundle(self.state, caller,
                                            calls.struct_value(request, "data"), request.mode,
                                            request.dry_run)

    async def ImportFile(self, request, context):
        caller = require_caller(context)
        if not request.file.data:
            raise invalid_field("file", "is required: the bundle file as the request body")
        return await transfer.import_bundle(self.state, caller,
                                            documents.parse_document(request.file.data, "file"),
                                            request.mode, request.dry_run)

    # ---- status -----------------------------------------------------------------------------
    async def GetIntegrationStatus(self, request, context):
        return await status.status(self.state, require_caller(context))

    # ---- webhooks ---------------------------------------------------------------------------
    async def CreateWebhook(self, request, context):
        return await webhooks.create(self.state, require_caller(context), request.webhook)

    async def ListWebhooks(self, request, context):
        caller = require_caller(context)
        return pb.ListWebhooksResponse(**await webhooks.page(
            self.state, caller, PageRequest.of(request),
            active=request.active if request.HasField("active") else None,
            event=request.event, search=request.search))

    async def DeleteWebhook(self, request, context):
        name = await webhooks.delete(self.state, require_caller(context), request.webhook_id)
        return common_pb2.DeleteResponse(success=True, message=f"webhook {name!r} deleted")

    async def ListWebhookDeliveries(self, request, context):
        caller = require_caller(context)
        return pb.ListWebhookDeliveriesResponse(**await webhooks.delivery_page(
            self.state, caller, request.webhook_id, PageRequest.of(request)))

    async def PublishPlatformEvent(self, request, context):
        queued = await webhooks.publish(self.state, require_caller(context), request.event,
                                        request.data, request.event_id)
        return pb.PublishPlatformEventResponse(deliveries=queued)

    # ---- API connections --------------------------------------------------------------------
    async def CreateApiConnection(self, request, context):
        return await api_connections.create(self.state, require_caller(context),
                                            request.api_connection)

    async def ListApiConnections(self, request, context):
        caller = require_caller(context)
        auth = pb.AuthType.Name(request.auth_type) if request.auth_type else None
        return pb.ListApiConnectionsResponse(**await api_connections.page(
            self.state, caller, PageRequest.of(request), auth, request.search))

    async def DeleteApiConnection(self, request, context):
        name = await api_connections.delete(self.state, require_caller(context),
                                            request.connection_id)
        return common_pb2.DeleteResponse(success=True,
                                         message=f"api connection {name!r} deleted")

    async def TestApiConnection(self, request, context):
        return await api_connections.test(self.state, require_caller(context),
                                          request.connection_id, request.path)
