"""Starting queued interpreters when there is work, not at DBOS's next poll.

DBOS's queue thread claims queued workflows once per polling interval, and nothing wakes it:
a root execution enqueued just after a poll waited up to the whole interval (0.2 s was ~170 of
a three-step run's ~207 ms, issue 27), and a shorter interval costs CPU at idle (a poll is a few
milliseconds of SQL per partition). So the engine claims itself, at the two moments work can
start in this replica: right after it enqueues an execution (its tenant's partition), and when
one of its interpreters ends (a slot frees: every partition with work). The claim is DBOS's own
(`SystemDatabase.start_queued_workflows`, one transaction that respects the queue's per-worker
and per-partition limits, the calls its queue thread makes), so a claim here and one by the
poller or another replica never start a workflow twice. The poll stays, slower, for what this
replica cannot see: work enqueued by another replica, and claims that lost a race. The same
class claims for DBOS's internal queue (one partition), woken by a schedule's fire and a
retried child (mesh.workflows.state).

These are DBOS internals (pinned: dbos 3.4.0 in .ci/constraints.txt); tests/workflows/
test_dispatch.py fails if they change shape. Claims run in a worker thread: they are blocking
SQL, like the poller's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from dbos._core import execute_dequeued_workflow
from dbos._dbos import _get_dbos_instance
from dbos._utils import GlobalParams, generate_uuid
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("mesh.workflows.dispatch")


class Dispatcher:
    """Claims and starts a queue's workflows in this replica on demand."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        # One claim at a time in this process (SQLite has one writer; concurrent claims would
        # only contend on the same rows), and wake-ups that arrive meanwhile are folded into
        # one more claim after it: under load a claim per enqueue cost more CPU than the poll.
        self._lock = threading.Lock()
        self._claiming = False
        self._pending: set[str | None] = set()  # None: every partition

    async def wake(self, partition: str | None = None) -> int:
        """Claims what may start now in `partition` (a tenant), or in every partition with
        queued work; returns how many interpreters it started."""
        self._pending.add(partition)
        if self._claiming:
            return 0  # the claim running now takes it up when it is done
        self._claiming = True
        started = 0
        try:
            while self._pending:
                wanted = None if None in self._pending else sorted(self._pending)
                self._pending.clear()
                started += await self._claim_in_thread(wanted)
        finally:
            self._claiming = False
        return started

    async def _claim_in_thread(self, partitions: list[str] | None) -> int:
        try:
            # Not asyncio.to_thread: that copies this context, and a claim made from inside a
            # DBOS workflow (a schedule firing) would start the claimed ones as its children.
            return await asyncio.get_running_loop().run_in_executor(None, self._claim, partitions)
        except Exception:  # the poll is the fallback: a failed wake-up only delays
            log.warning("claiming queued executions failed; the queue's poll will",
                        exc_info=True)
            return 0

    async def wake_when_released(self) -> int:
        """Called by an interpreter as it ends: DBOS records the outcome and frees the slot
        (its active set) only after the interpreter returns, so the claim waits until then
        (a few milliseconds; at most a second, then claims anyway)."""
        active = _get_dbos_instance()._active_workflows_set
        holding = active.count_for_queue(self.queue.name)
        deadline = asyncio.get_running_loop().time() + 1.0
        while active.count_for_queue(self.queue.name) >= holding and \
                asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.002)
        return await self.wake()

    def _claim(self, partitions: list[str] | None) -> int:
        dbos = _get_dbos_instance()
        system = dbos._sys_db
        queue = self.queue
        with self._lock:
            if not queue._has_partition_limits():  # DBOS's internal queue: one partition
                keys: list[str | None] = [None]
            else:
                keys = partitions if partitions is not None else \
                    system.get_queue_partitions(queue.name)
            started = 0
            for key in keys:
                # A started workflow joins the active set asynchronously (on the event loop):
                # the ones started here count until then, as in DBOS's poller.
                running = dbos._active_workflows_set.count_for_queue(queue.name) + started
                if queue._worker_concurrency is not None and \
                        running >= queue._worker_concurrency:
                    break
                owner = generate_uuid()
                try:
                    claimed, _ = system.start_queued_workflows(
                        queue, GlobalParams.executor_id, GlobalParams.app_version, key,
                        running, dbos._active_workflows_set.count_for_partition(queue.name, key)
                        if key is not None else 0,
                        owner_xid=owner)
                except DBAPIError as error:
                    if system.is_lock_conflict(error) or system.is_serialization_conflict(error):
                        continue  # the poller or another replica is claiming it now
                    raise
                statuses = {s["workflow_uuid"]: s
                            for s in system.get_workflow_statuses(claimed)} if claimed else {}
                for workflow_id in claimed:
                    status = statuses.get(workflow_id) or system.get_workflow_status(workflow_id)
                    if status is not None:
                        execute_dequeued_workflow(dbos, status, owner)
                        started += 1
            return started
