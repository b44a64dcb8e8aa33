"""A poller is woken by the commit that queued its work (mesh.runtime.wakeups), not by its poll:
only a committed transaction marked for its topic, on its own database, wakes it."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa
from sqlmodel import Session

from mesh.runtime.wakeups import Waiter, mark


def _transaction(engine, topic: str, commit: bool = True, savepoints: bool = False) -> None:
    with Session(engine) as session:
        session.begin()
        session.execute(sa.text("SELECT 1"))
        mark(session, topic)
        if savepoints:  # released and rolled back (as a flush that may fail does): no wake yet
            with session.begin_nested():
                session.execute(sa.text("SELECT 1"))
            try:
                with session.begin_nested():
                    raise ValueError("rolled back to the savepoint")
            except ValueError:
                pass
            time.sleep(1.0)
        if commit:
            session.commit()
        else:
            session.rollback()


def test_a_marked_commit_wakes_its_pollers_and_nothing_else(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    other_engine = sa.create_engine(f"sqlite:///{tmp_path / 'b.db'}")

    async def waited(action) -> float:
        waiter = Waiter(engine, "audit")
        waiter.clear()
        begun = time.monotonic()
        await asyncio.gather(waiter.wait(2.0), asyncio.to_thread(action))
        return time.monotonic() - begun

    async def main() -> list[float]:
        return [await waited(lambda: _transaction(engine, "audit")),
                await waited(lambda: _transaction(engine, "audit", commit=False)),
                await waited(lambda: _transaction(engine, "platform_events")),
                await waited(lambda: _transaction(other_engine, "audit"))]

    woken, rolled_back, other_topic, other_database = asyncio.run(main())
    assert woken < 1.0
    assert min(rolled_back, other_topic, other_database) >= 1.9  # waited out the timeout


def test_a_savepoint_neither_wakes_nor_drops_the_marks_of_its_transaction(tmp_path):
    """A repository flush runs in a savepoint (`begin_nested`): releasing it is not the commit
    (nothing is visible yet), and rolling back to it keeps the transaction's marks."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")

    async def main() -> tuple[bool, float]:
        waiter = Waiter(engine, "audit")
        waiter.clear()
        begun = time.monotonic()

        async def woken() -> tuple[bool, float]:
            return await waiter.wait(5.0), time.monotonic() - begun

        found, _ = await asyncio.gather(woken(), asyncio.to_thread(
            lambda: _transaction(engine, "audit", savepoints=True)))
        return found

    woken, after = asyncio.run(main())
    assert woken and 1.0 <= after < 3.0  # at the commit, after the savepoints (not before)


def test_a_burst_of_commits_is_one_wake_up_that_lets_the_burst_settle(tmp_path):
    """An outbox's poller (`settle_seconds`) is woken by the first commit of a burst and returns
    `settle_seconds` later, so that what the rest of the burst commits meanwhile is claimed in
    the same batch; the burst schedules one wake-up on the loop, not one per commit, and a
    commit after `clear` wakes it again."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")

    async def main() -> tuple[bool, float, int, bool]:
        loop = asyncio.get_running_loop()
        waiter = Waiter(engine, "audit", settle_seconds=0.5)
        scheduled = 0
        schedule = loop.call_soon_threadsafe

        def counted(callback, *args, **kwargs):  # the waiter's wake-ups among the loop's own
            nonlocal scheduled
            scheduled += getattr(callback, "__self__", None) is waiter._event
            return schedule(callback, *args, **kwargs)
        loop.call_soon_threadsafe = counted
        waiter.clear()
        begun = time.monotonic()

        def burst() -> None:
            for _ in range(5):
                _transaction(engine, "audit")
        woken, _ = await asyncio.gather(waiter.wait(5.0), asyncio.to_thread(burst))
        after = time.monotonic() - begun
        waiter.clear()
        await asyncio.to_thread(_transaction, engine, "audit")
        again = await waiter.wait(2.0)
        return woken, after, scheduled, again

    woken, after, scheduled, again = asyncio.run(main())
    assert woken and 0.5 <= after < 2.0
    assert scheduled == 2  # the burst's one wake-up, and the commit after clear()
    assert again
