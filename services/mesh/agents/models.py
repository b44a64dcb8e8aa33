"""Tables of the agents service. Changes go through a new migration in `migrations/`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from mesh.runtime.repository import new_id, timestamp_column


class AgentRow(SQLModel, table=True):
    __tablename__ = "agents"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_agents_tenant_name"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    tenant_id: str = Field(index=True)
    name: str
    description: str = ""
    agent_type: str = ""
    model: str = ""
    system_prompt: str = ""
    prompt_id: str = ""
    tools: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    skills: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    constraints: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = "AGENT_STATUS_DRAFT"
    version: int = 1
    environment: str = ""
    deployments: int = 0
    deployed_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    created_by: str = ""
    created_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=False))
    updated_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=False))


class CallRow(SQLModel, table=True):
    __tablename__ = "calls"

    id: str = Field(default_factory=new_id, primary_key=True)
    tenant_id: str = Field(index=True)
    agent_id: str = Field(index=True)
    execution_id: str = ""
    status: str = "CALL_STATUS_ACTIVE"
    provider: str = ""
    started_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    ended_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    duration_ms: int = 0
    error: str = ""
    call_metadata: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False))
    transcript: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_response_ms: int = 0
    tool_calls: int = 0
    cost_usd: float = 0.0
    created_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=False))
    updated_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=False))
