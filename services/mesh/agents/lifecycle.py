"""An agent's rules beyond the contract's bounds (its name pattern and `agent_type` values are
the contract's, checked on every request by mesh.runtime.limits): a name is not a UUID, an
archived agent is read-only, a deployed one is not deleted, and which status each lifecycle
action leads from and to."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from agentmesh.agents.v1 import agents_pb2 as pb
from mesh.agents.models import AgentRow
from mesh.agents.store import AGENT_VERSIONS, agents, snapshot
from mesh.runtime.context import Caller
from mesh.runtime.errors import FailedPrecondition, invalid_field
from mesh.runtime.tables import is_uuid, utcnow

S = pb.AgentStatus
# Which lifecycle action is allowed from which status, and where it leads.
TRANSITIONS: dict[str, tuple[set[int], int]] = {
    "activate": ({S.AGENT_STATUS_DRAFT, S.AGENT_STATUS_INACTIVE}, S.AGENT_STATUS_ACTIVE),
    "deactivate": ({S.AGENT_STATUS_ACTIVE}, S.AGENT_STATUS_INACTIVE),
    "deploy": ({S.AGENT_STATUS_ACTIVE}, S.AGENT_STATUS_DEPLOYED),
    "undeploy": ({S.AGENT_STATUS_DEPLOYED}, S.AGENT_STATUS_ACTIVE),
    "archive": ({S.AGENT_STATUS_DRAFT, S.AGENT_STATUS_ACTIVE, S.AGENT_STATUS_INACTIVE},
                S.AGENT_STATUS_ARCHIVED),
}
RUNNABLE = {"AGENT_STATUS_ACTIVE", "AGENT_STATUS_DEPLOYED"}


def check_name(name: str) -> None:
    """A name addresses the agent in paths beside its id, so it must not look like one."""
    if not name:
        raise invalid_field("name", "is required")
    if is_uuid(name):
        raise invalid_field("name", "1-100 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit, and not a UUID")


def create(session: Session, row: AgentRow) -> AgentRow:
    """Adds the agent with its version 1."""
    row = agents.add(session, row)
    AGENT_VERSIONS.first(session, row, created_by=row.created_by, agent=snapshot(row))
    return row


def update(session: Session, caller: Caller, key: str, changed: dict[str, Any]) -> AgentRow:
    """Applies the changes as a new immutable version (made by the caller), which becomes the
    agent's current one; the labels stay where they point."""
    row = agents.get(session, caller.tenant_id, key, lock=True)
    if row.status == "AGENT_STATUS_ARCHIVED":
        raise FailedPrecondition(f"agent {row.name!r} is archived and read-only",
                                 reason="AGENT_ARCHIVED")
    if all(getattr(row, name) == value for name, value in changed.items()):
        return row  # a no-op update keeps version and updated_at
    for name, value in changed.items():
        setattr(row, name, value)
    AGENT_VERSIONS.add(session, row, created_by=caller.user_id, agent=snapshot(row))
    return agents.save(session, row)


def delete(session: Session, tenant_id: str, key: str) -> str:
    """Deletes the agent with its versions (the audit log keeps every change); its name."""
    row = agents.get(session, tenant_id, key, lock=True)
    if row.status == "AGENT_STATUS_DEPLOYED":
        raise FailedPrecondition(f"agent {row.name!r} is deployed; undeploy it first",
                                 reason="AGENT_DEPLOYED", details={"agent": row.name})
    AGENT_VERSIONS.delete_all(session, row)
    agents.delete(session, row)
    return row.name


def transition(session: Session, tenant_id: str, key: str, action: str,
               environment: str = "") -> AgentRow:
    allowed, target = TRANSITIONS[action]
    row = agents.get(session, tenant_id, key, lock=True)
    current = pb.AgentStatus.Value(row.status)
    if current not in allowed:
        raise FailedPrecondition(
            f"cannot {action} agent {row.name!r} in status {row.status}; allowed from "
            f"{', '.join(sorted(pb.AgentStatus.Name(s) for s in allowed))}",
            reason="INVALID_AGENT_TRANSITION",
            details={"agent": row.name, "status": row.status, "action": action})
    row.status = pb.AgentStatus.Name(target)
    if action == "deploy":
        row.environment = environment or "production"
        row.deployed_at = utcnow()
        row.deployments += 1
    elif action == "undeploy":
        row.environment = ""
    return agents.save(session, row)
