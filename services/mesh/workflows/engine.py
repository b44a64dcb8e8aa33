"""The workflows engine as the API and the engine's own parts are handed it.

The engine of a process is `mesh.workflows.state.WorkflowsState` (`DEFINITION.state`): it owns
DBOS and registers the DBOS workflows, which run the interpreter (`mesh.workflows.run`), fire
schedules (`mesh.workflows.schedules`) and recover (`mesh.workflows.recovery`). Those modules,
`mesh.workflows.control` and the API are given the engine and call it (put an interpreter on the
queue, start a child's, track the tasks of a step, stop an execution). They see it through this
interface rather than by importing the state module: that module imports them (imports go one
way only), and it imports `dbos`, which the API must not pay for until the service starts.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from mesh.runtime.db import Database
from mesh.runtime.peers import Peers
from mesh.runtime.settings import Settings
from mesh.workflows.projection import Projection

if TYPE_CHECKING:
    import httpx2

# One DBOS queue for every root execution, partitioned by tenant: each tenant's partition may
# run AGENTMESH_WORKFLOW_TENANT_CONCURRENCY interpreters per replica, all of them together
# AGENTMESH_WORKFLOW_QUEUE_CONCURRENCY, so one tenant's backlog never holds another's back.
# Within a partition the priority is DBOS's queue priority (a lower number is dequeued first).
# One queue rather than one per priority: each queue is a poller, and at idle each poll costs
# CPU (measured: ~2.5 ms per poll on SQLite). Sub-workflow executions are not queued: they start
# at once as workflows of their own (bounded by the depth and descendant limits), so a parent
# waiting for its child never waits for a queue slot the waiting parents hold.
QUEUE = "agentmesh-workflows"


class Engine(Protocol):
    db: Database
    settings: Settings
    peers: Peers
    projection: Projection
    # This replica's DBOS executor id (AGENTMESH_REPLICA_ID, "local" without one).
    executor_id: str
    # DBOS's queue of root executions (QUEUE).
    queue: Any
    # Set once DBOS is launched and the queue registered: nothing is enqueued before.
    ready: asyncio.Event
    # The client of HTTP steps (through the egress guard).
    http: "httpx2.AsyncClient | None"
    # True once the process is shutting down: an interpreter cut off then is recovered on the
    # next start, not failed.
    stopping: bool

    async def enqueue(self, execution_id: str, tenant_id: str, priority: str,
                      timeout: float | None) -> None:
        """A root execution's interpreter on the queue, in its tenant's partition."""

    async def launch(self, execution_id: str, timeout: float | None) -> None:
        """A sub-workflow execution's interpreter, started at once."""

    def wake_queue(self, tenant_id: str) -> None:
        """Claims the tenant's queued interpreters now (work put on the queue by DBOS itself,
        a fork, is not seen until the queue's next poll otherwise)."""

    def wake_internal_queue(self) -> None:
        """Claims what waits on DBOS's internal queue now (a retried child execution, a
        schedule's fire), instead of at that queue's next poll."""

    def track(self, execution_id: str, task: asyncio.Task) -> None:
        """A step's task, cancelled when the execution is stopped or the engine closes."""

    def cancel_steps(self, execution_id: str) -> None:
        """Cancels the execution's steps running in this process."""

    # ---- what the API asks (mesh.workflows.control, mesh.workflows.projection) ----
    # True from the engine's start to its close: before, the API answers ENGINE_NOT_READY.
    started: bool

    def changed(self, execution_id: str) -> asyncio.Event:
        """Set at the next change of the execution made in this process."""

    async def step_state(self, execution_id: str, step_id: str,
                         fn: Callable[[dict, Any], Any]) -> Any:
        """`fn(step state, execution row)` applied to the row, in one write."""

    async def stop_execution(self, execution_id: str, status: str, code: str,
                             message: str) -> None: ...

    async def retry(self, execution_id: str, scopes: list[str] | None = None) -> None: ...

    async def send_decision(self, execution_id: str, step_id: str, decision: dict) -> None: ...

    async def add_schedule(self, schedule: Any) -> None: ...

    async def remove_schedule(self, schedule_id: str) -> None: ...


def detached(coroutine: Coroutine) -> asyncio.Task:
    """A task outside any DBOS context (so a workflow it starts is top level, not a child)."""
    return contextvars.Context().run(asyncio.get_running_loop().create_task, coroutine)
