"""The executions as the API shows them, written as the interpreter goes: every change to an
execution row is one read-modify-write that bumps its `seq` (WatchExecution's event id), wakes
the streams watching it in this process, publishes it to the live events and, when it ends the
execution, tells the tenant's webhooks once.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from sqlmodel import Session, select

from mesh.runtime import events, metrics, platform_events
from mesh.runtime.db import Database
from mesh.runtime.peers import Peers
from mesh.runtime.settings import Settings
from mesh.runtime.tables import utcnow
from mesh.workflows.models import ENDED, ExecutionRow
from mesh.workflows.store import iso, progress_payload

E = "EXECUTION_STATUS_"
S = "STEP_STATUS_"


class Projection:
    def __init__(self, db: Database, settings: Settings, peers: Peers) -> None:
        self.db = db
        self.settings = settings
        self.peers = peers
        # Held weakly: an execution's event lives as long as a watcher holds it, so watchers
        # that registered and left (the execution had ended) leave nothing behind.
        self._changed: weakref.WeakValueDictionary[str, asyncio.Event] = \
            weakref.WeakValueDictionary()

    async def update(self, execution_id: str, fn: Callable[[ExecutionRow], Any]) -> Any:
        """Read-modify-write of one execution row; bumps `seq` and wakes its watchers."""
        def apply(session: Session):
            row = session.exec(select(ExecutionRow).where(ExecutionRow.id == execution_id)
                               .with_for_update()).first()
            if row is None:
                return None
            was_ended = row.status in ENDED
            result = change(row, fn)
            changed.append((row.tenant_id, self.write(session, row, was_ended)))
            return result
        changed: list[tuple[str, dict]] = []
        result = await self.db.write(apply, inline=True)  # one row by key
        self.notify(execution_id)
        for tenant_id, payload in changed[-1:]:
            await self.announce(execution_id, tenant_id, payload)
        return result

    @staticmethod
    def write(session: Session, row: ExecutionRow, was_ended: bool) -> dict:
        """Adds the changed row to the transaction and, in the transaction that ends the
        execution (once), its message to the tenant's webhooks; the progress payload."""
        session.add(row)
        return Projection.written(session, row, was_ended)

    @staticmethod
    def written(session: Session, row: ExecutionRow, was_ended: bool) -> dict:
        """As `write`, for a row the transaction has already written."""
        payload = progress_payload(row)
        if row.status in ENDED and not was_ended:
            platform_events.queue(session, row.tenant_id, "execution.finished", payload)
        return payload

    async def announce(self, execution_id: str, tenant_id: str, payload: dict) -> None:
        """After the commit: the live service's sockets (/ws/{session_id}, /ws/executions) see
        every change."""
        await events.publish(self.settings, tenant_id, "execution", execution_id,
                             "execution.progress", payload)

    async def step_state(self, execution_id: str, step_id: str,
                         fn: Callable[[dict, ExecutionRow], Any]) -> Any:
        """`update` of one step's state (a dict of the row's `step_states`), with its row."""
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

    def notify(self, execution_id: str) -> None:
        event = self._changed.pop(execution_id, None)
        if event is not None:
            event.set()

    def changed(self, execution_id: str) -> asyncio.Event:
        """Set at the next change of the execution made in this process."""
        event = self._changed.get(execution_id)
        if event is None:
            event = self._changed[execution_id] = asyncio.Event()
        return event


class Unwritten(Projection):
    """The projection of a run made in memory (mesh.workflows.inline): every change is made
    to one row not yet written, as `update` makes it; the run's caller writes the row once."""

    def __init__(self, row: ExecutionRow) -> None:
        self.row = row

    async def update(self, execution_id: str, fn: Callable[[ExecutionRow], Any]) -> Any:
        return change(self.row, fn)


def change(row: ExecutionRow, fn: Callable[[ExecutionRow], Any]) -> Any:
    """One change of an execution row: `fn`, then the `seq` bump (WatchExecution's event id)
    and the derived fields."""
    result = fn(row)
    row.seq += 1
    row.updated_at = utcnow()
    touch(row)
    return result


def error_record(step_id: str, code: str, message: str) -> dict:
    return {"step_id": step_id, "code": code, "message": message[:2000], "occurred_at": iso()}


def end(row: ExecutionRow, status: str, error: dict | None = None) -> None:
    if row.status in ENDED:
        return
    row.status = status
    row.ended_at = utcnow()
    metrics.EXECUTIONS.labels(status.removeprefix("EXECUTION_STATUS_").lower()).inc()
    row.current_phase = ""
    if error is not None:
        row.errors = [*row.errors, error]


def touch(row: ExecutionRow) -> None:
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
