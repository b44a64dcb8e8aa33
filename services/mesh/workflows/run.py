"""The interpreter of one execution: the body of the DBOS workflow `agentmesh.workflows.interpret`
(registered by mesh.workflows.state), replayed from its checkpoints after a crash.

It loads the definition snapshot (the workflow version the execution was queued with) in a
checkpointed step, then walks the step graph in waves: every step whose dependencies have
ended runs, the wave's steps concurrently, each as one DBOS step (retries, backoff and
per-attempt timeouts inside it: mesh.workflows.steps). Step ids are reserved in the graph's
order before the wave starts, so a replay after a crash meets the same checkpoints at the same
ids whatever order the steps finished in. Approval and parallel steps run after the wave's
others, one at a time: they drive the walk themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from dbos import DBOS
from sqlmodel import Session

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.runtime import metrics, telemetry
from mesh.runtime.tables import utcnow
from mesh.workflows import definition as defn
from mesh.workflows import limits
from mesh.workflows.engine import Engine
from mesh.workflows.failures import Failure, StepFailure
from mesh.workflows.models import ENDED, ExecutionRow
from mesh.workflows.projection import end, error_record
from mesh.workflows.steps import StepKinds
from mesh.workflows.store import iso, version_of

log = logging.getLogger("mesh.workflows.run")
T = pb.StepType
E = "EXECUTION_STATUS_"
S = "STEP_STATUS_"


async def interpret(engine: Engine, execution_id: str) -> dict:
    """Runs the execution to its end; what the DBOS workflow returns."""
    async def load(execution_id: str) -> dict:
        def read(session: Session) -> dict:
            row = session.get(ExecutionRow, execution_id)
            version = version_of(session, row.workflow_id, row.workflow_version)
            return {"tenant_id": row.tenant_id, "workflow": version.workflow,
                    "inputs": row.inputs, "created_by": row.created_by,
                    "api_key_id": row.api_key_id, "scopes": list(row.scopes),
                    "workflow_id": row.workflow_id, "workflow_slug": row.workflow_slug,
                    "traceparent": row.traceparent}
        return await engine.db.read(read, inline=True)  # two rows by key

    snapshot = await DBOS.run_step_async({"name": "load"}, load, execution_id)
    run = Run(engine, execution_id, snapshot)
    try:
        return await run.execute()
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        if engine.stopping:
            # The process is shutting down under the interpreter: DBOS recovers it on
            # the next start; the row must not say it failed.
            raise
        if type(exc).__module__.startswith("dbos"):
            # Cancelled by a user (the row already says so) or past the workflow's
            # timeout (DBOS cancels it): the latter is a failure with code TIMEOUT.
            if "Cancel" in type(exc).__name__:
                error = error_record("", "TIMEOUT",
                                     "the execution ran longer than the workflow's timeout")
            else:
                error = error_record("", "INTERNAL", f"{type(exc).__name__}: {exc}")
            await engine.projection.update(execution_id,
                                           lambda row: end(row, E + "FAILED", error))
            raise
        log.exception("interpreter of %s failed", execution_id)
        error = error_record("", "INTERNAL", f"{type(exc).__name__}: {exc}")
        await engine.projection.update(execution_id, lambda row: end(row, E + "FAILED", error))
        return {"status": "FAILED"}


class Run(StepKinds):
    """One interpretation of an execution's definition snapshot (replayed after a crash): the
    walk here, what one step does in `StepKinds`."""

    def __init__(self, engine: Engine, execution_id: str, snapshot: dict) -> None:
        self.engine = engine
        self.projection = engine.projection
        self.execution_id = execution_id
        self.tenant_id = snapshot["tenant_id"]
        self.created_by = snapshot["created_by"]
        # Who the steps act as (checkpointed by `load`; none before they were recorded).
        self.api_key_id = snapshot.get("api_key_id", "")
        self.scopes = frozenset(snapshot.get("scopes") or ())
        self.inputs = snapshot["inputs"]
        self.graph = defn.parsed_graph(snapshot["workflow"])
        self.workflow = self.graph.workflow
        self.workflow_key = snapshot.get("workflow_slug") or self.workflow.name
        self.traceparent = snapshot.get("traceparent", "")
        self.status: dict[str, str] = {sid: "PENDING" for sid in self.graph.order}
        self.outputs: dict[str, Any] = {}
        self.not_taken: set[str] = set()
        self.finished: list[str] = []
        # Steps of this execution running at once (a wide wave or parallel step waits).
        self.slots = asyncio.Semaphore(engine.settings.workflow_max_parallel_steps)

    # -- the document expressions read --
    def document(self, args: dict | None = None) -> dict:
        steps = {sid: {"status": status, **({"output": self.outputs[sid]}
                                             if sid in self.outputs else {})}
                 for sid, status in self.status.items()}
        doc = {"inputs": self.inputs, "steps": steps}
        if args is not None:
            doc["args"] = args
        return doc

    async def resolve_inputs(self, step: pb.Step) -> dict:
        doc = self.document()
        return {name: await defn.evaluate_async(text, doc, tenant=self.tenant_id)
                for name, text in step.inputs.items()}

    async def set_state(self, step_id: str, **changes) -> None:
        def apply(state: dict, row: ExecutionRow):
            state.update(changes)
        await self.projection.step_state(self.execution_id, step_id, apply)

    # -- the walk --
    async def execute(self) -> dict:
        def begin(row: ExecutionRow):
            if row.status in ENDED:
                return False
            row.status = E + "RUNNING"
            row.started_at = row.started_at or utcnow()
            return True
        if not await self.projection.update(self.execution_id, begin):
            return {"status": "ENDED"}
        limit = self.engine.settings.workflow_max_steps
        if len(self.graph.order) > limit:  # a definition saved before the limit was lowered
            error = error_record("", limits.STEPS_EXCEEDED,
                                 f"the workflow has {len(self.graph.order)} steps; an execution "
                                 f"may run {limit} (AGENTMESH_WORKFLOW_MAX_STEPS)")
            await self.projection.update(self.execution_id,
                                         lambda row: end(row, E + "FAILED", error))
            return {"status": "FAILED", "code": limits.STEPS_EXCEEDED}
        failed: Failure = None
        top = self.graph.top
        while failed is None:
            ready = [sid for sid in top if self.status[sid] == "PENDING" and all(
                self.status[d] in ("COMPLETED", "SKIPPED") for d in self.graph.deps[sid])]
            if not ready:
                break
            wave = []
            for sid in ready:
                deps = self.graph.deps[sid]
                if sid in self.not_taken or (deps and all(self.status[d] == "SKIPPED"
                                                          for d in deps)):
                    await self.skip(sid)
                else:
                    wave.append(sid)
            failed = await self._run_wave(wave)
        if failed is not None:
            for sid in self.graph.order:
                if self.status[sid] == "PENDING":
                    await self.skip(sid, "a step before it failed")
            step_id, code, message = failed
            await self.projection.update(self.execution_id,
                                         lambda row: end(row, E + "FAILED", None))
            return {"status": "FAILED", "step": step_id, "code": code}
        outputs = await self._final_outputs()

        def complete(row: ExecutionRow):
            if row.status in ENDED:
                return
            row.outputs = outputs
            end(row, E + "COMPLETED")
        await self.projection.update(self.execution_id, complete)
        return {"status": "COMPLETED", "outputs": outputs}

    async def _final_outputs(self) -> dict:
        if self.workflow.outputs:
            doc = self.document()
            return {key: await defn.evaluate_async(text, doc, tenant=self.tenant_id)
                    for key, text in self.workflow.outputs.items()}
        last = self.outputs.get(self.finished[-1]) if self.finished else None
        return last if isinstance(last, dict) else ({} if last is None else {"value": last})

    async def skip(self, sid: str, why: str = "") -> None:
        self.status[sid] = "SKIPPED"
        await self.set_state(sid, status=S + "SKIPPED", ended_at=iso(),
                             **({"error": why} if why else {}))

    async def _run_wave(self, wave: list[str]) -> Failure:
        """Runs one wave; the first failure (step, code, message), or None."""
        steps = self.graph.steps
        concurrent = [sid for sid in wave if steps[sid].type not in (
            T.STEP_TYPE_APPROVAL, T.STEP_TYPE_PARALLEL)]
        rest = [sid for sid in wave if sid not in concurrent]
        failure = await self.concurrently(concurrent)
        for sid in rest:
            if failure is not None:
                break
            if steps[sid].type == T.STEP_TYPE_APPROVAL:
                failure = await self.approval(sid)
            else:
                failure = await self._parallel(sid)
        return failure

    async def concurrently(self, sids: list[str], fail_fast: bool = False) -> Failure:
        if not sids:
            return None
        reservations = self.reserve(len(sids))
        tasks = []
        for sid, reservation in zip(sids, reservations):
            task = asyncio.ensure_future(self._bounded(sid, reservation))
            self.engine.track(self.execution_id, task)
            tasks.append(task)
        failure = None
        if fail_fast:
            pending = set(tasks)
            while pending and failure is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    failure = failure or _failure_of(task)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()
            for sid, task in zip(sids, tasks):
                if task.cancelled():
                    self.status[sid] = "CANCELLED"
                    await self.set_state(sid, status=S + "CANCELLED", ended_at=iso())
            return failure
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results):
            if isinstance(result, BaseException):
                raise result
            failure = failure or _failure_of(task)
        return failure

    def reserve(self, count: int) -> list:
        """The DBOS steps (checkpoints) of `count` steps about to run together, reserved in
        order before anything runs: a replay meets the same step ids."""
        return [DBOS.reserve_step() for _ in range(count)]

    async def _bounded(self, sid: str, reservation) -> Failure:
        async with self.slots:
            return await self._one(sid, reservation)

    async def _one(self, sid: str, reservation) -> Failure:
        step = self.graph.steps[sid]
        try:
            args = await self.resolve_inputs(step)
        except defn.ExpressionError as exc:
            args, early = None, StepFailure("EXPRESSION_FAILED", str(exc))
        except TimeoutError as exc:  # an input's expression, killed in the sandbox
            args, early = None, StepFailure("TIMEOUT", f"step {sid!r}: an input {exc}")
        else:
            early = None
        started = time.perf_counter()
        with telemetry.background_span(f"step {sid}", self.traceparent, {
                "agentmesh.service": "workflows", "agentmesh.tenant_id": self.tenant_id,
                "agentmesh.execution_id": self.execution_id, "agentmesh.step_id": sid,
                "agentmesh.step_type": T.Name(step.type)}) as span:
            result = await reservation.run_async(
                {"name": f"step:{sid}", "preemptible": True}, self.attempts, sid, args,
                None if early is None else {"code": early.code, "message": early.message})
            if span is not None and not result["ok"]:
                span.set_attribute("error.type", result["code"])
        metrics.STEP_DURATION.labels(T.Name(step.type).removeprefix("STEP_TYPE_").lower(),
                                     "completed" if result["ok"] else "failed").observe(
            time.perf_counter() - started)
        return await self.record(sid, result)

    async def record(self, sid: str, result: dict) -> Failure:
        """Applies a step's checkpointed outcome to the run (and, idempotently, the row)."""
        step = self.graph.steps[sid]
        if result["ok"]:
            output = result["output"]
            self.status[sid] = "COMPLETED"
            self.outputs[sid] = output
            self.finished.append(sid)
            if step.type == T.STEP_TYPE_CONDITION:
                taken = "then" if output.get("result") else "else"
                other = step.condition.else_step_ids if taken == "then" \
                    else step.condition.then_step_ids
                self.not_taken.update(other)
            name = step.name or sid

            def done(row: ExecutionRow):
                states = [dict(s) for s in row.step_states]
                for state in states:
                    if state["step_id"] == sid:
                        now = iso()
                        if "attempts" in result and state["status"] != S + "COMPLETED":
                            state["attempts"] = state.get("attempts", 0) + result["attempts"]
                            state["started_at"] = state.get("started_at") or now
                        state.update(status=S + "COMPLETED", output=output, error="",
                                     open_attempt=0, ended_at=state.get("ended_at") or now)
                row.step_states = states
                if name not in row.phases_completed:
                    row.phases_completed = [*row.phases_completed, name]
                row.partial_results = {**row.partial_results, sid: output}
            await self.projection.update(self.execution_id, done)
            return None
        cancelled = result["code"] == "CANCELLED"
        self.status[sid] = "CANCELLED" if cancelled else "FAILED"
        await self.set_state(sid, status=S + ("CANCELLED" if cancelled else "FAILED"),
                             error=result["message"], ended_at=iso(), open_attempt=0)
        return sid, result["code"], result["message"]

    # -- parallel: branches in lock-step waves, max_concurrency branches at a time --
    async def _parallel(self, sid: str) -> Failure:
        step = self.graph.steps[sid]
        config = step.parallel
        await self.set_state(sid, status=S + "RUNNING", started_at=iso(), attempts=1,
                             name=step.name or sid)
        branches = list(config.branches)
        size = config.max_concurrency or len(branches)
        failure = None
        for start in range(0, len(branches), size):
            chunk = branches[start:start + size]
            depth = max(len(b.step_ids) for b in chunk)
            for position in range(depth):
                members = [b.step_ids[position] for b in chunk if position < len(b.step_ids)
                           and all(self.status[m] == "COMPLETED" for m in b.step_ids[:position])]
                wave_failure = await self.concurrently(members, fail_fast=config.fail_fast)
                failure = failure or wave_failure
                if failure and config.fail_fast:
                    break
            if failure and config.fail_fast:
                break
        for branch in branches:
            for member in branch.step_ids:
                if self.status[member] == "PENDING":
                    await self.skip(member, "its branch stopped")
        if failure:
            member, code, message = failure
            text = f"branch step {member!r} failed: {message}"
            return await self.record(sid, {"ok": False, "code": code, "message": text})
        output = {b.name: self.outputs.get(b.step_ids[-1]) if b.step_ids else None
                  for b in branches}
        return await self.record(sid, {"ok": True, "output": output})


def _failure_of(task: asyncio.Task) -> Failure:
    if task.cancelled() or task.exception() is not None:
        return None
    return task.result()
