"""Pure workflows run in the call that starts them (docs/workflows.md, "Pure workflows").

A workflow whose steps are all transforms and conditions whose expressions are bounded
(`mesh.workflows.expressions.is_bounded`: their cost is bounded by the document; multi-selects
too, which build values of references, each value measured here) has no effect outside its run
and costs what its expressions cost, tens of microseconds. Queuing it for a DBOS
interpreter costs a hundred times that: a queue claim, a checkpoint per step, a write for every
change of the row. So ExecuteWorkflow runs it at once, in memory, with the interpreter's own
walk (`mesh.workflows.run.Run`, whose projection here is one row not yet written), and writes the
ended execution in one transaction; the call answers it COMPLETED (or FAILED) with its outputs.

Nothing in it needs to be durable: a crash before the write loses nothing the caller was told
of (the call fails; a retry with the same idempotency key starts it again), and running the
steps again gives the same result. A retry of such a FAILED execution queues an interpreter
from the start (`mesh.workflows.control.retry`).

Governance still decides every step that runs, as the execution's starter. The run is made once
without asking; then the steps it ran are decided, a wave's steps together (as the queued
interpreter asks, wave after wave, and no further than a wave with a denial). When one is denied
the run is made again with the decisions (it is deterministic), so it ends as the queued
interpreter would have ended it: that step FAILED with GOVERNANCE_DENIED, the rest skipped.

A run that passes a bound (MAX_SECONDS of evaluating, or a value larger than
AGENTMESH_RENDER_MAX_BYTES as JSON) stops and is queued instead, where the sandbox evaluates
what builds values.

A tenant at its share of the queue (as many live executions as
AGENTMESH_WORKFLOW_TENANT_CONCURRENCY) is queued as before, so a pure run never overtakes the
tenant's own backlog; AGENTMESH_WORKFLOW_INLINE=false queues every execution.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.workflows.engine import Engine
from mesh.workflows.expressions import BUILDING_MEASURED, expanded_size, is_bounded
from mesh.workflows.models import ExecutionRow
from mesh.workflows.projection import Unwritten
from mesh.workflows.run import Run

T = pb.StepType
PURE_STEPS = frozenset({T.STEP_TYPE_TRANSFORM, T.STEP_TYPE_CONDITION})


# Past either, the run stops and the execution is queued instead (nothing was written): the
# time its expressions took, and what one step's output or the outputs would be as JSON
# (AGENTMESH_RENDER_MAX_BYTES, the bound of any rendered value).
MAX_SECONDS = 0.05


class _TooCostly(Exception):
    """The run passed a bound: it is queued instead."""


def _bounded(text: str) -> bool:
    return is_bounded(text, building=True)


def is_pure(workflow: pb.Workflow) -> bool:
    """Every step a transform or a condition, every expression (the steps', their inputs',
    the outputs') bounded, multi-selects allowed (each value they build is measured)."""
    for step in workflow.steps:
        if step.type not in PURE_STEPS:
            return False
        expression = (step.transform.expression if step.type == T.STEP_TYPE_TRANSFORM
                      else step.condition.expression)
        if not _bounded(expression) or not all(map(_bounded, step.inputs.values())):
            return False
    return all(map(_bounded, workflow.outputs.values()))


class _Now:
    """A step run at once, without a checkpoint (what `Run.reserve`'s DBOS reservation is to
    the queued interpreter)."""

    @staticmethod
    async def run_async(options: dict, fn: Callable, *args: Any) -> Any:
        return await fn(*args)


class InlineRun(Run):
    """The interpreter's walk over one row in memory. `decided`: governance's answers for the
    steps (a denial's failure, or None), or None to run without asking and note which steps
    ran (`ran`)."""

    def __init__(self, engine: Engine, row: ExecutionRow, snapshot: dict,
                 decided: dict[str, dict | None] | None = None) -> None:
        super().__init__(engine, row.id, snapshot)
        self.projection = Unwritten(row)
        self.decided = decided
        # (wave, step, id) of each step run without asking.
        self.ran: list[tuple[int, pb.Step, str]] = []
        self.wave = 0
        # Seconds spent evaluating (inline, so without yielding to the loop): the loop's time
        # this run took from every other call (a wall clock would count theirs too).
        self.spent = 0.0
        self.max_bytes = engine.settings.render_max_bytes

    async def execute(self) -> dict:
        result = await super().execute()
        self.measure(self.row.outputs)
        return result

    @property
    def row(self) -> ExecutionRow:
        return self.projection.row

    async def _run_wave(self, wave: list[str]) -> Any:
        self.wave += 1
        return await super()._run_wave(wave)

    def reserve(self, count: int) -> list:
        return [_Now] * count

    async def resolve_inputs(self, step: pb.Step) -> dict:
        began = time.perf_counter()
        args = await super().resolve_inputs(step)
        self.spent += time.perf_counter() - began
        self.measure(args)
        return args

    async def perform(self, step: pb.Step, args: dict, key: str) -> Any:
        began = time.perf_counter()
        try:
            return await super().perform(step, args, key)
        finally:
            self.spent += time.perf_counter() - began

    async def record(self, sid: str, result: dict) -> Any:
        if result["ok"]:
            self.measure(result["output"])
        return await super().record(sid, result)

    def measure(self, value: Any) -> None:
        if self.spent > MAX_SECONDS or \
                expanded_size(value, self.max_bytes) > self.max_bytes:
            raise _TooCostly

    async def _governed(self, step: pb.Step, sid: str) -> dict | None:
        if self.decided is None:
            self.ran.append((self.wave, step, sid))
            return None
        return self.decided.get(sid)


def snapshot_of(row: ExecutionRow, definition: dict) -> dict:
    """What the queued interpreter's `load` checkpoint holds, from the new row."""
    return {"tenant_id": row.tenant_id, "workflow": definition, "inputs": row.inputs,
            "created_by": row.created_by, "api_key_id": row.api_key_id,
            "scopes": list(row.scopes), "workflow_id": row.workflow_id,
            "workflow_slug": row.workflow_slug, "traceparent": row.traceparent}


async def run(engine: Engine, new_row: Callable[[], ExecutionRow],
              definition: dict) -> ExecutionRow | None:
    """The execution `new_row()` makes (a new row of one id each time), run to its end in
    memory (not written), or None when its workflow is not pure."""
    building = BUILDING_MEASURED.set(True)
    try:
        return await _run(engine, new_row, definition)
    except _TooCostly:
        return None
    finally:
        BUILDING_MEASURED.reset(building)


async def _run(engine: Engine, new_row: Callable[[], ExecutionRow],
               definition: dict) -> ExecutionRow | None:
    row = new_row()
    first = InlineRun(engine, row, snapshot_of(row, definition))
    if not is_pure(first.workflow):
        return None
    await first.execute()
    # Wave by wave, as the queued interpreter asks: a wave's steps together; after a wave with
    # a denial no later step runs, so none is decided.
    denied: dict[str, dict] = {}
    for wave in sorted({number for number, _, _ in first.ran}):
        steps = [(step, sid) for number, step, sid in first.ran if number == wave]
        answers = await asyncio.gather(*(first.decide_step(step, sid) for step, sid in steps))
        denied = {sid: answer for (_, sid), answer in zip(steps, answers) if answer is not None}
        if denied:
            break
    if not denied:
        return first.row
    row = new_row()
    again = InlineRun(engine, row, snapshot_of(row, definition), denied)
    await again.execute()
    return again.row
