"""Durable execution on DBOS Transact. This is the only module that imports `dbos`.

State lives in two places (docs/workflows.md):

* The service's own tables (`mesh.workflows.models`): definitions, their immutable versions,
  schedules, and each execution as the API shows it (status, progress, step states, errors,
  outputs). Every change to an execution bumps its `seq`, the event id of WatchExecution.
* DBOS's system tables, in their own SQLite file beside the service's (`workflows.dbos.db`) or
  their own PostgreSQL schema (`<service schema>_dbos`): the durable interpreter workflows, the
  checkpoint of every step's outcome, the queue (with priorities), approval messages and cron schedules.
  An execution's id is the DBOS workflow id of its interpreter (a retry runs a DBOS fork, whose
  id is `<execution id>.r<n>`).

One DBOS workflow, `interpret(execution_id)`, runs every execution: it loads the definition
snapshot (the workflow version the execution was queued with) in a checkpointed step, then walks
the step graph in waves: every step whose dependencies have ended runs, the wave's steps
concurrently, each as one DBOS step (retries, backoff and per-attempt timeouts inside it).
Step ids are reserved in the graph's order before the wave starts, so a replay after a crash
meets the same checkpoints at the same ids whatever order the steps finished in. A step's
idempotency key, `<execution id>:<step id>:<attempt>`, goes to tools (gRPC metadata
`idempotency-key`), agents and HTTP servers (header `Idempotency-Key`); a step cut off by a
crash re-runs with the same key.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx2
from dbos import DBOS, SetEnqueueOptions, SetWorkflowID, SetWorkflowTimeout
from google.protobuf import json_format, struct_pb2
from sqlmodel import Session, select

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.runtime.context import (API_KEY_HEADER, CORRELATION_HEADER, SCOPES_HEADER,
                                  TENANT_HEADER, USER_HEADER, holds)
from mesh.runtime.db import serialize
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import DomainError
from mesh.runtime import events, platform_events
from mesh.runtime.service import Runtime
from mesh.runtime.tables import utcnow
from mesh.workflows import definition as defn
from mesh.workflows import limits
from mesh.workflows.models import (ExecutionRow, ExecutorRow, ScheduleRow, WorkflowRow,
                                   WorkflowVersionRow)

log = logging.getLogger("mesh.workflows.engine")
T = pb.StepType
E = "EXECUTION_STATUS_"
S = "STEP_STATUS_"
ENDED = {E + "COMPLETED", E + "FAILED", E + "CANCELLED"}
# One DBOS queue for every root execution, partitioned by tenant: each tenant's partition may
# run AGENTMESH_WORKFLOW_TENANT_CONCURRENCY interpreters per replica, all of them together
# AGENTMESH_WORKFLOW_QUEUE_CONCURRENCY, so one tenant's backlog never holds another's back.
# Within a partition the priority is DBOS's queue priority (a lower number is dequeued first).
# One queue rather than one per priority: each queue is a poller, and at idle each poll costs
# CPU (measured: ~2.5 ms per poll on SQLite). Sub-workflow executions are not queued: they start
# at once as workflows of their own (bounded by the depth and descendant limits), so a parent
# waiting for its child never waits for a queue slot the waiting parents hold.
QUEUE = "agentmesh-workflows"
QUEUE_POLLING_SECONDS = 0.2
# A replica's heartbeat, and how long without one before another replica takes its pending
# executions over (a pod that is gone for good; one restarted under its name recovers its own).
HEARTBEAT_SECONDS = 5.0
EXECUTOR_LOST_AFTER_SECONDS = 30.0
PRIORITIES = {"EXECUTION_PRIORITY_CRITICAL": 1, "EXECUTION_PRIORITY_HIGH": 2,
              "EXECUTION_PRIORITY_NORMAL": 3, "EXECUTION_PRIORITY_LOW": 4}
APPROVAL_WAIT_SECONDS = 7 * 24 * 3600
PURE = {T.STEP_TYPE_TRANSFORM, T.STEP_TYPE_CONDITION}
# An HTTP step's wait for each read or write (the step's own timeout when that is longer).
HTTP_STEP_TIMEOUT = 30.0
# Failures a retry cannot change: a bad expression, an address the egress guard refuses.
NAMESPACE = uuid.UUID("5a4b8a52-0f0e-4b8e-9f36-6c1f0d3f7a10")
# The RPCs steps call, whose scopes (from the contract) the execution's starter must hold.
EXECUTE_TOOL = "/agentmesh.tools.v1.ToolService/ExecuteTool"
INTERACT_WITH_AGENT = "/agentmesh.agents.v1.AgentService/InteractWithAgent"
EXECUTE_WORKFLOW = "/agentmesh.workflows.v1.WorkflowService/ExecuteWorkflow"
SCOPE_NOT_HELD = "SCOPE_NOT_HELD"
# Failures a retry cannot change: a bad expression, a refused address, a scope not held.
NEVER_RETRIED = {"EXPRESSION_FAILED", "EGRESS_DENIED", SCOPE_NOT_HELD}
ENGINE: "Engine | None" = None


class StepFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _progress_payload(row: ExecutionRow) -> dict:
    """The execution's progress as WatchExecution's Server-Sent Events carry it."""
    from mesh.workflows.service import progress_message

    return json_format.MessageToDict(progress_message(row), preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def iso(moment: datetime | None = None) -> str:
    return (moment or utcnow()).astimezone(UTC).isoformat().replace("+00:00", "Z")


@functools.cache
def _scope_of(rpc: str) -> str:
    from mesh import contract

    return contract.default().rpc(rpc).scope


def _engine() -> "Engine":
    if ENGINE is None:
        raise RuntimeError("the workflows engine is not running")
    return ENGINE


# ---- the DBOS workflows (registered at import, before launch) --------------------------------

@DBOS.workflow(name="agentmesh.workflows.interpret")
async def interpret(execution_id: str) -> dict:
    return await _engine().interpret(execution_id)


@DBOS.workflow(name="agentmesh.workflows.fire_schedule")
async def fire_schedule(scheduled_at: datetime, context: Any) -> str:
    return await _engine().fire_schedule(scheduled_at, context)


def _detached(coroutine) -> asyncio.Task:
    """A task outside any DBOS context (so a workflow it starts is top level, not a child)."""
    return contextvars.Context().run(asyncio.get_running_loop().create_task, coroutine)


class Engine:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.db = runtime.database
        self.queue: Any = None
        self.ready = asyncio.Event()
        self._changed: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, set[asyncio.Task]] = {}
        self.http: httpx2.AsyncClient | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False
        self._interpreters: set[asyncio.Task] = set()
        self.executor_id = runtime.settings.replica_id or "local"
        self._watcher: asyncio.Task | None = None

    # ---- lifecycle --------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        settings = self.runtime.settings
        config: dict[str, Any] = {
            "name": "agentmesh-workflows",
            # Pinned: the interpreter is data-driven, so a new build must recover the
            # executions an older build left running (DBOS recovers only its own version).
            "application_version": "agentmesh-workflows-1",
            # Each replica its own executor, so that a replica restarting recovers only the
            # executions it was running, never one another replica is running now.
            "executor_id": self.executor_id,
            "log_level": "WARNING",
            "scheduler_polling_interval_sec": 1.0,
            "notification_listener_polling_interval_sec": 0.5,
        }
        if self.db.sqlite_path is not None:
            path = self.db.sqlite_path.with_suffix(".dbos.db")
            config["system_database_url"] = f"sqlite:///{path}"
        else:
            config["system_database_url"] = settings.database_url
            config["dbos_system_schema"] = f"{self.db.schema}_dbos"
            config["sys_db_pool_size"] = 10
        return config

    async def start(self) -> None:
        global ENGINE
        if ENGINE is not None:
            raise RuntimeError("DBOS is a process singleton: one workflows service per process")
        ENGINE = self
        self.loop = asyncio.get_running_loop()
        # HTTP steps call tenant URLs: through the egress guard, with a timeout.
        self.http = EgressPolicy.from_settings(self.runtime.settings).client(
            timeout=HTTP_STEP_TIMEOUT)
        logging.getLogger("dbos").setLevel(logging.WARNING)
        try:
            DBOS(config=self.config())
            # On the service's loop: recovered and queued interpreters run here.
            DBOS.launch()
            settings = self.runtime.settings
            self.queue = await DBOS.register_queue_async(
                QUEUE, worker_concurrency=settings.workflow_queue_concurrency,
                partition_worker_concurrency=settings.workflow_tenant_concurrency,
                polling_interval_sec=QUEUE_POLLING_SECONDS)
        except BaseException:
            ENGINE = None
            raise
        self.ready.set()  # recovered interpreters may enqueue (sub-workflows) from now on
        await self.heartbeat()
        await self.reconcile()
        self._watcher = asyncio.create_task(self.watch_executors())

    async def stop(self) -> None:
        global ENGINE
        self.stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        # The heartbeat row stays: if this replica does not come back under its name, another
        # one recovers what it leaves pending once the heartbeat is old.
        # Interpreters in flight stop here; DBOS recovers them (PENDING) on the next start.
        running = [*self._interpreters, *(t for tasks in self._tasks.values() for t in tasks)]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await asyncio.to_thread(DBOS.destroy, workflow_completion_timeout_sec=0)
        if self.http is not None:
            await self.http.aclose()
        ENGINE = None

    # ---- replicas ---------------------------------------------------------------------------
    async def heartbeat(self) -> None:
        executor_id, now = self.executor_id, utcnow()

        def beat(session: Session) -> None:
            row = session.get(ExecutorRow, executor_id)
            if row is None:
                session.add(ExecutorRow(executor_id=executor_id, started_at=now, heartbeat_at=now))
            else:
                row.heartbeat_at = now
                session.add(row)
        await self.db.write(beat)

    async def recover_lost_executors(self) -> list[str]:
        """Executors without a heartbeat for EXECUTOR_LOST_AFTER_SECONDS are gone: their pending
        interpreters go back on the queue (DBOS recovery, which only matches rows still owned by
        the lost executor, so an execution is never taken from a live one), and any replica
        runs them from their checkpoints. One replica does it at a time."""
        cutoff = utcnow() - timedelta(seconds=EXECUTOR_LOST_AFTER_SECONDS)
        me = self.executor_id

        def claim(session: Session) -> list[str]:
            serialize(session, "workflows-executor-recovery")
            lost = session.exec(select(ExecutorRow).where(ExecutorRow.heartbeat_at < cutoff,
                                                          ExecutorRow.executor_id != me)).all()
            for row in lost:
                session.delete(row)
            return [row.executor_id for row in lost]
        lost = await self.db.write(claim)
        if lost:
            log.warning("recovering the pending executions of lost replica(s) %s", ", ".join(lost))
            await asyncio.to_thread(DBOS._recover_pending_workflows, lost)
        return lost

    async def watch_executors(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.heartbeat()
                await self.recover_lost_executors()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away for a moment: try again next beat
                log.warning("executor heartbeat failed", exc_info=True)

    async def reconcile(self) -> None:
        """No stuck runs: an execution the API shows as not ended has a DBOS workflow that is
        running, queued or recovered; one whose interpreter never got enqueued (a crash between
        the insert and the enqueue) is enqueued now; one whose interpreter ended without
        updating the row is brought in line."""
        rows = await self.db.read(lambda s: [
            (r.id, r.dbos_workflow_id, r.priority, r.tenant_id, r.parent_execution_id)
            for r in s.exec(select(ExecutionRow).where(
                ExecutionRow.status.not_in(list(ENDED)))).all()])
        for execution_id, workflow_id, priority, tenant_id, parent in rows:
            current = await DBOS.get_workflow_status_async(workflow_id or execution_id)
            if current is None:
                if parent:
                    await self.launch(execution_id, None)
                else:
                    await self.enqueue(execution_id, tenant_id, priority, None)
            elif current.status == "ENQUEUED" and current.queue_name == QUEUE and \
                    current.queue_partition_key is None:
                # Queued by a build whose queue had no partitions: no partition would ever
                # dequeue it, so it goes back on the queue in its tenant's.
                await self._requeue_in_partition(execution_id)
            elif current.status in ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
                await self._finish_from_dbos(execution_id, current.status, str(current.error or ""))
        # A cancel or terminate cut off by a crash after the row was written and before DBOS
        # heard of it: the row says ended, so DBOS must stop the interpreter too.
        since = utcnow() - timedelta(days=1)
        stopped = await self.db.read(lambda s: [r.dbos_workflow_id or r.id for r in s.exec(
            select(ExecutionRow).where(ExecutionRow.status.in_([E + "CANCELLED", E + "FAILED"]),
                                       ExecutionRow.updated_at >= since)).all()])
        for workflow_id in stopped:
            current = await DBOS.get_workflow_status_async(workflow_id)
            if current is not None and current.status in ("PENDING", "ENQUEUED"):
                await DBOS.cancel_workflow_async(workflow_id)

    async def _finish_from_dbos(self, execution_id: str, status: str, error: str) -> None:
        def apply(row: ExecutionRow) -> None:
            if row.status in ENDED:
                return
            if status == "SUCCESS":
                row.status = E + "COMPLETED"
            elif status == "CANCELLED":
                row.status = E + "CANCELLED"
            else:
                row.status = E + "FAILED"
                row.errors = [*row.errors, _error("", "INTERNAL", error or status)]
            row.ended_at = utcnow()
        await self.update(execution_id, apply)

    async def _requeue_in_partition(self, execution_id: str) -> None:
        def apply(row: ExecutionRow):
            old = row.dbos_workflow_id or row.id
            row.runs += 1
            row.dbos_workflow_id = f"{row.id}.r{row.runs}"
            return old, row.dbos_workflow_id, row.tenant_id
        old, new, tenant_id = await self.update(execution_id, apply)
        await DBOS.cancel_workflow_async(old)
        with SetWorkflowID(new):
            await DBOS.fork_workflow_async(old, 1, queue_name=QUEUE,
                                           queue_partition_key=tenant_id)

    # ---- starting ---------------------------------------------------------------------------
    async def enqueue(self, execution_id: str, tenant_id: str, priority: str,
                      timeout: float | None, workflow_id: str | None = None) -> None:
        """A root execution's interpreter on the queue, in its tenant's partition."""
        await self.ready.wait()
        with SetWorkflowID(workflow_id or execution_id), SetWorkflowTimeout(timeout), \
                SetEnqueueOptions(priority=PRIORITIES.get(priority, 3),
                                  queue_partition_key=tenant_id):
            await self.queue.enqueue_async(interpret, execution_id)

    async def launch(self, execution_id: str, timeout: float | None) -> None:
        """A sub-workflow execution's interpreter, started at once in this process instead of
        queued: its parent holds a queue slot while it waits, so a child that needed one too
        could wait for ever once waiting parents filled the queue. It is a top-level DBOS
        workflow (started outside the parent's context), recovered like any other."""
        await self.ready.wait()

        async def start() -> None:
            with SetWorkflowID(execution_id), SetWorkflowTimeout(timeout):
                await DBOS.start_workflow_async(interpret, execution_id)
        await _detached(start())

    # ---- the projection ---------------------------------------------------------------------
    async def update(self, execution_id: str, fn: Callable[[ExecutionRow], Any]) -> Any:
        """Read-modify-write of one execution row; bumps `seq` and wakes its watchers."""
        def apply(session: Session):
            row = session.exec(select(ExecutionRow).where(ExecutionRow.id == execution_id)
                               .with_for_update()).first()
            if row is None:
                return None
            was_ended = row.status in ENDED
            result = fn(row)
            row.seq += 1
            row.updated_at = utcnow()
            _touch(row)
            session.add(row)
            changed.append((row.tenant_id, _progress_payload(row),
                            row.status in ENDED and not was_ended))
            return result
        changed: list[tuple[str, dict, bool]] = []
        result = await self.db.write(apply)
        self.notify(execution_id)
        for tenant_id, payload, ended in changed[-1:]:
            # The live service's sockets (/ws/{session_id}, /ws/executions) see every change.
            await events.publish(self.runtime.settings, tenant_id, "execution", execution_id,
                                 "execution.progress", payload)
            if ended:  # once, in the transaction that ended it: the tenant's webhooks
                platform_events.emit(self.runtime.peers, tenant_id, "execution.finished", payload)
        return result

    def notify(self, execution_id: str) -> None:
        event = self._changed.pop(execution_id, None)
        if event is not None:
            event.set()

    def changed(self, execution_id: str) -> asyncio.Event:
        event = self._changed.get(execution_id)
        if event is None:
            event = self._changed[execution_id] = asyncio.Event()
        return event

    async def step_state(self, execution_id: str, step_id: str,
                         fn: Callable[[dict, ExecutionRow], Any]) -> Any:
        def apply(row: ExecutionRow):
            states = [dict(s) for s in row.step_states]
            for state in states:
                if state["step_id"] == step_id:
                    result = fn(state, row)
                    break
            else:
                return None
            row.step_states = states
            return result
        return await self.update(execution_id, apply)

    # ---- the interpreter --------------------------------------------------------------------
    async def _load(self, execution_id: str) -> dict:
        def read(session: Session) -> dict:
            row = session.get(ExecutionRow, execution_id)
            version = session.exec(select(WorkflowVersionRow).where(
                WorkflowVersionRow.workflow_id == row.workflow_id,
                WorkflowVersionRow.version == row.workflow_version)).first()
            return {"tenant_id": row.tenant_id, "workflow": version.workflow,
                    "inputs": row.inputs, "created_by": row.created_by,
                    "api_key_id": row.api_key_id, "scopes": list(row.scopes),
                    "workflow_id": row.workflow_id}
        return await self.db.read(read)

    async def interpret(self, execution_id: str) -> dict:
        task = asyncio.current_task()
        self._interpreters.add(task)
        try:
            return await self._interpret(execution_id)
        finally:
            self._interpreters.discard(task)

    async def _interpret(self, execution_id: str) -> dict:
        snapshot = await DBOS.run_step_async({"name": "load"}, self._load, execution_id)
        run = Run(self, execution_id, snapshot)
        try:
            return await run.execute()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self.stopping:
                # The process is shutting down under the interpreter: DBOS recovers it on
                # the next start; the row must not say it failed.
                raise
            if type(exc).__module__.startswith("dbos"):
                # Cancelled by a user (the row already says so) or past the workflow's
                # timeout (DBOS cancels it): the latter is a failure with code TIMEOUT.
                if "Cancel" in type(exc).__name__:
                    error = _error("", "TIMEOUT",
                                   "the execution ran longer than the workflow's timeout")
                else:
                    error = _error("", "INTERNAL", f"{type(exc).__name__}: {exc}")
                await self.update(execution_id, lambda row: _end(row, E + "FAILED", error))
                raise
            log.exception("interpreter of %s failed", execution_id)
            error = _error("", "INTERNAL", f"{type(exc).__name__}: {exc}")
            await self.update(execution_id, lambda row: _end(row, E + "FAILED", error))
            return {"status": "FAILED"}

    # ---- control ----------------------------------------------------------------------------
    def track(self, execution_id: str, task: asyncio.Task) -> None:
        self._tasks.setdefault(execution_id, set()).add(task)
        task.add_done_callback(lambda t: self._tasks.get(execution_id, set()).discard(t))

    async def stop_execution(self, execution_id: str, status: str, code: str,
                             message: str) -> None:
        """Cancel or terminate: the row first (so the interpreter cannot overwrite it), then
        the DBOS workflow (preemptible steps stop, nothing new starts), then steps in progress
        in this process, then child executions."""
        def apply(row: ExecutionRow):
            if row.status in ENDED:
                return None
            now = iso()
            states = []
            for state in row.step_states:
                state = dict(state)
                if state["status"] in (S + "RUNNING", S + "WAITING_APPROVAL"):
                    state["status"] = S + "CANCELLED"
                    state["ended_at"] = now
                states.append(state)
            row.step_states = states
            _end(row, status, _error("", code, message))
            return row.dbos_workflow_id or row.id, [s.get("child_execution_id") for s in states
                                                    if s.get("child_execution_id")]
        found = await self.update(execution_id, apply)
        if found is None:
            return
        workflow_id, children = found
        await DBOS.cancel_workflow_async(workflow_id)
        for task in list(self._tasks.get(execution_id, ())):
            task.cancel()
        for child in children:
            await self.stop_execution(child, status, code, f"parent {execution_id}: {message}")

    async def retry(self, execution_id: str, scopes: list[str] | None = None) -> None:
        """Runs a FAILED execution again from its failed steps; `scopes`, when given, replace
        the ones its steps act within (a retry by someone else narrows them)."""
        def apply(row: ExecutionRow):
            failed = {s["step_id"] for s in row.step_states
                      if s["status"] in (S + "FAILED", S + "CANCELLED")}
            old = row.dbos_workflow_id or row.id
            if scopes is not None:
                row.scopes = scopes
            row.runs += 1
            row.dbos_workflow_id = f"{row.id}.r{row.runs}"
            row.status = E + "QUEUED"
            row.ended_at = None
            row.current_phase = ""
            states = []
            for state in row.step_states:
                state = dict(state)
                if state["status"] != S + "COMPLETED":
                    state.update(status=S + "PENDING", run_attempts=0, open_attempt=0,
                                 ended_at=None, error="")
                states.append(state)
            row.step_states = states
            return old, row.dbos_workflow_id, failed, row.tenant_id, row.parent_execution_id
        old, new, failed, tenant_id, parent = await self.update(execution_id, apply)
        steps = await DBOS.list_workflow_steps_async(old)
        # From the earliest checkpoint of a step that did not complete: everything before it
        # is copied (not run again), that step and what follows run again.
        names = {f"step:{sid}" for sid in failed}
        start = min((s["function_id"] for s in steps if s["function_name"] in names),
                    default=None)
        if start is None:  # failed before any step ran: from the first step after `load`
            start = 1
        await self.ready.wait()
        # A root waits for its tenant's share of the queue again; a child runs at once, as it
        # did the first time (DBOS's internal queue, which has no concurrency limit).
        where = {"queue_name": None} if parent else {"queue_name": QUEUE,
                                                      "queue_partition_key": tenant_id}
        with SetWorkflowID(new):
            await DBOS.fork_workflow_async(old, start, **where)

    async def send_decision(self, execution_id: str, step_id: str, decision: dict) -> None:
        row = await self.db.read(lambda s: s.get(ExecutionRow, execution_id))
        await DBOS.send_async(row.dbos_workflow_id or row.id, decision, f"approval:{step_id}")

    # ---- schedules --------------------------------------------------------------------------
    async def add_schedule(self, schedule: ScheduleRow) -> None:
        await DBOS.create_schedule_async(
            schedule_name=schedule.id, workflow_fn=fire_schedule, schedule=schedule.cron,
            context={"schedule_id": schedule.id, "tenant_id": schedule.tenant_id},
            cron_timezone=schedule.timezone or None)

    async def remove_schedule(self, schedule_id: str) -> None:
        await DBOS.delete_schedule_async(schedule_id)

    async def fire_schedule(self, scheduled_at: datetime, context: Any) -> str:
        schedule_id = context["schedule_id"]
        execution_id = str(uuid.uuid5(NAMESPACE, f"{schedule_id}@{scheduled_at.isoformat()}"))
        made = await DBOS.run_step_async(
            {"name": "create_execution"}, self._scheduled_execution, schedule_id, execution_id,
            scheduled_at)
        if made:
            await self.enqueue(execution_id, made["tenant_id"], made["priority"], made["timeout"])
        return execution_id

    async def _scheduled_execution(self, schedule_id: str, execution_id: str,
                                   scheduled_at: datetime) -> dict | None:
        from mesh.workflows.service import executions, new_execution

        def make(session: Session):
            schedule = session.get(ScheduleRow, schedule_id)
            if schedule is None:
                return None
            if session.get(ExecutionRow, execution_id) is not None:
                workflow = session.get(WorkflowRow, schedule.workflow_id)
                return {"priority": schedule.priority, "tenant_id": schedule.tenant_id,
                        "timeout": _timeout(workflow.definition) if workflow else None}
            workflow = session.get(WorkflowRow, schedule.workflow_id)
            if workflow is None or workflow.status != "WORKFLOW_STATUS_ACTIVE":
                return None
            skipped = limits.schedule_may_fire(session, schedule, scheduled_at, settings)
            if skipped:
                log.info("schedule %s skipped its fire at %s: %s", schedule.id,
                         scheduled_at.isoformat(), skipped)
                return None
            # As the schedule's creator, within the scopes recorded when it was made.
            row = new_execution(workflow, schedule.inputs, schedule.priority,
                                schedule.created_by, execution_id=execution_id,
                                api_key_id=schedule.api_key_id, scopes=schedule.scopes)
            row.schedule_id = schedule.id
            executions.add(session, row)
            schedule.fired += 1
            schedule.last_fired_at = scheduled_at
            schedule.updated_at = utcnow()
            session.add(schedule)
            return {"priority": schedule.priority, "tenant_id": schedule.tenant_id,
                    "timeout": _timeout(workflow.definition)}
        settings = self.runtime.settings
        return await self.db.write(make)

    # ---- sub-workflows ----------------------------------------------------------------------
    async def start_child(self, parent: "Run", step_id: str, workflow_key: str,
                          inputs: dict) -> str:
        """The child execution of a sub-workflow step: made once (its id derives from the
        parent and the step), started once (at once, not queued: see `launch`), retried when
        the parent is retried. Refused, failing the step, past the depth limit, the tree's
        limit of descendants or the tenant's execution quota."""
        from mesh.workflows.service import executions, find_workflow, new_execution

        settings = self.runtime.settings
        child_id = str(uuid.uuid5(NAMESPACE, f"{parent.execution_id}/{step_id}"))

        def make(session: Session) -> dict:
            existing = session.get(ExecutionRow, child_id)
            if existing is not None:
                workflow = session.get(WorkflowRow, existing.workflow_id)
                return {"priority": existing.priority, "status": existing.status,
                        "timeout": _timeout(workflow.definition) if workflow else None}
            workflow = find_workflow(session, parent.tenant_id, workflow_key)
            if workflow is None:
                raise StepFailure("SUB_WORKFLOW_NOT_FOUND",
                                  f"workflow {workflow_key!r} not found")
            if workflow.status != "WORKFLOW_STATUS_ACTIVE":
                raise StepFailure("SUB_WORKFLOW_INACTIVE",
                                  f"workflow {workflow.slug!r} is not active")
            try:
                root, depth = limits.check_child(
                    session, session.get(ExecutionRow, parent.execution_id), settings)
            except limits.LimitReached as exc:
                raise StepFailure(exc.code, exc.message) from None
            row = new_execution(workflow, inputs, "EXECUTION_PRIORITY_HIGH", parent.created_by,
                                execution_id=child_id, api_key_id=parent.api_key_id,
                                scopes=sorted(parent.scopes))  # as the parent's starter
            row.parent_execution_id = parent.execution_id
            row.root_execution_id, row.depth = root, depth
            executions.add(session, row)
            return {"priority": row.priority, "status": row.status,
                    "timeout": _timeout(workflow.definition)}
        child = await self.db.write(make)
        await parent.set_state(step_id, child_execution_id=child_id)
        if child["status"] == E + "FAILED":  # the parent is retried: so is its failed child
            await _detached(self.retry(child_id))
        elif await DBOS.get_workflow_status_async(child_id) is None:
            await self.launch(child_id, child["timeout"])
        return child_id

    async def wait_child(self, child_id: str) -> dict:
        while True:
            row = await self.db.read(lambda s: s.get(ExecutionRow, child_id))
            if row.status == E + "COMPLETED":
                return dict(row.outputs)
            if row.status in (E + "FAILED", E + "CANCELLED"):
                # A limit the child (or its own child) reached is the parent's reason too.
                limit = [e for e in row.errors if e.get("code") in limits.PROPAGATED]
                last = (limit or row.errors or [{}])[-1]
                raise StepFailure(last["code"] if limit else "SUB_WORKFLOW_FAILED",
                                  f"child execution {child_id} ended {row.status}: "
                                  f"{last.get('message') or row.status}")
            event = self.changed(child_id)
            try:
                await asyncio.wait_for(event.wait(), 1.0)
            except TimeoutError:
                pass


def _timeout(definition: dict) -> float | None:
    text = definition.get("timeout")
    if not text:
        return None
    return float(text.rstrip("s"))


def _error(step_id: str, code: str, message: str) -> dict:
    return {"step_id": step_id, "code": code, "message": message[:2000], "occurred_at": iso()}


def _end(row: ExecutionRow, status: str, error: dict | None = None) -> None:
    if row.status in ENDED:
        return
    row.status = status
    row.ended_at = utcnow()
    row.current_phase = ""
    if error is not None:
        row.errors = [*row.errors, error]


def _touch(row: ExecutionRow) -> None:
    """Derived fields: progress, current phase."""
    states = row.step_states
    if states:
        done = sum(1 for s in states if s["status"] in (S + "COMPLETED", S + "SKIPPED"))
        row.progress = round(100.0 * done / len(states), 1)
    if row.status == E + "COMPLETED":
        row.progress = 100.0
    running = [s for s in states if s["status"] in (S + "RUNNING", S + "WAITING_APPROVAL")]
    if row.status not in ENDED:
        row.current_phase = running[-1].get("name", running[-1]["step_id"]) if running else ""


class Run:
    """One interpretation of an execution's definition snapshot (replayed after a crash)."""

    def __init__(self, engine: Engine, execution_id: str, snapshot: dict) -> None:
        self.engine = engine
        self.execution_id = execution_id
        self.tenant_id = snapshot["tenant_id"]
        self.created_by = snapshot["created_by"]
        # Who the steps act as (checkpointed by `load`; none before they were recorded).
        self.api_key_id = snapshot.get("api_key_id", "")
        self.scopes = frozenset(snapshot.get("scopes") or ())
        self.inputs = snapshot["inputs"]
        self.workflow = defn.workflow_from_json(snapshot["workflow"])
        self.graph = defn.build_graph(self.workflow)
        self.status: dict[str, str] = {sid: "PENDING" for sid in self.graph.order}
        self.outputs: dict[str, Any] = {}
        self.not_taken: set[str] = set()
        self.finished: list[str] = []
        # Steps of this execution running at once (a wide wave or parallel step waits).
        self.slots = asyncio.Semaphore(engine.runtime.settings.workflow_max_parallel_steps)

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
        await self.engine.step_state(self.execution_id, step_id, apply)

    # -- the walk --
    async def execute(self) -> dict:
        def begin(row: ExecutionRow):
            if row.status in ENDED:
                return False
            row.status = E + "RUNNING"
            row.started_at = row.started_at or utcnow()
            return True
        if not await self.engine.update(self.execution_id, begin):
            return {"status": "ENDED"}
        limit = self.engine.runtime.settings.workflow_max_steps
        if len(self.graph.order) > limit:  # a definition saved before the limit was lowered
            error = _error("", limits.STEPS_EXCEEDED, f"the workflow has {len(self.graph.order)} "
                           f"steps; an execution may run {limit} (AGENTMESH_WORKFLOW_MAX_STEPS)")
            await self.engine.update(self.execution_id, lambda row: _end(row, E + "FAILED", error))
            return {"status": "FAILED", "code": limits.STEPS_EXCEEDED}
        failed: tuple[str, str, str] | None = None
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
                    await self._skip(sid)
                else:
                    wave.append(sid)
            failed = await self._run_wave(wave)
        if failed is not None:
            for sid in self.graph.order:
                if self.status[sid] == "PENDING":
                    await self._skip(sid, "a step before it failed")
            step_id, code, message = failed
            await self.engine.update(self.execution_id, lambda row: _end(
                row, E + "FAILED", None))
            return {"status": "FAILED", "step": step_id, "code": code}
        outputs = await self._final_outputs()

        def complete(row: ExecutionRow):
            if row.status in ENDED:
                return
            row.outputs = outputs
            _end(row, E + "COMPLETED")
        await self.engine.update(self.execution_id, complete)
        return {"status": "COMPLETED", "outputs": outputs}

    async def _final_outputs(self) -> dict:
        if self.workflow.outputs:
            doc = self.document()
            return {key: await defn.evaluate_async(text, doc, tenant=self.tenant_id)
                    for key, text in self.workflow.outputs.items()}
        last = self.outputs.get(self.finished[-1]) if self.finished else None
        return last if isinstance(last, dict) else ({} if last is None else {"value": last})

    async def _skip(self, sid: str, why: str = "") -> None:
        self.status[sid] = "SKIPPED"
        await self.set_state(sid, status=S + "SKIPPED", ended_at=iso(),
                             **({"error": why} if why else {}))

    async def _run_wave(self, wave: list[str]) -> tuple[str, str, str] | None:
        """Runs one wave; the first failure (step, code, message), or None."""
        steps = self.graph.steps
        concurrent = [sid for sid in wave if steps[sid].type not in (
            T.STEP_TYPE_APPROVAL, T.STEP_TYPE_PARALLEL)]
        rest = [sid for sid in wave if sid not in concurrent]
        failure = await self._concurrently(concurrent)
        for sid in rest:
            if failure is not None:
                break
            if steps[sid].type == T.STEP_TYPE_APPROVAL:
                failure = await self._approval(sid)
            else:
                failure = await self._parallel(sid)
        return failure

    async def _concurrently(self, sids: list[str], fail_fast: bool = False
                            ) -> tuple[str, str, str] | None:
        if not sids:
            return None
        # Reserved in order before anything runs: replay meets the same step ids.
        reservations = [DBOS.reserve_step() for _ in sids]
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

    async def _bounded(self, sid: str, reservation) -> tuple[str, str, str] | None:
        async with self.slots:
            return await self._one(sid, reservation)

    async def _one(self, sid: str, reservation) -> tuple[str, str, str] | None:
        step = self.graph.steps[sid]
        try:
            args = await self.resolve_inputs(step)
        except defn.ExpressionError as exc:
            args, early = None, StepFailure("EXPRESSION_FAILED", str(exc))
        except TimeoutError as exc:  # an input's expression, killed in the sandbox
            args, early = None, StepFailure("TIMEOUT", f"step {sid!r}: an input {exc}")
        else:
            early = None
        result = await reservation.run_async(
            {"name": f"step:{sid}", "preemptible": True}, self._attempts, sid, args,
            None if early is None else {"code": early.code, "message": early.message})
        return await self._record(sid, result)

    async def _record(self, sid: str, result: dict) -> tuple[str, str, str] | None:
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
            await self.engine.update(self.execution_id, done)
            return None
        cancelled = result["code"] == "CANCELLED"
        self.status[sid] = "CANCELLED" if cancelled else "FAILED"
        await self.set_state(sid, status=S + ("CANCELLED" if cancelled else "FAILED"),
                             error=result["message"], ended_at=iso(), open_attempt=0)
        return sid, result["code"], result["message"]

    # -- one step: attempts, backoff and timeouts inside one DBOS step --
    async def _attempts(self, sid: str, args: dict | None, early: dict | None) -> dict:
        step = self.graph.steps[sid]
        engine = self.engine
        policy = step.retry_policy
        max_attempts = max(1, policy.max_attempts)
        backoff = defn.duration_seconds(policy, "initial_backoff") or 1.0
        multiplier = policy.backoff_multiplier or 2.0
        max_backoff = defn.duration_seconds(policy, "max_backoff") or 60.0
        timeout = defn.duration_seconds(step, "timeout")
        if step.type in PURE and early is None:
            # No effect outside the run: no attempt to mark before it, one write after it.
            try:
                work = self._perform(step, args, "")
                return {"ok": True, "output": await (asyncio.wait_for(work, timeout)
                                                     if timeout else work),
                        "attempts": 1}
            except defn.ExpressionError as exc:
                failure = StepFailure("EXPRESSION_FAILED", str(exc))
            except TimeoutError as exc:
                failure = StepFailure("TIMEOUT", f"step {sid!r} took longer than {timeout:g}s"
                                      if timeout else f"step {sid!r}: {exc}")

            def failed_pure(state: dict, row: ExecutionRow):
                state["attempts"] = state.get("attempts", 0) + 1
                row.errors = [*row.errors, _error(sid, failure.code, failure.message)]
            await engine.step_state(self.execution_id, sid, failed_pure)
            return {"ok": False, "code": failure.code, "message": failure.message}
        while True:
            def begin(state: dict, row: ExecutionRow):
                if state["status"] == S + "COMPLETED" and "output" in state:
                    return {"done": state["output"]}  # completed in an earlier run
                if row.status in ENDED:
                    return {"ended": row.status}
                if state.get("open_attempt"):  # cut off by a crash: the same attempt again
                    attempt = state["open_attempt"]
                else:
                    attempt = state.get("attempts", 0) + 1
                    state["attempts"] = attempt
                    state["run_attempts"] = state.get("run_attempts", 0) + 1
                    state["open_attempt"] = attempt
                state["status"] = S + "RUNNING"
                state["name"] = step.name or sid
                state["started_at"] = state.get("started_at") or iso()
                if row.status == E + "QUEUED":
                    row.status = E + "RUNNING"
                return {"attempt": attempt, "run_attempts": state["run_attempts"]}
            began = await engine.step_state(self.execution_id, sid, begin)
            if began is None or "ended" in began:
                return {"ok": False, "code": "CANCELLED",
                        "message": f"the execution ended before step {sid!r} ran"}
            if "done" in began:
                return {"ok": True, "output": began["done"]}
            attempt = began["attempt"]
            key = f"{self.execution_id}:{sid}:{attempt}"
            try:
                if early is not None:
                    raise StepFailure(early["code"], early["message"])
                work = self._perform(step, args, key)
                output = await (asyncio.wait_for(work, timeout) if timeout else work)
                return {"ok": True, "output": output}
            except TimeoutError as exc:
                failure = StepFailure("TIMEOUT", f"attempt {attempt} of step {sid!r} took "
                                                 f"longer than {timeout:g}s" if timeout else
                                      f"attempt {attempt} of step {sid!r}: {exc}")
            except StepFailure as exc:
                failure = exc
            except defn.ExpressionError as exc:
                failure = StepFailure("EXPRESSION_FAILED", str(exc))
            retryable = not policy.retryable_errors or failure.code in policy.retryable_errors
            last = began["run_attempts"] >= max_attempts or not retryable \
                or failure.code in NEVER_RETRIED or failure.code in limits.PERMANENT

            def failed(state: dict, row: ExecutionRow):
                state["open_attempt"] = 0
                state["error"] = failure.message
                row.errors = [*row.errors, _error(sid, failure.code, failure.message)]
            await engine.step_state(self.execution_id, sid, failed)
            if last:
                return {"ok": False, "code": failure.code, "message": failure.message}
            wait = min(max_backoff, backoff * multiplier ** (began["run_attempts"] - 1))
            await asyncio.sleep(wait)

    async def _perform(self, step: pb.Step, args: dict, key: str) -> Any:
        kind = step.type
        # Off the event loop unless bounded (mesh.workflows.expressions), under the step's
        # timeout: the sandbox's worker is killed when it passes.
        timeout = defn.duration_seconds(step, "timeout")
        if kind == T.STEP_TYPE_TRANSFORM:
            return await defn.evaluate_async(step.transform.expression, self.document(args),
                                             timeout=timeout, tenant=self.tenant_id)
        if kind == T.STEP_TYPE_CONDITION:
            value = await defn.evaluate_async(step.condition.expression, self.document(args),
                                              timeout=timeout, tenant=self.tenant_id)
            return {"result": bool(value)}
        if kind == T.STEP_TYPE_HTTP:
            return await self._http(step, args, key)
        if kind == T.STEP_TYPE_TOOL:
            return await self._tool(step, args, key)
        if kind == T.STEP_TYPE_AGENT:
            return await self._agent(step, args, key)
        if kind == T.STEP_TYPE_SUB_WORKFLOW:
            self._require(EXECUTE_WORKFLOW)
            inputs = {**json_format.MessageToDict(step.sub_workflow.inputs), **args}
            child = await self.engine.start_child(self, step.id, step.sub_workflow.workflow_id,
                                                  inputs)
            return await self.engine.wait_child(child)
        raise StepFailure("UNSUPPORTED_STEP", f"step type {T.Name(kind)} cannot run here")

    def _metadata(self, key: str) -> list[tuple[str, str]]:
        """The identity tool and agent calls carry: the starter (an API key as that key), with
        the scopes in force when the execution started."""
        metadata = [(TENANT_HEADER, self.tenant_id), (USER_HEADER, self.created_by),
                    (SCOPES_HEADER, " ".join(sorted(self.scopes))),
                    (CORRELATION_HEADER, self.execution_id), ("idempotency-key", key)]
        if self.api_key_id:
            metadata.append((API_KEY_HEADER, self.api_key_id))
        return metadata

    def _require(self, rpc: str) -> None:
        """A step may do only what its starter may: the scope the contract gives the RPC the
        step calls (the gateway's check, which a background step does not pass through)."""
        needed = _scope_of(rpc)
        if needed and not holds(self.scopes, needed):
            raise StepFailure(SCOPE_NOT_HELD, f"the execution acts as its starter, whose scopes "
                              f"({' '.join(sorted(self.scopes)) or 'none'}) do not include "
                              f"{needed}")

    async def _http(self, step: pb.Step, args: dict, key: str) -> Any:
        config = step.http
        method = (config.method or "POST").upper()
        url = await defn.render_text_async(config.url, args, tenant=self.tenant_id)
        body = {**json_format.MessageToDict(config.body), **args}
        headers = {**dict(config.headers), "Idempotency-Key": key}
        # A step timeout bounds the attempt (TIMEOUT); a longer one lets each read wait longer.
        timeout = max(defn.duration_seconds(step, "timeout") or 0.0, HTTP_STEP_TIMEOUT)
        try:
            reply = await self.engine.http.request(
                method, url, headers=headers, json=body if method not in ("GET", "DELETE") else None,
                timeout=timeout)
        except httpx2.HTTPError as exc:
            raise StepFailure("HTTP_UNREACHABLE", f"{method} {url}: {exc}") from None
        except DomainError as exc:  # EGRESS_DENIED (nothing was sent), RESPONSE_TOO_LARGE
            raise StepFailure(exc.reason, exc.message) from None
        if reply.status_code >= 500:
            raise StepFailure("HTTP_5XX", f"{method} {url} answered {reply.status_code}")
        if reply.status_code >= 400:
            raise StepFailure("HTTP_4XX", f"{method} {url} answered {reply.status_code}: "
                                          f"{reply.text[:200]}")
        try:
            return reply.json()
        except ValueError:
            return {"text": reply.text, "status": reply.status_code}

    async def _tool(self, step: pb.Step, args: dict, key: str) -> Any:
        from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc

        self._require(EXECUTE_TOOL)
        arguments = struct_pb2.Struct()
        arguments.update({**json_format.MessageToDict(step.tool.arguments), **args})
        stub = self.engine.runtime.peers.stub(tools_pb2_grpc.ToolServiceStub)
        reply = await self._once("TOOL", lambda: stub.ExecuteTool(tools_pb2.ExecuteToolRequest(
            tool_id=step.tool.tool_id, arguments=arguments), metadata=self._metadata(key)))
        if reply.error or reply.status in (tools_pb2.ToolExecutionStatus.Value(n) for n in
                                           tools_pb2.ToolExecutionStatus.keys()
                                           if "FAIL" in n or "TIMED" in n):
            raise StepFailure("TOOL_FAILED", reply.error or "the tool failed")
        return json_format.MessageToDict(reply.output)

    async def _agent(self, step: pb.Step, args: dict, key: str) -> Any:
        from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc

        self._require(INTERACT_WITH_AGENT)
        context = struct_pb2.Struct()
        context.update({**args, "idempotency_key": key, "execution_id": self.execution_id})
        stub = self.engine.runtime.peers.stub(agents_pb2_grpc.AgentServiceStub)
        message = await defn.render_text_async(step.agent.prompt, args, tenant=self.tenant_id)
        reply = await self._once("AGENT", lambda: stub.InteractWithAgent(
            agents_pb2.InteractWithAgentRequest(
                agent_id=step.agent.agent_id, message=message, context=context),
            metadata=self._metadata(key)))
        return {"reply": reply.reply, "call_id": reply.call_id, "tokens": reply.tokens}

    async def _once(self, kind: str, call: Callable[[], Any]) -> Any:
        """A tool or agent call made once in effect: it carries the step attempt's key, which
        the peer honours (mesh.runtime.idempotency). Replayed after a crash, the call gets the
        recorded answer; while the interrupted first call still holds the key (its lease runs
        out CLAIM_LEASE_SECONDS after its process died) this waits, then runs it."""
        from mesh.runtime.errors import reason_of
        from mesh.runtime.idempotency import CLAIM_LEASE_SECONDS, IN_PROGRESS

        deadline = time.monotonic() + CLAIM_LEASE_SECONDS + 15
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                if (exc.code() == grpc.StatusCode.ABORTED and reason_of(exc) == IN_PROGRESS
                        and time.monotonic() < deadline):
                    await asyncio.sleep(1.0)
                    continue
                raise _rpc_failure(kind, exc) from None
            except Exception as exc:  # noqa: BLE001 - peers not configured
                raise StepFailure(f"{kind}_UNAVAILABLE", str(exc)) from None

    # -- approval: the execution waits on a DBOS message --
    async def _approval(self, sid: str) -> tuple[str, str, str] | None:
        step = self.graph.steps[sid]
        needed = max(1, step.approval.min_approvals)
        timeout = defn.duration_seconds(step, "timeout") or APPROVAL_WAIT_SECONDS
        try:
            args = await self.resolve_inputs(step)
            message = await defn.render_text_async(step.approval.message, args,
                                                   tenant=self.tenant_id)
        except (defn.ExpressionError, TimeoutError) as exc:
            problem = _error(sid, "EXPRESSION_FAILED", str(exc))
            await self.engine.step_state(self.execution_id, sid, lambda state, row: setattr(
                row, "errors", [*row.errors, problem]))
            return await self._record(sid, {"ok": False, "code": problem["code"],
                                            "message": problem["message"]})

        def wait(state: dict, row: ExecutionRow):
            if state["status"] == S + "PENDING":
                state.update(status=S + "WAITING_APPROVAL", name=step.name or sid,
                             started_at=state.get("started_at") or iso(),
                             attempts=state.get("attempts", 0) + 1)
                if message:
                    state["message"] = message
            if row.status not in ENDED:
                row.status = E + "WAITING_APPROVAL"
        await self.engine.step_state(self.execution_id, sid, wait)
        # A checkpoint named after the step, so a retry can fork the run right here.
        await DBOS.run_step_async({"name": f"step:{sid}"}, _waiting, sid)
        approvers: set[str] = set()
        outcome = None
        while len(approvers) < needed:
            decision = await DBOS.recv_async(f"approval:{sid}", timeout_seconds=timeout)
            if decision is None:
                outcome = ("APPROVAL_TIMEOUT",
                           f"step {sid!r} got no decision within {timeout:g}s")
                break
            if not decision["approved"]:
                outcome = ("APPROVAL_REJECTED",
                           f"step {sid!r} rejected by {decision['user_id']}: "
                           f"{decision.get('comment', '')}")
                break
            approvers.add(decision["user_id"])
        if outcome is None:
            result = {"ok": True, "output": {"approved": True, "approvers": sorted(approvers)}}

            def resume(row: ExecutionRow):
                if row.status == E + "WAITING_APPROVAL":
                    row.status = E + "RUNNING"
            await self.engine.update(self.execution_id, resume)
            return await self._record(sid, result)
        code, text = outcome
        await self.engine.step_state(self.execution_id, sid, lambda state, row: setattr(
            row, "errors", [*row.errors, _error(sid, code, text)]))
        return await self._record(sid, {"ok": False, "code": code, "message": text})

    # -- parallel: branches in lock-step waves, max_concurrency branches at a time --
    async def _parallel(self, sid: str) -> tuple[str, str, str] | None:
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
                wave_failure = await self._concurrently(members, fail_fast=config.fail_fast)
                failure = failure or wave_failure
                if failure and config.fail_fast:
                    break
            if failure and config.fail_fast:
                break
        for branch in branches:
            for member in branch.step_ids:
                if self.status[member] == "PENDING":
                    await self._skip(member, "its branch stopped")
        if failure:
            member, code, message = failure
            text = f"branch step {member!r} failed: {message}"
            return await self._record(sid, {"ok": False, "code": code, "message": text})
        output = {b.name: self.outputs.get(b.step_ids[-1]) if b.step_ids else None
                  for b in branches}
        return await self._record(sid, {"ok": True, "output": output})


async def _waiting(step_id: str) -> str:
    return step_id


def _failure_of(task: asyncio.Task) -> tuple[str, str, str] | None:
    if task.cancelled() or task.exception() is not None:
        return None
    return task.result()


def _rpc_failure(kind: str, exc: grpc.aio.AioRpcError) -> StepFailure:
    code = exc.code()
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return StepFailure(f"{kind}_UNAVAILABLE", f"the {kind.lower()}s service cannot run this "
                                                  f"yet (UNIMPLEMENTED): {exc.details()}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return StepFailure(f"{kind}_UNAVAILABLE", f"{code.name}: {exc.details()}")
    if code == grpc.StatusCode.NOT_FOUND:
        return StepFailure(f"{kind}_NOT_FOUND", exc.details() or "not found")
    return StepFailure(f"{kind}_FAILED", f"{code.name}: {exc.details()}")
