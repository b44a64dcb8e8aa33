"""Long polls: a server holds a call until what it answers may have changed.

Every service process keeps a copy of a few things other services own (the revocation list of
identity, the runtime configuration of the system service). Instead of asking every second,
it asks with the version it has and a wait (`known_version`, `wait_seconds`), and the server
answers when the content changes or the wait ends: a long poll, as Consul's blocking queries
and Kubernetes' watches. `Watched` is the server's side, one per RPC and server process:

    watched = Watched(runtime, "revocations", read=security.revocations, version=digest,
                      interval=lambda: settings.revocation_poll_seconds)
    version, value = await watched.poll(request.known_version, request.wait_seconds)

`read(session)` reads the content (in a read transaction on the service's pool) and
`version(value)` names it (equal versions, equal content). While calls are held, one check task
keeps the current value, however many calls wait, and learns of a change in two ways:

* a commit in this process that changes the content marks its session with the topic
  (`mesh.runtime.wakeups.mark(session, topic)`): the commit wakes the task, which reads once
  and answers every held call at once;
* a commit by another process (replicas on PostgreSQL, `agentmesh up --replicas` sharing SQLite
  files, a command-line tool): every `interval` seconds the task checks. On SQLite it compares
  the database file's and its `-wal` file's stat (inode, mtime_ns, size) with those taken
  before its last read and reads again only when they differ, so an idle check is two stat
  calls; a file whose mtime is under `RACY_SECONDS` old is read again at the next check too, in
  case a write landed within its timestamp's granularity. On PostgreSQL it reads again: one
  query per interval per server process. A process that is its service's only replica (no
  `AGENTMESH_REPLICA_ID`: `agentmesh up --database-url`; the Helm chart and `--replicas N` name
  every replica) has no other replica to hear from, so on PostgreSQL it checks only every
  `ALONE_CHECK_SECONDS`, for a write from outside the mesh (a tool on the database).

A call whose `known` version is not the task's reads the content again first (it may come from
another replica that already saw a change), so a caller never gets a list older than its own.
The task stops after two checks without a held call; the next held call starts it again (and
waits for its first read). When the service starts to drain (SIGTERM), `close` answers every
held call at once and later calls are answered without waiting, so a long poll never delays a
shutdown (`Runtime.drain_hooks`, run by `mesh.runtime.server` before the grace period).

The time a call spends held is not serving time: the method wrapper subtracts it from the
call's latency metric (`HELD`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from sqlmodel import Session

from mesh.runtime.wakeups import Waiter

if TYPE_CHECKING:
    from mesh.runtime.service import Runtime

log = logging.getLogger("mesh.watch")
T = TypeVar("T")

MAX_WAIT_SECONDS = 60.0  # the longest a call is held, whatever it asks (the contract says 0-60)
RACY_SECONDS = 2.0  # a file changed this recently may change again within the same mtime
_IDLE_CHECKS = 2  # checks without a held call before the task stops
# The check on PostgreSQL of a service's only replica: its own commits wake the task; a read
# every second (revocations) and every two (runtime configuration, three tables) made 150 of
# the idle mesh's ~350 table scans a minute (pg_stat_user_tables).
ALONE_CHECK_SECONDS = 30.0
# The seconds the call being served spent held (a one-item list the method wrapper sets for
# RPCs that can hold a call; None elsewhere).
HELD: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("held", default=None)

Stamp = tuple[tuple[int, int, int] | None, ...]


def file_stamp(path: Path) -> Stamp:
    """What may change when a SQLite database is written: the stat of its file and `-wal`."""
    found = []
    for name in (str(path), f"{path}-wal"):
        try:
            stat = os.stat(name)
        except OSError:
            found.append(None)
        else:
            found.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def _racy(stamp: Stamp) -> bool:
    newest = max((s[1] for s in stamp if s is not None), default=0)
    return time.time_ns() - newest < RACY_SECONDS * 1e9


class Watched(Generic[T]):
    """The current value of something a service reads from its database, for long polls."""

    def __init__(self, runtime: "Runtime", topic: str, read: Callable[[Session], T],
                 version: Callable[[T], str], interval: Callable[[], float]) -> None:
        self.db = runtime.database
        self.topic = topic
        self._read, self._version, self._interval = read, version, interval
        self._alone = not runtime.settings.replica_id
        self.current: tuple[str, T] | None = None  # valid while the task runs
        self.reads = 0  # reads the task made (many held calls share each)
        self.closed = False
        self._holders = 0
        self._task: asyncio.Task | None = None
        self._waiter: Waiter | None = None
        self._reads_started = 0
        self._changed = asyncio.Event()  # set (and replaced) when the value changes
        self._read_done = asyncio.Event()  # set (and replaced) after each read
        runtime.drain_hooks.append(self.close)

    async def read_now(self) -> tuple[str, T]:
        """The content as the database has it now (no task involved)."""
        value = await self.db.read(self._read)
        return self._version(value), value

    async def poll(self, known: str, wait_seconds: float) -> tuple[str, T]:
        """The (version, value) once the version is not `known`, or when `wait_seconds` end
        (the value then still has version `known`), or at once when `known` is empty, the wait
        is 0 or the service drains."""
        if not known or wait_seconds <= 0 or self.closed:
            return await self.read_now()
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + min(float(wait_seconds), MAX_WAIT_SECONDS)
        self._holders += 1
        try:
            self._start()
            current = self.current
            if current is None or current[0] != known:
                # The task's first read, or one that started after this call came: a caller
                # that is ahead of the task (another replica answered it) is not sent back.
                await self._fresh_read(deadline)
            while not self.closed:
                current, changed = self.current, self._changed
                if current is None or current[0] != known:
                    break  # changed (or the task could not read: answered from a read below)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    break
        finally:
            self._holders -= 1
            held = HELD.get()
            if held is not None:
                held[0] += loop.time() - began
        return self.current if self.current is not None else await self.read_now()

    def close(self) -> None:
        """The service drains: held calls answer now, later ones do not wait; the task ends."""
        self.closed = True
        self._changed.set()
        self._read_done.set()
        if self._waiter is not None:
            self._waiter.wake_threadsafe()

    # ---- the check task ------------------------------------------------------------------------
    def _start(self) -> None:
        if self._task is None or self._task.done():
            self.current = None
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"watch-{self.topic}")

    async def _fresh_read(self, deadline: float) -> None:
        """Until a read that starts from now on has ended (or the deadline, or close)."""
        target = self._reads_started + 1
        if self._waiter is not None:
            self._waiter.wake_threadsafe()
        loop = asyncio.get_running_loop()
        while self.reads < target and not self.closed and not self._task.done():
            done = self._read_done
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(done.wait(), remaining)
            except TimeoutError:
                return

    async def _run(self) -> None:
        waiter = self._waiter = Waiter(self.db.writer, self.topic)
        sqlite = self.db.sqlite_path
        stamp: Stamp | None = None
        idle = 0
        try:
            while not self.closed:
                waiter.clear()  # a commit from here on is read again below
                taken = file_stamp(sqlite) if sqlite is not None else None
                self._reads_started += 1
                try:
                    value = await self.db.read(self._read)
                except Exception:  # noqa: BLE001 - the last value stays; read at the next check
                    log.exception("reading %s for its long polls failed", self.topic)
                    stamp = None
                else:
                    stamp = taken
                    self._publish(self._version(value), value)
                finally:
                    self.reads += 1
                    done, self._read_done = self._read_done, asyncio.Event()
                    done.set()
                while not self.closed:  # until something may have changed
                    woken = await waiter.wait(self._check_seconds())
                    idle = idle + 1 if self._holders == 0 else 0
                    if idle >= _IDLE_CHECKS:
                        return
                    if woken or sqlite is None or stamp is None or _racy(stamp):
                        break
                    if file_stamp(sqlite) != stamp:
                        break
        finally:
            self.current = None
            self._waiter = None
            # Calls still held (the task failed) answer from a read of their own.
            for event in (self._changed, self._read_done):
                event.set()
            self._changed, self._read_done = asyncio.Event(), asyncio.Event()

    def _check_seconds(self) -> float:
        interval = self._interval()
        if self.db.sqlite_path is None and self._alone:
            return max(interval, ALONE_CHECK_SECONDS)
        return interval

    def _publish(self, version: str, value: T) -> None:
        previous = self.current
        self.current = (version, value)
        if previous is None or previous[0] != version:
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
