"""The workflows engine of this process (`DEFINITION.state`): durable execution on DBOS Transact.

State lives in two places (docs/workflows.md):

* The service's own tables (`mesh.workflows.models`): definitions, their immutable versions,
  schedules, and each execution as the API shows it (status, progress, step states, errors,
  outputs). Every change to an execution bumps its `seq`, the event id of WatchExecution
  (`mesh.workflows.projection`).
* DBOS's system tables, in their own SQLite file beside the service's (`workflows.dbos.db`) or
  their own PostgreSQL schema (`<service schema>_dbos`): the durable interpreter workflows, the
  checkpoint of every step's outcome, the queue (with priorities), approval messages and cron
  schedules. An execution's id is the DBOS workflow id of its interpreter (a retry runs a DBOS
  fork, whose id is `<execution id>.r<n>`).

One DBOS workflow, `interpret(execution_id)`, runs every execution (`mesh.workflows.run`);
another, `fire_schedule`, makes a schedule's execution (`mesh.workflows.schedules`).

How the DBOS workflows reach the engine: DBOS registers workflow functions when their module
is imported, before it launches, and calls them itself (a queued interpreter, one recovered
after a crash, a cron fire), so nothing can hand them the service's state. DBOS is a process
singleton, so the engine that launches it is one too: `WorkflowsState.start` claims the
process's one slot before DBOS launches (refusing a second workflows service in the process)
and `close` gives it back after DBOS is destroyed; the registered functions reach the engine
through `running()`, the one accessor, and nothing else reads or writes the slot. Every other
part is handed the engine (`mesh.workflows.engine.Engine`).

This is the only place DBOS is launched, and `dbos` is imported only by this module and the
engine's parts it imports (`import dbos` takes about 0.7 s): `DEFINITION.state` imports it when
the service starts, never the catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import httpx2
from dbos import DBOS, SetEnqueueOptions, SetWorkflowID, SetWorkflowTimeout
from dbos._dbos import _get_dbos_instance

from mesh.runtime.egress import EgressPolicy
from mesh.runtime.service import Runtime
from mesh.workflows import control, recovery, run, schedules
from mesh.workflows.dispatch import Dispatcher
from mesh.workflows.engine import QUEUE, detached
from mesh.workflows.models import ScheduleRow
from mesh.workflows.projection import Projection
from mesh.workflows.steps import HTTP_STEP_TIMEOUT
from mesh.workflows.store import scheduled_execution_id

log = logging.getLogger("mesh.workflows.state")
# The queue's poll is the fallback (mesh.workflows.dispatch starts work when it is queued and
# when a slot frees): for work another replica enqueued, or a claim that lost a race.
QUEUE_POLLING_SECONDS = 1.0
# DBOS's poll for messages (approval decisions) on SQLite; PostgreSQL has LISTEN/NOTIFY.
MESSAGE_POLLING_SECONDS = 10.0
# DBOS's polls are safety nets: this process wakes its queues itself (mesh.workflows.dispatch:
# an enqueue, a freed slot, a retry, a schedule's fire), and each poll is a few milliseconds of
# SQL (and a PostgreSQL backend's work); at one a second they were a third of what the idle mesh
# did (docs/budgets.md). On PostgreSQL the queues are polled every QUEUE_POLLING_SECONDS (the
# workflows queue: other replicas' work) and DBOS_POLLING_SECONDS (its internal queue), and its
# background jobs (workflow timeouts) run every DBOS_POLLING_SECONDS. Where the workflows
# service is the only replica — on SQLite (replicas need PostgreSQL), or on PostgreSQL without
# AGENTMESH_REPLICA_ID (`agentmesh up --database-url`; the Helm chart and `--replicas N` name
# every replica) — nothing else enqueues, so both queues are polled every
# ALONE_QUEUE_POLLING_SECONDS, and the background jobs run every ALONE_DBOS_POLLING_SECONDS: a
# workflow's timeout ends it up to that much late. DBOS's scheduler thread reads the schedule
# list (to start a thread per schedule) when this engine creates or deletes a schedule
# (`_scheduler_woken`), and every DBOS_POLLING_SECONDS for another replica's change; the only
# replica changes every schedule itself, so it reads the list every ALONE_SCHEDULES_SECONDS, a
# safety net (at 5 s its thread was, with the background jobs', the busiest of the idle mesh on
# PostgreSQL after the event loop: 0.18% of a core). DBOS's queue manager lists the registered
# queues (to start a worker for a new one) every QUEUE_MANAGER_SECONDS: this service registers
# its one queue at start.
ALONE_QUEUE_POLLING_SECONDS = 10.0
DBOS_POLLING_SECONDS = 2.0
ALONE_DBOS_POLLING_SECONDS = 5.0
ALONE_SCHEDULES_SECONDS = 60.0
QUEUE_MANAGER_SECONDS = 10.0
NOTIFIER_SECONDS = 1.0
PRIORITIES = {"EXECUTION_PRIORITY_CRITICAL": 1, "EXECUTION_PRIORITY_HIGH": 2,
              "EXECUTION_PRIORITY_NORMAL": 3, "EXECUTION_PRIORITY_LOW": 4}

_running: "WorkflowsState | None" = None


def running() -> "WorkflowsState":
    """The engine that launched DBOS in this process (for the registered DBOS workflows)."""
    if _running is None:
        raise RuntimeError("the workflows engine is not running")
    return _running


# ---- the DBOS workflows (registered at import, before launch) --------------------------------

@DBOS.workflow(name="agentmesh.workflows.interpret")
async def interpret(execution_id: str) -> dict:
    return await running().interpret(execution_id)


@DBOS.workflow(name="agentmesh.workflows.fire_schedule")
async def fire_schedule(scheduled_at: datetime, context: Any) -> str:
    return await running().fire_schedule(scheduled_at, context)


def _slow_dbos_polls(internal_queue: float, background_jobs: float) -> None:
    """DBOS's internal queue and its background jobs poll every so many seconds (DBOS
    internals, pinned in tests/workflows/test_dispatch.py: its internal queue's interval and
    the module constant its background-jobs thread reads when DBOS launches; the only replica
    runs those jobs without their lock), its queue manager every QUEUE_MANAGER_SECONDS, a
    schedule's fire wakes the internal queue, and a change of the schedules wakes the
    scheduler thread."""
    from dbos import _dbos, _scheduler, _workflow_commands

    _get_dbos_instance()._registry.get_internal_queue()._polling_interval_sec = internal_queue
    _workflow_commands._BACKGROUND_JOBS_INTERVAL_SEC = background_jobs
    if not getattr(_dbos.background_jobs_thread, "unlocked", False):
        _dbos.background_jobs_thread = _unlocked_when_alone(_dbos.background_jobs_thread)
    if not getattr(_dbos.queue_thread, "slowed", False):
        _dbos.queue_thread = _slow_queue_manager(_dbos.queue_thread)
    if not getattr(_dbos.dynamic_scheduler_loop, "woken", False):
        _dbos.dynamic_scheduler_loop = _scheduler_woken(_dbos.dynamic_scheduler_loop)
    if not getattr(_scheduler._enqueue_scheduled_workflow, "wakes", False):
        _scheduler._enqueue_scheduled_workflow = _waking_on_fire(
            _scheduler._enqueue_scheduled_workflow)


@contextlib.contextmanager
def _no_other_replica(job_name: str):
    yield True


def _unlocked_when_alone(jobs_thread: Callable) -> Callable:
    """DBOS's background-jobs thread, which on the only replica runs the jobs without their
    lock. On PostgreSQL the lock is a transaction kept open through each interval, which the
    lock's own idle timeout (5 s, as long as the only replica's interval) ended every 10-45 s:
    a new session, and a new PostgreSQL backend, each time; with no other replica there is no
    one to exclude. (On SQLite the lock is already none.)"""

    @functools.wraps(jobs_thread)
    def unlocked(stop_event: threading.Event, dbos: Any) -> None:
        if _running is not None and _running.alone:
            dbos._sys_db.background_job_lock = _no_other_replica
        jobs_thread(stop_event, dbos)
    unlocked.unlocked = True
    return unlocked


def _slow_queue_manager(queue_thread: Callable) -> Callable:
    """DBOS's queue manager thread with its own waits QUEUE_MANAGER_SECONDS long (its interval
    is a constant inside the function): it is handed a stop event whose `wait` lasts that long
    when called from the manager's thread, and is DBOS's own everywhere else (the queue
    workers the manager starts get the same object and keep their intervals)."""

    @functools.wraps(queue_thread)
    def slowed(stop_event: threading.Event, dbos: Any) -> None:
        manager = threading.get_ident()

        class Stop:
            def is_set(self) -> bool:
                return stop_event.is_set()

            def set(self) -> None:
                stop_event.set()

            def wait(self, timeout: float | None = None) -> bool:
                if timeout is not None and threading.get_ident() == manager:
                    timeout = max(timeout, QUEUE_MANAGER_SECONDS)
                return stop_event.wait(timeout)

        queue_thread(Stop(), dbos)
    slowed.slowed = True
    return slowed


# Set when this process creates or deletes a schedule, or its engine stops: ends the wait of
# DBOS's scheduler thread.
_schedules_changed = threading.Event()


def _scheduler_woken(scheduler_loop: Callable) -> Callable:
    """DBOS's scheduler thread (it reads the schedule list, then waits its polling interval on
    the stop event it is handed) with its waits ended by `_schedules_changed`: a schedule this
    engine creates or deletes is taken up at once. It stops when its engine does (before DBOS
    is destroyed, which joins it), or when DBOS's stop event is set at the end of a wait."""

    @functools.wraps(scheduler_loop)
    def woken(stop_event: threading.Event, polling_interval_sec: float) -> None:
        engine = _running

        class Stop:
            def is_set(self) -> bool:
                return stop_event.is_set() or (engine is not None and engine.stopping)

            def set(self) -> None:
                stop_event.set()

            def wait(self, timeout: float | None = None) -> bool:
                _schedules_changed.wait(timeout)
                _schedules_changed.clear()  # before the list is read again
                return self.is_set()

        scheduler_loop(Stop(), polling_interval_sec)
    woken.woken = True
    return woken


def _waking_on_fire(enqueue: Callable) -> Callable:
    """DBOS's enqueue of a schedule's fire (onto its internal queue, from a scheduler thread),
    followed by a wake of that queue on the engine's loop: the fire starts now, not at the
    internal queue's next poll."""

    @functools.wraps(enqueue)
    def fire(*args: Any, **kwargs: Any) -> Any:
        result = enqueue(*args, **kwargs)
        engine = _running
        if engine is not None:
            engine.wake_internal_queue_threadsafe()
        return result
    fire.wakes = True
    return fire


class WorkflowsState:
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.settings = runtime.settings
        self.peers = runtime.peers
        self.projection = Projection(self.db, self.settings, self.peers)
        self.executor_id = runtime.settings.replica_id or "local"
        self.queue: Any = None
        self.dispatcher: Dispatcher | None = None
        self.internal_dispatcher: Dispatcher | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = asyncio.Event()
        self.http: httpx2.AsyncClient | None = None
        self.stopping = False
        # From start() to close(): what the API may ask of the engine.
        self.started = False
        self._tasks: dict[str, set[asyncio.Task]] = {}
        self._interpreters: set[asyncio.Task] = set()
        self._wakes: set[asyncio.Task] = set()
        self._watcher: asyncio.Task | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    @property
    def alone(self) -> bool:
        """Whether this is the only replica of the workflows service: on SQLite, or on
        PostgreSQL with no replica id (the chart and `--replicas N` give every one an id)."""
        return self.db.sqlite_path is not None or not self.settings.replica_id

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "name": "agentmesh-workflows",
            # Pinned: the interpreter is data-driven, so a new build must recover the
            # executions an older build left running (DBOS recovers only its own version).
            "application_version": "agentmesh-workflows-1",
            # Each replica its own executor, so that a replica restarting recovers only the
            # executions it was running, never one another replica is running now.
            "executor_id": self.executor_id,
            "log_level": "WARNING",
            "scheduler_polling_interval_sec": ALONE_SCHEDULES_SECONDS if self.alone
            else DBOS_POLLING_SECONDS,
            "notification_listener_polling_interval_sec": 0.5,
        }
        if self.db.sqlite_path is not None:
            path = self.db.sqlite_path.with_suffix(".dbos.db")
            config["system_database_url"] = f"sqlite:///{path}"
            # On SQLite DBOS learns of a message by polling, one query per waiting receiver
            # (1,000 executions waiting for approval kept half a core busy, bench/scale.py);
            # an approval sent here wakes its receiver at once (control.send_decision), and
            # SQLite has no other process to send one, so the poll is only a safety net.
            config["notification_listener_polling_interval_sec"] = MESSAGE_POLLING_SECONDS
        else:
            config["system_database_url"] = self.settings.database_url
            config["dbos_system_schema"] = f"{self.db.schema}_dbos"
            config["sys_db_pool_size"] = 10
            # DBOS's notifier thread flushes coalesced notifications of workflow events and
            # streams, which the interpreter uses neither of (approvals are messages, notified
            # on their own), every this many seconds: at its default of 10 ms it woke 100 times
            # a second, 0.7% of a core of the idle mesh on PostgreSQL.
            config["notification_coalesce_sec"] = NOTIFIER_SECONDS
        return config

    async def start(self) -> None:
        global _running
        if _running is not None:
            raise RuntimeError("DBOS is a process singleton: one workflows service per process")
        _running = self
        self.started = True
        self.loop = asyncio.get_running_loop()
        # HTTP steps call tenant URLs: through the egress guard, with a timeout.
        self.http = EgressPolicy.from_settings(self.settings).client(timeout=HTTP_STEP_TIMEOUT)
        logging.getLogger("dbos").setLevel(logging.WARNING)
        try:
            alone = self.alone
            DBOS(config=self.config())
            _slow_dbos_polls(ALONE_QUEUE_POLLING_SECONDS if alone else DBOS_POLLING_SECONDS,
                             ALONE_DBOS_POLLING_SECONDS if alone else DBOS_POLLING_SECONDS)
            # On the service's loop: recovered and queued interpreters run here.
            DBOS.launch()
            self.queue = await DBOS.register_queue_async(
                QUEUE, worker_concurrency=self.settings.workflow_queue_concurrency,
                partition_worker_concurrency=self.settings.workflow_tenant_concurrency,
                polling_interval_sec=ALONE_QUEUE_POLLING_SECONDS if alone
                else QUEUE_POLLING_SECONDS)
            self.dispatcher = Dispatcher(self.queue)
            self.internal_dispatcher = Dispatcher(
                _get_dbos_instance()._registry.get_internal_queue())
        except BaseException:
            _running = None
            self.started = False
            raise
        self.ready.set()  # recovered interpreters may enqueue (sub-workflows) from now on
        await recovery.heartbeat(self)
        await recovery.reconcile(self)
        self._watcher = asyncio.create_task(recovery.watch_executors(self))

    async def close(self) -> None:
        global _running
        self.stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        # The heartbeat row stays: if this replica does not come back under its name, another
        # one recovers what it leaves pending once the heartbeat is old.
        # Interpreters in flight stop here; DBOS recovers them (PENDING) on the next start.
        _schedules_changed.set()  # DBOS's scheduler thread ends (self.stopping)
        in_flight = [*self._interpreters, *self._wakes,
                     *(t for tasks in self._tasks.values() for t in tasks)]
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        if self.started:
            await asyncio.to_thread(DBOS.destroy, workflow_completion_timeout_sec=0)
        if self.http is not None:
            await self.http.aclose()
        if _running is self:
            _running = None
        self.started = False

    # ---- what the DBOS workflows run --------------------------------------------------------
    async def interpret(self, execution_id: str) -> dict:
        task = asyncio.current_task()
        self._interpreters.add(task)
        try:
            return await run.interpret(self, execution_id)
        finally:
            self._interpreters.discard(task)
            if self.dispatcher is not None:
                # A slot frees: whatever waits in the queue for one starts now.
                self._wake(self.dispatcher.wake_when_released())

    def _wake(self, claim: Coroutine) -> None:
        if self.stopping:
            claim.close()
            return
        wake = detached(claim)
        self._wakes.add(wake)
        wake.add_done_callback(self._wakes.discard)

    async def fire_schedule(self, scheduled_at: datetime, context: Any) -> str:
        schedule_id = context["schedule_id"]
        execution_id = scheduled_execution_id(schedule_id, scheduled_at)
        made = await DBOS.run_step_async(
            {"name": "create_execution"}, self._scheduled_execution, schedule_id, execution_id,
            scheduled_at)
        if made:
            await self.enqueue(execution_id, made["tenant_id"], made["priority"], made["timeout"])
        return execution_id

    async def _scheduled_execution(self, schedule_id: str, execution_id: str,
                                   scheduled_at: datetime) -> dict | None:
        return await schedules.make_execution(self.db, self.settings, schedule_id, execution_id,
                                              scheduled_at)

    # ---- starting interpreters --------------------------------------------------------------
    async def enqueue(self, execution_id: str, tenant_id: str, priority: str,
                      timeout: float | None) -> None:
        """A root execution's interpreter on the queue, in its tenant's partition."""
        await self.ready.wait()
        with SetWorkflowID(execution_id), SetWorkflowTimeout(timeout), \
                SetEnqueueOptions(priority=PRIORITIES.get(priority, 3),
                                  queue_partition_key=tenant_id):
            await self.queue.enqueue_async(interpret, execution_id)
        self.wake_queue(tenant_id)

    def wake_queue(self, tenant_id: str) -> None:
        """Claims the tenant's queued interpreters now, if it has a slot in this replica."""
        if self.dispatcher is not None:
            self._wake(self.dispatcher.wake(tenant_id))

    def wake_internal_queue(self) -> None:
        if self.internal_dispatcher is not None:
            self._wake(self.internal_dispatcher.wake())

    def wake_internal_queue_threadsafe(self) -> None:
        """`wake_internal_queue` from another thread (DBOS's scheduler threads)."""
        if self.loop is not None and not self.stopping:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.loop.call_soon_threadsafe(self.wake_internal_queue)

    async def launch(self, execution_id: str, timeout: float | None) -> None:
        """A sub-workflow execution's interpreter, started at once in this process instead of
        queued: its parent holds a queue slot while it waits, so a child that needed one too
        could wait for ever once waiting parents filled the queue. It is a top-level DBOS
        workflow (started outside the parent's context), recovered like any other."""
        await self.ready.wait()

        async def start() -> None:
            with SetWorkflowID(execution_id), SetWorkflowTimeout(timeout):
                await DBOS.start_workflow_async(interpret, execution_id)
        await detached(start())

    def track(self, execution_id: str, task: asyncio.Task) -> None:
        self._tasks.setdefault(execution_id, set()).add(task)

        def done(finished: asyncio.Task) -> None:
            # The execution's entry goes with its last task: one was left behind for every
            # execution this process ever ran.
            tasks = self._tasks.get(execution_id)
            if tasks is not None:
                tasks.discard(finished)
                if not tasks:
                    del self._tasks[execution_id]
        task.add_done_callback(done)

    def cancel_steps(self, execution_id: str) -> None:
        for task in list(self._tasks.get(execution_id, ())):
            task.cancel()

    # ---- what the API asks of the engine ----------------------------------------------------
    def changed(self, execution_id: str) -> asyncio.Event:
        return self.projection.changed(execution_id)

    async def step_state(self, execution_id: str, step_id: str, fn) -> Any:
        return await self.projection.step_state(execution_id, step_id, fn)

    async def stop_execution(self, execution_id: str, status: str, code: str,
                             message: str) -> None:
        await control.stop_execution(self, execution_id, status, code, message)

    async def retry(self, execution_id: str, scopes: list[str] | None = None) -> None:
        await control.retry(self, execution_id, scopes)

    async def send_decision(self, execution_id: str, step_id: str, decision: dict) -> None:
        await control.send_decision(self, execution_id, step_id, decision)

    async def add_schedule(self, schedule: ScheduleRow) -> None:
        await DBOS.create_schedule_async(
            schedule_name=schedule.id, workflow_fn=fire_schedule, schedule=schedule.cron,
            context={"schedule_id": schedule.id, "tenant_id": schedule.tenant_id},
            cron_timezone=schedule.timezone or None)
        _schedules_changed.set()

    async def remove_schedule(self, schedule_id: str) -> None:
        await DBOS.delete_schedule_async(schedule_id)
        _schedules_changed.set()
