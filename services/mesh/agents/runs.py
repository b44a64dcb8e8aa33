"""The interactions running in this process (the agents service's state): each one's events for
streams and watchers, its task for cancelling, and the leases that tell a crash apart.

* A `Run` is one interaction of a call: its task, and its events (`started`, `token`,
  `tool_call.started`, `tool_call.ended`, `usage`, `ended`) kept while it runs, so that a watcher
  that comes late gets them from the start. Streams (StreamInteraction, WatchCall) follow it.
* Cancelling a run cancels its task: the model request's connection is closed and a tool call
  in flight (a gRPC call to the tools service) is cancelled; the call ends CANCELLED.
* Leases: a call is ACTIVE only while the process running it renews `lease_until` (every
  `LEASE_SECONDS / 3`). A call whose lease ran out was cut off (the process crashed or was
  killed): when the service starts, and every few seconds after (the only replica: every
  minute once the leases of the process before it have ended), such calls end FAILED with
  reason INTERRUPTED. A graceful stop ends its own runs the same way at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from google.protobuf import json_format
from sqlmodel import Session, select

from agentmesh.agents.v1 import agents_pb2 as pb
from mesh.agents.models import CallRow
from mesh.runtime.tables import utcnow

log = logging.getLogger("mesh.agents.runs")
LEASE_SECONDS = 10.0
# The only replica of the agents service (no replica id: `agentmesh up`) holds every lease in
# the database once those of the process before it have ended, so after its first two leases
# it sweeps only this often, for a call whose end it could not record (the database away): a
# read every LEASE_SECONDS / 3 was 18 of the idle mesh's ~350 table scans a minute on
# PostgreSQL (pg_stat_user_tables).
ALONE_SWEEP_SECONDS = 60.0
INTERRUPTED = "INTERRUPTED"


class Run:
    """One interaction running here."""

    def __init__(self, call_id: str, tenant_id: str) -> None:
        self.call_id = call_id
        self.tenant_id = tenant_id
        self.events: list[pb.InteractionEvent] = []
        self.task: asyncio.Task | None = None
        # Resolves to the call's id once its row is written (a new call is recorded once its
        # model has answered: `defer_record`).
        self.recorded: asyncio.Future | None = None
        self._record = None       # the deferred write of the call's row, until it is started
        self._record_timer: asyncio.TimerHandle | None = None
        self._record_task: asyncio.Task | None = None
        self.result: pb.InteractWithAgentResponse | None = None
        self.stopping = ""          # why it is being cancelled: "" (running), CANCELLED, INTERRUPTED
        self._changed = asyncio.Event()
        self.listeners: list[Any] = []  # callables given each event (the live sockets)
        self.streams = False      # its model answer is streamed (tokens are events)
        self.announced = False    # `call.started` is on the live sockets
        self.held: list[pb.InteractionEvent] = []   # events waiting for `call.started`
        # A refusal of the caller's request (governance, a budget): InteractWithAgent answers it
        # as its error (403, 429) once the call is recorded FAILED with its reason.
        self.refusal: Exception | None = None

    @property
    def ended(self) -> bool:
        return self.result is not None

    def defer_record(self, write, after: float) -> None:
        """The call's row is written (`write()`, a coroutine) when the run's first event after
        `started` comes (the model's first token, a tool call, its end), when someone asks for
        the call (`record_now`), or `after` seconds from now, whichever is first: a write on
        the way to the first token shares the process's one core (and the GIL, with the
        database's worker thread) with the model request and the relay of that token."""
        loop = asyncio.get_running_loop()
        self.recorded = loop.create_future()
        self._record = write
        self._record_timer = loop.call_later(after, self.record_now)

    def record_now(self) -> asyncio.Future:
        """Starts the deferred write of the call's row, if it has not started; `recorded`."""
        if self._record is not None:
            write, self._record = self._record, None
            if self._record_timer is not None:
                self._record_timer.cancel()
            recorded = self.recorded

            def done(task: asyncio.Task) -> None:
                if recorded.done():
                    return
                if task.cancelled():
                    recorded.cancel()
                elif task.exception() is not None:
                    recorded.set_exception(task.exception())
                else:
                    recorded.set_result(task.result())
            # Kept: the loop holds tasks weakly, and a write collected mid-flight is a lost row.
            self._record_task = asyncio.ensure_future(write())
            self._record_task.add_done_callback(done)
        return self.recorded

    def emit(self, type_: str, *, text: str = "", tool_call: dict | None = None,
             usage: pb.InteractionUsage | None = None, step: int = 0,
             result: pb.InteractWithAgentResponse | None = None) -> pb.InteractionEvent:
        event = pb.InteractionEvent(type=type_, call_id=self.call_id, seq=len(self.events) + 1,
                                    text=text, step=step)
        if tool_call is not None:
            event.tool_call.update(_jsonable(tool_call))
        if usage is not None:
            event.usage.CopyFrom(usage)
        if result is not None:
            event.result.CopyFrom(result)
            self.result = result
        self.events.append(event)
        if self._record is not None and type_ != "started":
            # After this event is relayed (the streams follow on the next turn of the loop).
            asyncio.get_running_loop().call_soon(self.record_now)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in self.listeners:
            listener(event)
        return event

    async def follow(self, after: int = 0) -> AsyncIterator[pb.InteractionEvent]:
        """The events after the `after`-th, then each as it comes, until `ended`."""
        index = after
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                yield event
                if event.type == "ended":
                    return
            await self._changed.wait()

    async def wait(self) -> pb.InteractWithAgentResponse:
        while self.result is None:
            await self._changed.wait()
        return self.result


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


def _expired(now):
    return (CallRow.status == "CALL_STATUS_ACTIVE",
            sa.or_(CallRow.lease_until.is_(None), CallRow.lease_until < now))


def any_expired(session: Session) -> bool:
    """Whether some ACTIVE call's lease ran out (a read: the sweep's usual answer is no, and a
    write transaction that finds nothing would still take SQLite's write lock)."""
    return session.exec(select(CallRow.id).where(*_expired(utcnow())).limit(1)).first() \
        is not None


def interrupt_expired(session: Session) -> list[tuple[str, str]]:
    """Ends FAILED (INTERRUPTED) every ACTIVE call whose lease ran out; their (tenant, id)."""
    now = utcnow()
    rows = session.exec(select(CallRow).where(*_expired(now))
                        .with_for_update(skip_locked=True)).all()
    for row in rows:
        row.status, row.reason = "CALL_STATUS_FAILED", INTERRUPTED
        row.error = ("the call was cut off: the agents service running it stopped (crash or "
                     "kill) before it ended")
        row.ended_at = now
        row.lease_until = None
        row.result = {"status": "CALL_STATUS_FAILED", "reason": INTERRUPTED, "error": row.error,
                      "reply": "", "tool_calls": [], "tokens": 0, "duration_ms": 0,
                      "cost_usd": 0.0}
        row.transcript = [*row.transcript, {"role": "system", "content": row.error,
                                            "timestamp": now.isoformat(),
                                            "metadata": {"reason": INTERRUPTED}}]
        session.add(row)
    session.commit()
    return [(row.tenant_id, row.id) for row in rows]


def renew(session: Session, call_ids: list[str]) -> None:
    session.exec(sa.update(CallRow).where(CallRow.id.in_(call_ids),
                                          CallRow.status == "CALL_STATUS_ACTIVE")
                 .values(lease_until=utcnow() + timedelta(seconds=LEASE_SECONDS)))
    session.commit()


def lease() -> Any:
    return utcnow() + timedelta(seconds=LEASE_SECONDS)


class Runs:
    """The service's state: the runs of this process, their leases, and the sweep that ends
    calls a crash cut off."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.runs: dict[str, Run] = {}
        self._keeper: asyncio.Task | None = None
        self.on_interrupted = None   # async (tenant_id, call_id) -> None: the live event

    def open(self, call_id: str, tenant_id: str) -> Run:
        run = Run(call_id, tenant_id)
        self.runs[call_id] = run
        return run

    def close_run(self, run: Run) -> None:
        self.runs.pop(run.call_id, None)

    def get(self, call_id: str) -> Run | None:
        return self.runs.get(call_id)

    async def written(self, tenant_id: str, call_id: str | None = None) -> None:
        """The rows of the tenant's runs here (or of the one call) written before a read shows
        them: a new call's row waits for its model's first answer (Run.defer_record)."""
        runs = self.runs.values() if call_id is None else [self.runs.get(call_id)]
        pending = [run.record_now() for run in list(runs)
                   if run is not None and run.tenant_id == tenant_id and
                   run.recorded is not None and not run.recorded.done()]
        if pending:   # shielded: a reader that goes away does not cancel the write
            await asyncio.gather(*(asyncio.shield(f) for f in pending), return_exceptions=True)

    async def cancel(self, run: Run, why: str = "CANCELLED") -> None:
        """Cancels the run's task and waits (10 s at most) until it has recorded its end."""
        run.stopping = run.stopping or why
        if run.task is not None and not run.task.done():
            run.task.cancel()
        with contextlib.suppress(BaseException):   # its end recorded (`ended` comes after)
            await asyncio.wait_for(asyncio.shield(run.wait()), 10)

    async def sweep(self) -> list[tuple[str, str]]:
        if not await self.runtime.database.read(any_expired):
            return []
        ended = await self.runtime.database.write(interrupt_expired)
        for tenant_id, call_id in ended:
            log.warning("call %s was cut off by a stop of the agents service: FAILED "
                        "(INTERRUPTED)", call_id)
            if self.on_interrupted is not None:
                with contextlib.suppress(Exception):
                    await self.on_interrupted(tenant_id, call_id)
        return ended

    async def _keep(self) -> None:
        loop = asyncio.get_running_loop()
        alone = not self.runtime.settings.replica_id
        started = swept = loop.time()
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                if self.runs:
                    ids = list(self.runs)
                    await self.runtime.database.write(lambda s: renew(s, ids))
                now = loop.time()
                if not alone or now - started < 2 * LEASE_SECONDS \
                        or now - swept >= ALONE_SWEEP_SECONDS:
                    swept = now
                    await self.sweep()
            except Exception:  # the database may be briefly away; try again next round
                log.exception("renewing the calls' leases failed")

    async def start(self) -> None:
        await self.sweep()
        self._keeper = asyncio.create_task(self._keep())

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(BaseException):
                await self._keeper
        for run in list(self.runs.values()):
            await self.cancel(run, INTERRUPTED)


def event_json(event: pb.InteractionEvent) -> dict[str, Any]:
    return json_format.MessageToDict(event, preserving_proto_field_name=True)
