"""Waking a local poller when a transaction that queued work for it commits.

The outbox-style loops of the runtime (the audit forwarder, the platform-events sender) used to
look for new rows every second, each a write transaction, in every service: at idle that was
most of what the services process did. Now the code that adds such rows marks the session
(`mark(session, topic)`), and when that transaction commits, the poller of that topic on the
same database is woken (`Waiter.wait`); its own slow poll is left only for what no local commit
announces (a retry after a failure, rows left by a process that stopped).

The long polls of the runtime (`mesh.runtime.watch`) use the same marks to answer their held
calls when a change commits.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from sqlalchemy import event as sa_event
from sqlmodel import Session

_INFO_KEY = "wake_topics"
# How long an outbox's poller lets a burst of commits gather before it claims them: the
# delay it adds to forwarding an audit event or sending a platform event.
OUTBOX_SETTLE_SECONDS = 0.2
# (engine, topic) -> the waiters on it, each with its loop (commits happen on worker threads).
_waiters: dict[tuple[int, str], weakref.WeakSet] = {}
# An engine committing to another's database (mesh.runtime.db's connection on the event loop)
# -> the engine whose waiters its commits wake.
_same_as: dict[int, int] = {}
_installed = False


def same_database(engine: Any, as_engine: Any) -> None:
    """Commits through `engine` wake the waiters registered on `as_engine`."""
    _same_as[id(engine)] = id(as_engine)
    weakref.finalize(engine, _same_as.pop, id(engine), None)


def mark(session: Session, topic: str) -> None:
    """This transaction queues work for `topic`: wake its pollers when it commits."""
    session.info.setdefault(_INFO_KEY, set()).add(topic)


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the transaction goes on
        return
    topics = session.info.pop(_INFO_KEY, None)
    if not topics:
        return
    key = id(session.get_bind())
    key = _same_as.get(key, key)
    for topic in topics:
        for waiter in list(_waiters.get((key, topic), ())):
            waiter.wake_threadsafe()


def _after_rollback(session: Session) -> None:
    if session.in_nested_transaction():  # back to a savepoint: the marks stand
        return
    session.info.pop(_INFO_KEY, None)


def _install() -> None:
    global _installed
    if not _installed:
        sa_event.listen(Session, "after_commit", _after_commit)
        sa_event.listen(Session, "after_rollback", _after_rollback)
        _installed = True


class Waiter:
    """Wakes when a transaction on `engine` marked for `topic` commits. With `settle_seconds`,
    a wait that is woken lasts that much longer, so that the commits of a burst are handled in
    one batch (an outbox's claim, send and mark cost about as much for one row as for fifty)."""

    def __init__(self, engine: Any, topic: str, settle_seconds: float = 0.0) -> None:
        _install()
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._woken = False  # a wake-up is on its way to the loop: the next commits need none
        self.settle_seconds = settle_seconds
        _waiters.setdefault((id(engine), topic), weakref.WeakSet()).add(self)

    def wake_threadsafe(self) -> None:
        # Called by every commit of the topic; each call_soon_threadsafe writes to the loop's
        # wake-up pipe. A race with clear() costs at most one spare wake-up.
        if not self._woken:
            self._woken = True
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> bool:
        """Until woken (since the last `clear`) or `timeout` seconds; whether it was woken."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        if self.settle_seconds:
            await asyncio.sleep(self.settle_seconds)
        return True

    def clear(self) -> None:
        """Call before looking for work: a commit from then on ends the next wait."""
        self._woken = False
        self._event.clear()
