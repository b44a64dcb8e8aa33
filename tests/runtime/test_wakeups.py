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
