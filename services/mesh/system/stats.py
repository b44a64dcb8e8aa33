"""The tenant's figures, asked of the services that own them (one page-size-1 list each, for its
total), and the platform's log lines of the tenant, asked of observability. The system service
keeps no copy of either."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.identity.v1 import identity_pb2, identity_pb2_grpc
from agentmesh.observability.v1 import observability_pb2 as obs
from agentmesh.observability.v1 import observability_pb2_grpc as obs_grpc
from agentmesh.system.v1 import system_pb2 as pb
from agentmesh.templates.v1 import templates_pb2, templates_pb2_grpc
from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from mesh.runtime.errors import Unavailable, invalid_field
from mesh.runtime.peers import Peers
from mesh.system.store import now_stamp, stamp

log = logging.getLogger("mesh.system")


async def stats(peers: Peers, tenant_id: str) -> pb.SystemStats:
    """Called as the caller (the peers pass its identity on): each answer is its tenant's."""
    day_ago = stamp(datetime.now(UTC) - timedelta(days=1))
    agents = peers.stub(agents_pb2_grpc.AgentServiceStub)
    calls = peers.stub(agents_pb2_grpc.CallServiceStub)
    workflows = peers.stub(workflows_pb2_grpc.WorkflowServiceStub)
    one = {"page_size": 1}
    asks = {
        "agents": agents.ListAgents(agents_pb2.ListAgentsRequest(**one)),
        "deployed_agents": agents.ListAgents(agents_pb2.ListAgentsRequest(
            status=agents_pb2.AGENT_STATUS_DEPLOYED, **one)),
        "calls_24h": calls.ListCalls(agents_pb2.ListCallsRequest(started_after=day_ago, **one)),
        "active_calls": calls.ListActiveCalls(agents_pb2.ListActiveCallsRequest(**one)),
        "workflows": workflows.ListWorkflows(workflows_pb2.ListWorkflowsRequest(**one)),
        "executions": workflows.CountExecutions(
            workflows_pb2.CountExecutionsRequest(since=day_ago)),
        "tools": peers.stub(tools_pb2_grpc.ToolServiceStub).ListTools(
            tools_pb2.ListToolsRequest(**one)),
        "templates": peers.stub(templates_pb2_grpc.TemplateServiceStub).ListTemplates(
            templates_pb2.ListTemplatesRequest(**one)),
        "users": peers.stub(identity_pb2_grpc.IdentityServiceStub).ListUsers(
            identity_pb2.ListUsersRequest(**one)),
    }
    answers = dict(zip(asks, await asyncio.gather(*asks.values(), return_exceptions=True)))
    failed = sorted(k for k, v in answers.items() if isinstance(v, BaseException))
    if failed:
        log.warning("stats: no answer for %s", ", ".join(failed))
        raise Unavailable(f"statistics unavailable: no answer for {', '.join(failed)}",
                          reason="STATS_UNAVAILABLE", details={"missing": ",".join(failed)})
    executions = answers.pop("executions")
    return pb.SystemStats(tenant_id=tenant_id, **{k: v.total for k, v in answers.items()},
                          workflow_executions_24h=executions.since,
                          running_executions=executions.running, timestamp=now_stamp())


async def logs(peers: Peers, request: pb.ListSystemLogsRequest) -> pb.ListSystemLogsResponse:
    """The caller's log lines, as observability's ListLogs answers them."""
    if request.HasField("start_time") and request.HasField("end_time") and \
            request.end_time.ToDatetime() < request.start_time.ToDatetime():
        raise invalid_field("end_time", "must not precede start_time")
    asked = obs.ListLogsRequest(
        page=request.page, page_size=request.page_size, level=request.level,
        service=request.service, correlation_id=request.correlation_id,
        search=request.search, order_by=request.order_by)
    if request.HasField("start_time"):
        asked.start_time.CopyFrom(request.start_time)
    if request.HasField("end_time"):
        asked.end_time.CopyFrom(request.end_time)
    answer = await peers.stub(obs_grpc.ObservabilityServiceStub).ListLogs(asked)
    items = [pb.SystemLogEntry(timestamp=e.timestamp, level=e.level, service=e.service,
                               message=e.message, correlation_id=e.correlation_id,
                               attributes=e.attributes) for e in answer.items]
    return pb.ListSystemLogsResponse(items=items, total=answer.total, page=answer.page,
                                     page_size=answer.page_size, pages=answer.pages)
