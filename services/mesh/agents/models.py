"""Tables of the agents service. A change here needs a migration:
`agentmesh db revision agents -m "..."` writes it; tests/runtime/test_migrations.py fails until it
exists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mesh.runtime.tables import TenantTable, json_field, timestamp_field


class AgentRow(TenantTable, table=True):
    __tablename__ = "agents"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_agents_tenant_name"),)

    name: str
    description: str = ""
    agent_type: str = ""
    model: str = ""
    system_prompt: str = ""
    prompt_id: str = ""
    tools: list[str] = json_field(list)
    skills: list[str] = json_field(list)
    constraints: list[str] = json_field(list)
    config: dict[str, Any] = json_field(dict)
    labels: dict[str, str] = json_field(dict)
    status: str = "AGENT_STATUS_DRAFT"
    version: int = 1
    environment: str = ""
    deployments: int = 0
    deployed_at: datetime | None = timestamp_field()
    created_by: str = ""
    # Version labels (`production`, ...) -> version number (mesh.runtime.versions); `labels`
    # above are the user's own key-value labels.
    version_labels: dict[str, int] = json_field(dict)


class AgentVersionRow(TenantTable, table=True):
    """One immutable version of an agent: its configuration (the fields a client writes) as it
    was saved. Written by every create and every update that changes the agent, never changed."""

    __tablename__ = "agent_versions"
    __audit__ = False  # a record itself, not a change to audit
    __table_args__ = (sa.UniqueConstraint("agent_id", "version",
                                          name="uq_agent_versions_agent_version"),)

    agent_id: str = Field(index=True)
    version: int
    # The agent's writable fields at this version, as plain JSON values.
    agent: dict[str, Any] = json_field(dict)
    created_by: str = ""


class CallRow(TenantTable, table=True):
    __tablename__ = "calls"
    __audit__ = False  # a record itself, not a change to audit

    agent_id: str = Field(index=True)
    execution_id: str = ""
    status: str = "CALL_STATUS_ACTIVE"
    provider: str = ""
    started_at: datetime | None = timestamp_field()
    ended_at: datetime | None = timestamp_field()
    duration_ms: int = 0
    error: str = ""
    call_metadata: dict[str, Any] = Field(default_factory=dict, sa_column_kwargs={"name": "metadata"},
                                          sa_type=sa.JSON, nullable=False)
    transcript: list[dict[str, Any]] = json_field(list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_response_ms: int = 0
    tool_calls: int = 0
    cost_usd: float = 0.0
    model: str = ""
    reason: str = ""
    thread_id: str = ""
    # The agent version its latest interaction ran, and the label that chose it ("" when the
    # interaction named a version).
    agent_version: int = 0
    agent_label: str = ""
    # The model requests tried (model, outcome, status, reason, ms), in order.
    model_attempts: list[dict[str, Any]] = json_field(list)
    # The answer of the latest interaction (GetCallResult).
    result: dict[str, Any] = json_field(dict)
    # While ACTIVE: the process running it renews this; past it, the call was cut off by a
    # crash and ends FAILED (mesh.agents.runs).
    lease_until: datetime | None = timestamp_field()
    __table_args__ = (sa.Index("ix_calls_status_lease", "status", "lease_until"),)


class ThreadRow(TenantTable, table=True):
    """A conversation kept on the server (ThreadService)."""

    __tablename__ = "threads"

    agent_id: str = Field(default="", index=True)
    title: str = ""
    thread_metadata: dict[str, Any] = Field(default_factory=dict,
                                            sa_column_kwargs={"name": "metadata"},
                                            sa_type=sa.JSON, nullable=False)
    message_count: int = 0


class ThreadMessageRow(TenantTable, table=True):
    """One message of a thread, numbered from 1 (`seq`)."""

    __tablename__ = "thread_messages"
    __table_args__ = (sa.UniqueConstraint("thread_id", "seq", name="uq_thread_messages_seq"),)

    thread_id: str = Field(index=True)
    seq: int
    role: str
    content: str = ""
    call_id: str = ""
    tokens: int = 0
