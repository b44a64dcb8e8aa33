"""Tables of the workflows service (the API's view), and the execution statuses they hold. DBOS
keeps its own system tables apart (see mesh.workflows.state and docs/workflows.md). A change
here needs a migration: `agentmesh db revision workflows -m "..."`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from mesh import contract
from mesh.runtime.tables import TenantTable, json_field, timestamp_field

# An execution's status (ExecutionRow.status): once ended (the values the contract marks
# `final`) it never changes again (but for a retry, which queues it anew); while live (every
# other value) it counts against its tenant's execution quota.
_STATUSES = contract.default().enums["agentmesh.workflows.v1.ExecutionStatus"]
ENDED = tuple(sorted(contract.default().final_values("agentmesh.workflows.v1.ExecutionStatus")))
LIVE = tuple(v.name for v in _STATUSES.value if v.number and v.name not in ENDED)


class WorkflowRow(TenantTable, table=True):
    __tablename__ = "workflows"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "slug", name="uq_workflows_tenant_slug"),)

    name: str
    slug: str
    description: str = ""
    version: int = 1
    status: str = "WORKFLOW_STATUS_DRAFT"
    # The definition as proto JSON (steps, schemas, outputs, timeout); every version's copy is
    # in workflow_versions.
    definition: dict[str, Any] = json_field(dict)
    labels: dict[str, str] = json_field(dict)
    created_by: str = ""
    # Version labels (`production`, ...) -> version number (mesh.runtime.versions); `labels`
    # above are the user's own key-value labels.
    version_labels: dict[str, int] = json_field(dict)


class WorkflowVersionRow(TenantTable, table=True):
    """One immutable version of a workflow: what an execution of that version runs."""

    __tablename__ = "workflow_versions"
    __audit__ = False  # a record itself, not a change to audit
    __table_args__ = (sa.UniqueConstraint("workflow_id", "version",
                                          name="uq_workflow_versions_workflow_version"),)

    workflow_id: str = Field(index=True)
    version: int
    # The whole Workflow message as proto JSON, at this version.
    workflow: dict[str, Any] = json_field(dict)
    created_by: str = ""


class ExecutionRow(TenantTable, table=True):
    """An execution as the API shows it. Its id is also the DBOS workflow id of the
    interpreter (a retry runs a fork whose id is `dbos_workflow_id`)."""

    __tablename__ = "executions"
    # Its start in the audit trail: who ran what, with which inputs, as whom. Its progress
    # and outcome are the execution's own record (GET .../executions/{id}), not a change.
    __audit_columns__ = frozenset({
        "workflow_id", "workflow_slug", "workflow_version", "workflow_label", "status",
        "priority", "inputs", "created_by", "idempotency_key", "parent_execution_id",
        "root_execution_id", "schedule_id", "api_key_id", "scopes", "execution_metadata"})
    __table_args__ = (sa.UniqueConstraint("tenant_id", "idempotency_key",
                                          name="uq_executions_tenant_idempotency_key"),)

    workflow_id: str = Field(index=True)
    workflow_slug: str = ""
    workflow_version: int = 1
    # The label that chose `workflow_version` ("" when the start named a version).
    workflow_label: str = Field(default="", sa_column_kwargs={"server_default": ""})
    status: str = "EXECUTION_STATUS_QUEUED"
    # The trace of the call that started it ("" when untraced): its steps' spans join it.
    traceparent: str = Field(default="", sa_column_kwargs={"server_default": ""})
    priority: str = "EXECUTION_PRIORITY_NORMAL"
    progress: float = 0.0
    current_phase: str = ""
    phases_completed: list[str] = json_field(list)
    errors: list[dict[str, Any]] = json_field(list)
    partial_results: dict[str, Any] = json_field(dict)
    inputs: dict[str, Any] = json_field(dict)
    outputs: dict[str, Any] = json_field(dict)
    step_states: list[dict[str, Any]] = json_field(list)
    created_by: str = ""
    started_at: datetime | None = timestamp_field()
    ended_at: datetime | None = timestamp_field()
    # NULL when none was given (NULLs never collide in the unique constraint).
    idempotency_key: str | None = Field(default=None, nullable=True)
    parent_execution_id: str = ""
    # The execution at the top of a sub-workflow tree (empty for the root itself) and how far
    # below it this one is: the depth and fan-out limits count with them.
    root_execution_id: str = Field(default="", index=True)
    depth: int = 0
    schedule_id: str = ""
    dbos_workflow_id: str = ""
    # Retries of a failed execution so far (each runs a DBOS fork).
    runs: int = 0
    # Grows by one on every change; the event id of WatchExecution.
    seq: int = 0
    # Who its steps act as: `created_by`, the API key it came with (its id, "" for a token), and
    # the scopes in force when it started (docs/workflows.md, "Who steps act as").
    api_key_id: str = ""
    scopes: list[str] = json_field(list)
    # How it was started when not over REST: {"channel": "mcp", "mcp_client": <name>}.
    execution_metadata: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON,
                                               nullable=False,
                                               sa_column_kwargs={"server_default": "{}"})


class ScheduleRow(TenantTable, table=True):
    __tablename__ = "schedules"

    workflow_id: str = Field(index=True)
    cron: str
    timezone: str = "UTC"
    inputs: dict[str, Any] = json_field(dict)
    priority: str = "EXECUTION_PRIORITY_NORMAL"
    created_by: str = ""
    last_fired_at: datetime | None = timestamp_field()
    fired: int = 0
    # The executions it starts act as its creator, within these (recorded when it was made).
    api_key_id: str = ""
    scopes: list[str] = json_field(list)
    # The version (or label) every fire runs; neither: `production`, else `latest`, at the fire.
    label: str = Field(default="", sa_column_kwargs={"server_default": ""})
    version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class ExecutorRow(SQLModel, table=True):
    """A live replica of the workflows service (its DBOS executor), kept by a heartbeat. A
    replica whose heartbeat stops is lost: another replica recovers its pending executions
    (mesh.workflows.recovery.watch_executors)."""

    __tablename__ = "workflow_executors"
    __audit__ = False  # a record itself, not a change to audit

    executor_id: str = Field(primary_key=True)
    started_at: datetime | None = timestamp_field(nullable=False)
    heartbeat_at: datetime | None = timestamp_field(nullable=False)
