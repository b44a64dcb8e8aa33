"""Sub-workflow steps: the child execution is made once (its id derives from the parent and the
step), started once (at once, not queued: see `WorkflowsState.launch`), retried when the parent
is retried, and waited for; a limit the child reached is the parent step's reason too.
"""

from __future__ import annotations

import asyncio

from dbos import DBOS
from sqlmodel import Session

from mesh.workflows import control, limits
from mesh.workflows.engine import Engine, detached
from mesh.workflows.failures import StepFailure
from mesh.workflows.models import ExecutionRow, WorkflowRow
from mesh.workflows.store import (child_execution_id, executions, find_workflow, new_execution,
                                  running, timeout_of)

E = "EXECUTION_STATUS_"


async def make_child(engine: Engine, parent_execution_id: str, step_id: str, workflow_key: str,
                     inputs: dict, *, tenant_id: str, created_by: str, api_key_id: str,
                     scopes: frozenset[str]) -> tuple[str, dict]:
    """The child execution of a sub-workflow step (made by the first call, found by the next):
    its id and {priority, status, timeout}. Refused, failing the step, past the depth limit,
    the tree's limit of descendants or the tenant's execution quota. The child acts as the
    parent's starter (`created_by`, `api_key_id`, `scopes`: as the parent's run does)."""
    settings = engine.settings
    child_id = child_execution_id(parent_execution_id, step_id)

    def make(session: Session) -> dict:
        existing = session.get(ExecutionRow, child_id)
        if existing is not None:
            workflow = session.get(WorkflowRow, existing.workflow_id)
            return {"priority": existing.priority, "status": existing.status,
                    "timeout": timeout_of(workflow.definition) if workflow else None}
        workflow = find_workflow(session, tenant_id, workflow_key)
        if workflow is None:
            raise StepFailure("SUB_WORKFLOW_NOT_FOUND",
                              f"workflow {workflow_key!r} not found")
        if workflow.status != "WORKFLOW_STATUS_ACTIVE":
            raise StepFailure("SUB_WORKFLOW_INACTIVE",
                              f"workflow {workflow.slug!r} is not active")
        try:
            root, depth = limits.check_child(
                session, session.get(ExecutionRow, parent_execution_id), settings)
        except limits.LimitReached as exc:
            raise StepFailure(exc.code, exc.message) from None
        run = running(session, workflow)   # production, else latest
        row = new_execution(workflow, inputs, "EXECUTION_PRIORITY_HIGH", created_by,
                            execution_id=child_id, api_key_id=api_key_id,
                            scopes=sorted(scopes), run=run)  # as the parent's starter
        row.parent_execution_id = parent_execution_id
        row.root_execution_id, row.depth = root, depth
        executions.add(session, row)
        return {"priority": row.priority, "status": row.status,
                "timeout": timeout_of(run.definition)}
    return child_id, await engine.db.write(make)


async def start_child(engine: Engine, child_id: str, child: dict) -> None:
    if child["status"] == E + "FAILED":  # the parent is retried: so is its failed child
        await detached(control.retry(engine, child_id))
    elif await DBOS.get_workflow_status_async(child_id) is None:
        await engine.launch(child_id, child["timeout"])


async def wait_child(engine: Engine, child_id: str) -> dict:
    """The child's outputs once it completes; StepFailure when it fails or is cancelled."""
    while True:
        # Registered before the read, so a change between the read and the wait is not missed.
        event = engine.projection.changed(child_id)
        row = await engine.db.read(lambda s: s.get(ExecutionRow, child_id))
        if row.status == E + "COMPLETED":
            return dict(row.outputs)
        if row.status in (E + "FAILED", E + "CANCELLED"):
            # A limit the child (or its own child) reached is the parent's reason too.
            limit = [e for e in row.errors if e.get("code") in limits.PROPAGATED]
            last = (limit or row.errors or [{}])[-1]
            raise StepFailure(last["code"] if limit else "SUB_WORKFLOW_FAILED",
                              f"child execution {child_id} ended {row.status}: "
                              f"{last.get('message') or row.status}")
        try:
            await asyncio.wait_for(event.wait(), 1.0)
        except TimeoutError:
            pass
