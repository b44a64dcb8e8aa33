"""The agents service's repositories and row <-> message: agents and their calls, a call's
rows as an interaction begins and ends, and an agent's figures."""

from __future__ import annotations

from sqlmodel import Session, func, select

from agentmesh.agents.v1 import agents_pb2 as pb
from mesh.agents.models import AgentRow, CallRow
from mesh.runtime.convert import to_message
from mesh.runtime.repository import TenantRepository

agents = TenantRepository(AgentRow, noun="agent", message=pb.Agent,
                          search_columns=("name", "description"), order_columns=("name", "status"),
                          quota="resource")
calls = TenantRepository(CallRow, noun="call", message=pb.Call, name_column=None,
                         order_columns=("started_at", "duration_ms"), default_order="-created_at")


def agent_message(row: AgentRow) -> pb.Agent:
    return to_message(row, pb.Agent)


def call_message(row: CallRow) -> pb.Call:
    return to_message(row, pb.Call, metadata=row.call_metadata)


def agent_stats(session: Session, tenant_id: str, agent_key: str) -> pb.AgentStats:
    row = agents.get(session, tenant_id, agent_key)
    scoped = (CallRow.tenant_id == tenant_id, CallRow.agent_id == row.id)
    by_status = dict(session.exec(select(CallRow.status, func.count()).where(*scoped)
                                  .group_by(CallRow.status)).all())
    avg, tokens, last = session.exec(select(
        func.avg(CallRow.duration_ms),
        func.sum(CallRow.prompt_tokens + CallRow.completion_tokens),
        func.max(CallRow.started_at)).where(*scoped)).one()
    out = pb.AgentStats(
        agent_id=row.id, total_calls=sum(by_status.values()),
        successful_calls=by_status.get("CALL_STATUS_COMPLETED", 0),
        failed_calls=by_status.get("CALL_STATUS_FAILED", 0),
        active_calls=by_status.get("CALL_STATUS_ACTIVE", 0),
        average_duration_ms=float(avg or 0), total_tokens=int(tokens or 0),
        deployments=row.deployments)
    if last:
        out.last_call_at.FromDatetime(last)
    return out
