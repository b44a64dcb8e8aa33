"""The workflows service's repositories and its rows as messages: what the API and the engine
both read and write, so that neither imports the other.

The execution ids the engine derives (a sub-workflow step's child, a schedule's fire) are here
too: made once, whichever replica or replay asks again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf import json_format, struct_pb2
from sqlmodel import Session, select

from agentmesh.common.v1 import common_pb2
from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.runtime.convert import from_stored
from mesh.runtime.repository import TenantRepository
from mesh.runtime.versions import Versions
from mesh.runtime.tables import aware, new_id, utcnow
from mesh.workflows import definition as defn
from mesh.workflows.models import (ExecutionRow, ScheduleRow, WorkflowRow, WorkflowVersionRow)

E = "EXECUTION_STATUS_"
# Ids derived from what they stand for (uuid5 in this namespace): a child execution from its
# parent and step, a schedule's execution from the schedule and the fire's time.
NAMESPACE = uuid.UUID("5a4b8a52-0f0e-4b8e-9f36-6c1f0d3f7a10")

workflows = TenantRepository(WorkflowRow, noun="workflow", name_column="slug",
                             search_columns=("name", "slug", "description"),
                             order_columns=("name", "slug", "status"), quota="resource")
executions = TenantRepository(ExecutionRow, noun="execution", name_column=None,
                              order_columns=("started_at", "ended_at", "status", "priority"))
versions = TenantRepository(WorkflowVersionRow, noun="version", name_column=None,
                              order_columns=("version",), default_order="-version", quota="version")
# A workflow's versions follow the one rule set of mesh.runtime.versions; the row's
# `version_labels` are its version labels (its `labels` are the user's key-value labels).
WORKFLOW_VERSIONS: Versions[WorkflowVersionRow] = Versions(
    workflows, versions, parent="workflow_id", noun="workflow", name="slug",
    labels="version_labels", reason_prefix="", name_in_details=True)
schedules = TenantRepository(ScheduleRow, noun="schedule", name_column=None)


# ---- reads and new rows ----------------------------------------------------------------------

def find_workflow(session: Session, tenant_id: str, key: str) -> WorkflowRow | None:
    return workflows.find(session, tenant_id, key)


def version_of(session: Session, workflow_id: str, version: int) -> WorkflowVersionRow | None:
    """One immutable version of a workflow: what an execution of that version runs."""
    return session.exec(select(WorkflowVersionRow).where(
        WorkflowVersionRow.workflow_id == workflow_id,
        WorkflowVersionRow.version == version)).first()


@dataclass(frozen=True)
class Running:
    """The version of a workflow an execution runs: its definition (steps, schemas, timeout),
    number, and the label that chose it ("" when the start named a version)."""

    definition: dict
    version: int
    label: str


def running(session: Session, workflow: WorkflowRow, number: int = 0,
            label: str = "") -> Running:
    """The version a start asks for: `number`, `label`, else `production` when the workflow
    has it, else `latest` (mesh.runtime.versions); NOT_FOUND when it has no such version or
    label."""
    current = running_current(workflow, number, label)
    if current is not None:
        return current
    number, label = WORKFLOW_VERSIONS.pick(workflow, number, label)
    return Running(WORKFLOW_VERSIONS.get(session, workflow, number).workflow, number, label)


def running_current(workflow: WorkflowRow, number: int = 0, label: str = "") -> Running | None:
    """`running` when the version asked for is the workflow's current one (nothing to read),
    else None."""
    number, label = WORKFLOW_VERSIONS.pick(workflow, number, label)
    return Running(workflow.definition, number, label) if number == workflow.version else None


def new_execution(workflow: WorkflowRow, inputs: dict, priority: str, created_by: str, *,
                  execution_id: str | None = None, idempotency_key: str | None = None,
                  api_key_id: str = "", scopes: list[str] | tuple[str, ...] = (),
                  traceparent: str = "", metadata: dict | None = None,
                  run: Running | None = None) -> ExecutionRow:
    """A queued execution of the version `run` names (default: the current one) whose steps
    act as `created_by` (with `api_key_id`, the key it came with), within `scopes`."""
    run = run or Running(workflow.definition, workflow.version, "")
    steps = run.definition.get("steps", [])
    now = utcnow()
    return ExecutionRow(
        id=execution_id or new_id(), tenant_id=workflow.tenant_id, workflow_id=workflow.id,
        workflow_slug=workflow.slug, workflow_version=run.version, workflow_label=run.label,
        priority=priority,
        inputs=inputs, created_by=created_by, idempotency_key=idempotency_key or None,
        api_key_id=api_key_id, scopes=sorted(scopes), traceparent=traceparent,
        execution_metadata=metadata or {}, dbos_workflow_id=execution_id or "",
        step_states=[{"step_id": s["id"], "name": s.get("name") or s["id"],
                      "status": "STEP_STATUS_PENDING", "attempts": 0} for s in steps],
        created_at=now, updated_at=now)


def child_execution_id(parent_execution_id: str, step_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{parent_execution_id}/{step_id}"))


def scheduled_execution_id(schedule_id: str, scheduled_at: datetime) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{schedule_id}@{scheduled_at.isoformat()}"))


def timeout_of(definition: dict) -> float | None:
    """A workflow's timeout in seconds (its definition's `timeout`, "30s"), None without one."""
    text = definition.get("timeout")
    if not text:
        return None
    return float(text.rstrip("s"))


# ---- rows as messages ------------------------------------------------------------------------

def timestamp(value: datetime | None) -> str | None:
    value = aware(value)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def iso(moment: datetime | None = None) -> str:
    """A moment (now by default) as the step states and error records write it."""
    return (moment or utcnow()).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _clean(data: dict) -> dict:
    return {k: v for k, v in data.items() if v not in (None, "", [], {})}


def workflow_message(row: WorkflowRow) -> pb.Workflow:
    message = defn.workflow_from_json(row.definition)
    message.MergeFrom(json_format.ParseDict(_clean({
        "id": row.id, "tenant_id": row.tenant_id, "name": row.name, "slug": row.slug,
        "description": row.description, "version": row.version, "status": row.status,
        "labels": row.labels, "version_labels": row.version_labels,
        "created_by": row.created_by,
        "created_at": timestamp(row.created_at), "updated_at": timestamp(row.updated_at)}),
        pb.Workflow()))
    return message


def at_version(row: WorkflowRow, version: WorkflowVersionRow) -> pb.Workflow:
    """The workflow as it was at `version`: that version's content, the row's id, status and
    version labels."""
    message = defn.workflow_from_json(version.workflow)
    message.status = pb.WorkflowStatus.Value(row.status)
    message.version_labels.clear()
    message.version_labels.update(row.version_labels)
    return message


def version_message(row: WorkflowVersionRow, workflow: WorkflowRow) -> pb.WorkflowVersion:
    out = pb.WorkflowVersion(workflow_id=row.workflow_id, version=row.version,
                             workflow=defn.workflow_from_json(row.workflow),
                             created_by=row.created_by,
                             labels=WORKFLOW_VERSIONS.labels_at(workflow, row.version))
    out.created_at.FromDatetime(aware(row.created_at))
    return out


# What a diff of two workflow versions leaves out: who, when and which number, not content.
_NOT_CONTENT = ("id", "tenant_id", "version", "status", "created_by", "created_at",
                "updated_at", "version_labels")


def diff_message(row: WorkflowRow, older: WorkflowVersionRow,
                 newer: WorkflowVersionRow) -> common_pb2.VersionDiff:
    out = common_pb2.VersionDiff(resource_id=row.id, from_version=older.version,
                                 to_version=newer.version)
    before, after = ({k: v for k, v in version.workflow.items() if k not in _NOT_CONTENT}
                     for version in (older, newer))
    for name, was, now in Versions.diff(before, after):
        change = out.changes.add(field=name)
        change.before.CopyFrom(json_format.ParseDict(was, struct_pb2.Value()))
        change.after.CopyFrom(json_format.ParseDict(now, struct_pb2.Value()))
    return out


def workflow_type_message(row: WorkflowRow) -> pb.WorkflowType:
    out = pb.WorkflowType(workflow_type=row.slug, workflow_id=row.id, name=row.name,
                          description=row.description, version=row.version)
    if row.definition.get("input_schema"):
        out.input_schema.update(row.definition["input_schema"])
    return out


def _step_state(state: dict) -> dict:
    output = state.get("output")
    if output is not None and not isinstance(output, dict):
        output = {"value": output}
    return _clean({"step_id": state["step_id"], "status": state["status"],
                   "attempts": state.get("attempts", 0), "started_at": state.get("started_at"),
                   "ended_at": state.get("ended_at"), "output": output,
                   "error": state.get("error"), "decisions": state.get("decisions"),
                   "child_execution_id": state.get("child_execution_id")})


def execution_message(row: ExecutionRow) -> pb.Execution:
    return from_stored(pb.Execution, {
        "id": row.id, "tenant_id": row.tenant_id, "workflow_id": row.workflow_id,
        "workflow_slug": row.workflow_slug, "workflow_version": row.workflow_version,
        "status": row.status, "progress": row.progress, "current_phase": row.current_phase,
        "phases_completed": row.phases_completed, "errors": row.errors,
        "partial_results": row.partial_results, "inputs": row.inputs, "outputs": row.outputs,
        "step_states": [_step_state(s) for s in row.step_states], "priority": row.priority,
        "created_by": row.created_by, "created_at": row.created_at,
        "started_at": row.started_at, "ended_at": row.ended_at,
        "updated_at": row.updated_at, "idempotency_key": row.idempotency_key,
        "parent_execution_id": row.parent_execution_id, "schedule_id": row.schedule_id,
        "api_key_id": row.api_key_id, "scopes": list(row.scopes),
        "metadata": row.execution_metadata or None,
        "workflow_label": row.workflow_label,
    })


def progress_message(row: ExecutionRow) -> pb.ExecutionProgress:
    return from_stored(pb.ExecutionProgress, {
        "execution_id": row.id, "session_id": row.id, "status": row.status,
        "progress": row.progress, "current_phase": row.current_phase,
        "phases_completed": row.phases_completed, "errors": row.errors,
        "partial_results": row.partial_results, "updated_at": row.updated_at,
        "event_id": row.seq, "step_states": [_step_state(s) for s in row.step_states],
    })


def progress_payload(row: ExecutionRow) -> dict:
    """The execution's progress as WatchExecution's Server-Sent Events and the live events
    carry it."""
    return json_format.MessageToDict(progress_message(row), preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def schedule_message(row: ScheduleRow) -> pb.Schedule:
    return json_format.ParseDict(_clean({
        "id": row.id, "tenant_id": row.tenant_id, "workflow_id": row.workflow_id,
        "cron": row.cron, "timezone": row.timezone, "inputs": row.inputs,
        "priority": row.priority, "created_by": row.created_by,
        "api_key_id": row.api_key_id, "scopes": list(row.scopes),
        "last_fired_at": timestamp(row.last_fired_at), "fired": row.fired,
        "created_at": timestamp(row.created_at), "updated_at": timestamp(row.updated_at),
        "label": row.label, "version": row.version or None}),
        pb.Schedule())


def priority_name(value: int) -> str:
    return pb.ExecutionPriority.Name(value or pb.EXECUTION_PRIORITY_NORMAL)


# ---- seed 000's words (execute-workflow, workflow-status) ------------------------------------

def seed_status(status: str) -> str:
    """The enum name in lower case: `queued`, `running`, ..."""
    return status.removeprefix(E).lower()


# Seed 000's priorities (`low|normal|high|critical`) to the platform's.
SEED_PRIORITIES = {word: f"EXECUTION_PRIORITY_{word.upper()}"
                   for word in ("low", "normal", "high", "critical")}


def seed_progress_message(row: ExecutionRow) -> pb.GetWorkflowStatusResponse:
    """The execution as seed 000's WorkflowProgressResponse."""
    return json_format.ParseDict(_clean({
        "session_id": row.id, "execution_id": row.id, "status": seed_status(row.status),
        "progress": row.progress, "current_phase": row.current_phase,
        "phases_completed": row.phases_completed, "errors": row.errors,
        "partial_results": row.partial_results,
        "results": row.outputs if row.status == E + "COMPLETED" else None,
        "created_at": timestamp(row.created_at), "updated_at": timestamp(row.updated_at),
    }), pb.GetWorkflowStatusResponse(), ignore_unknown_fields=True)
