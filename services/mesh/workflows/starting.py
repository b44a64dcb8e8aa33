"""Starting an execution from the API: the workflow must be active, the inputs must match its
input schema, the tenant must be under its execution quota; an idempotency key makes a second
start answer the first execution. The row is written, then its interpreter queued; a pure
workflow instead runs in the call and is written once, ended (mesh.workflows.inline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import Session, select

from mesh.governance import client as governance
from mesh.runtime import schemas, telemetry
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.errors import FailedPrecondition, InvalidArgument
from mesh.runtime.settings import Settings
from mesh.workflows import limits
from mesh.workflows.engine import Engine
from mesh.workflows.models import ExecutionRow, WorkflowRow
from mesh.runtime.tables import new_id
from mesh.workflows.store import (Running, executions, new_execution, running,
                                  running_current, timeout_of, workflows)


class _ValidateInSandbox(Exception):
    """The input schema has references: validating may take long, so not inside the
    transaction (nor on the event loop) but in the sandbox first (mesh.runtime.schemas)."""

    def __init__(self, schema: dict) -> None:
        super().__init__("validate in the sandbox")
        self.schema = schema


def _check_inputs(run: Running, inputs: dict, validated: dict | None = None) -> None:
    schema = run.definition.get("input_schema") or {}
    if not schema or schema == validated:
        return
    if not schemas.is_bounded(schema):
        raise _ValidateInSandbox(schema)
    _refuse_inputs(schemas.instance_errors(schema, inputs, "inputs", "input_schema"))


def _refuse_inputs(errors: list[tuple[str, str]]) -> None:
    if errors:
        raise InvalidArgument("; ".join(f"{f}: {p}" for f, p in errors),
                              field_violations=errors)


@dataclass
class _Plan:
    """What one read tells a start: the workflow's slug (what governance decides on), the
    execution its idempotency key already started, and, when it may run in this call, the
    workflow and the version to run."""

    slug: str
    existing: ExecutionRow | None = None
    workflow: WorkflowRow | None = None
    run: Running | None = None


async def start(db: Database, settings: Settings, engine: Engine, caller: Caller,
                workflow_key: str, inputs: dict, priority: str,
                idempotency_key: str, *, version: int = 0, label: str = "",
                inline: bool = True) -> ExecutionRow:
    """A new execution of the workflow's version that `version` or `label` names (default
    `production` when it has it, else `latest`; store.running), or the one its idempotency
    key already started, acting as the caller, within the caller's scopes. Governance decides the start first
    (`execute_workflow` on the workflow's slug): a denial is 403 `GOVERNANCE_DENIED`.
    A pure workflow runs to its end in this call (`inline`, mesh.workflows.inline); any other
    is queued."""
    inline = inline and settings.workflow_inline
    decided = governance.enabled(engine.peers)
    plan = None
    if inline or decided:
        plan = await _read_plan(db, settings, caller, workflow_key, inputs, idempotency_key,
                                version, label, inline)
    if decided:
        await governance.require(engine.peers, f"workflow {plan.slug!r}",
                                 action="execute_workflow", resource_type="Workflow",
                                 resource_id=plan.slug, arguments={"step": "", "inputs": inputs})
    if plan is not None and plan.existing is not None:
        return plan.existing
    if plan is not None and plan.run is not None:
        row = await _run_inline(db, engine, caller, plan, inputs, priority, idempotency_key)
        if row is not None:
            telemetry.annotate(agentmesh__execution_id=row.id)
            return row
    return await _queue(db, settings, engine, caller, workflow_key, inputs, priority,
                        idempotency_key, version, label)


class _ReadVersion(Exception):
    """The start asks for a version other than the workflow's current one: its definition is
    in another row."""


async def _read_plan(db: Database, settings: Settings, caller: Caller, workflow_key: str,
                     inputs: dict, idempotency_key: str, version: int, label: str,
                     inline: bool) -> _Plan:
    """A few rows by key, on the loop (mesh.runtime.db). Without an idempotency key (whose
    execution would be an ORM row) or an older version to read, two raw statements in one
    snapshot: the ORM's session cost more than they do."""
    if not idempotency_key:
        found, ((live,),) = await db.fetch(
            workflows.finding(db, caller.tenant_id, workflow_key),
            limits.live_counting(db, caller.tenant_id), inline=True)
        if not found:
            raise workflows.not_found(workflow_key)
        workflow = workflows.row_of(db, found[0])

        def current() -> Running:
            run = running_current(workflow, version, label)
            if run is None:
                raise _ReadVersion
            return run
        try:
            return _planned(settings, workflow, None, lambda: live, current, inputs, inline)
        except _ReadVersion:
            pass
    return await db.read(lambda session: _plan(session, settings, caller, workflow_key,
                                               inputs, idempotency_key, version, label,
                                               inline), inline=True)


def _plan(session: Session, settings: Settings, caller: Caller, workflow_key: str,
          inputs: dict, idempotency_key: str, version: int, label: str,
          inline: bool) -> _Plan:
    workflow = workflows.get(session, caller.tenant_id, workflow_key)
    return _planned(settings, workflow, _existing(session, caller.tenant_id, idempotency_key),
                    lambda: limits.live_executions(session, caller.tenant_id),
                    lambda: running(session, workflow, version, label), inputs, inline)


def _planned(settings: Settings, workflow: WorkflowRow, existing: ExecutionRow | None,
             live: Callable[[], int], run_of: Callable[[], Running], inputs: dict,
             inline: bool) -> _Plan:
    """`run` is set when the execution may run in this call: the workflow active, the tenant
    below its share of the queue and its quota (so the run never overtakes its backlog), the
    inputs valid without the sandbox. Otherwise the queued path starts it, or says why not."""
    plan = _Plan(workflow.slug, existing)
    if plan.existing is not None or not inline or workflow.status != "WORKFLOW_STATUS_ACTIVE":
        return plan
    room = min(settings.workflow_tenant_concurrency, settings.tenant_max_live_executions)
    if live() >= room:
        return plan
    run = run_of()
    try:
        _check_inputs(run, inputs)
    except (_ValidateInSandbox, InvalidArgument):  # the queued path validates and says why
        return plan
    plan.workflow, plan.run = workflow, run
    return plan


def _new_row(caller: Caller, workflow: WorkflowRow, run: Running, inputs: dict, priority: str,
             idempotency_key: str, execution_id: str | None = None) -> ExecutionRow:
    return new_execution(workflow, inputs, priority, caller.user_id,
                         execution_id=execution_id, idempotency_key=idempotency_key,
                         api_key_id=caller.api_key_id, scopes=sorted(caller.scopes),
                         traceparent=telemetry.traceparent(),
                         metadata={"channel": "mcp", "mcp_client": caller.mcp_client}
                         if caller.mcp_client else None, run=run)


def _existing(session: Session, tenant_id: str, idempotency_key: str) -> ExecutionRow | None:
    if not idempotency_key:
        return None
    return session.exec(select(ExecutionRow).where(
        ExecutionRow.tenant_id == tenant_id,
        ExecutionRow.idempotency_key == idempotency_key)).first()


async def _run_inline(db: Database, engine: Engine, caller: Caller, plan: _Plan, inputs: dict,
                      priority: str, idempotency_key: str) -> ExecutionRow | None:
    """The execution run to its end in this call and written once, or None when it must be
    queued after all (not pure, or past a bound of mesh.workflows.inline)."""
    from mesh.workflows import inline  # the interpreter: DBOS, loaded once the service runs

    execution_id = new_id()

    def new_row() -> ExecutionRow:
        row = _new_row(caller, plan.workflow, plan.run, inputs, priority, idempotency_key,
                       execution_id)
        row.dbos_workflow_id = ""  # none: run in this call
        return row
    ended = await inline.run(engine, new_row, plan.run.definition)
    if ended is None:
        return None

    # No quota check: an ended execution is not live, so it takes nothing from the quota.
    def insert(session: Session) -> tuple[ExecutionRow, dict | None]:
        existing = _existing(session, caller.tenant_id, idempotency_key)
        if existing is not None:  # a concurrent start with the same key won
            return existing, None
        ended.seq = 1  # the one state anyone sees of it: its first event (WatchExecution)
        if idempotency_key:  # unique per tenant: a concurrent start may hold it (409)
            executions.add(session, ended)
            return ended, engine.projection.write(session, ended, was_ended=False)
        executions.insert(session, ended)  # a new id and no other unique value
        return ended, engine.projection.written(session, ended, was_ended=False)
    row, payload = await db.write(insert, inline=True)
    if payload is not None:
        await engine.projection.announce(row.id, row.tenant_id, payload)
    return row


async def _queue(db: Database, settings: Settings, engine: Engine, caller: Caller,
                 workflow_key: str, inputs: dict, priority: str, idempotency_key: str,
                 version: int, label: str) -> ExecutionRow:
    """The execution written QUEUED and its interpreter put on the queue."""
    validated: dict | None = None

    # (the execution, whether it is new, its workflow's timeout)
    def create(session: Session) -> tuple[ExecutionRow, bool, float | None]:
        workflow = workflows.get(session, caller.tenant_id, workflow_key)
        existing = _existing(session, caller.tenant_id, idempotency_key)
        if existing is not None:
            return existing, False, None  # already enqueued
        if workflow.status != "WORKFLOW_STATUS_ACTIVE":
            raise FailedPrecondition(
                f"workflow {workflow.slug!r} is {workflow.status}; activate it first",
                reason="WORKFLOW_NOT_ACTIVE",
                details={"workflow": workflow.slug, "status": workflow.status})
        run = running(session, workflow, version, label)
        _check_inputs(run, inputs, validated)
        limits.check_execution_quota(session, caller.tenant_id, settings)
        row = _new_row(caller, workflow, run, inputs, priority, idempotency_key)
        row.dbos_workflow_id = row.id
        executions.add(session, row)
        return row, True, timeout_of(run.definition)
    try:
        row, made, timeout = await db.write(create)
    except _ValidateInSandbox as needed:  # nothing was written; validate, then again
        _refuse_inputs(await schemas.instance_errors_async(
            needed.schema, inputs, "inputs", "input_schema", tenant=caller.tenant_id))
        validated = needed.schema
        row, made, timeout = await db.write(create)
    telemetry.annotate(agentmesh__execution_id=row.id)
    if made:
        await engine.enqueue(row.id, row.tenant_id, row.priority, timeout)
    return row
