"""`Database.read/write(fn, inline=True)`: on SQLite a short transaction runs on the event loop's
own connection; one that finds the write lock held never waits on the loop but on a thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from sqlmodel import select

from agentmesh.agents.v1 import agents_pb2 as pb
from mesh.agents.models import AgentRow
from mesh.agents.service import DEFINITION as AGENTS
from mesh.runtime.db import Database, in_turns
from mesh.runtime.repository import TenantRepository
from mesh.runtime.settings import Settings
from mesh.runtime.wakeups import Waiter, mark

repo = TenantRepository(AgentRow, noun="agent", message=pb.Agent)


@pytest.fixture
def database(tmp_path):
    db = Database.for_service("agents", Settings(data_dir=tmp_path))
    db.migrate(AGENTS.migration_dirs())
    yield db
    db.close()


def _add(name: str):
    def add(session):
        repo.add(session, AgentRow(tenant_id="t1", name=name))
        return threading.get_ident()
    return add


def _names(session):
    return sorted(session.exec(select(AgentRow.name)).all())


def test_an_inline_write_runs_on_the_loop_and_is_committed(database):
    async def main():
        ran_on = await database.write(_add("a"), inline=True)
        seen = await database.read(lambda s: (_names(s), threading.get_ident()), inline=True)
        elsewhere = await database.read(_names)  # a worker thread's connection sees it too
        return ran_on, seen, elsewhere

    ran_on, (names, read_on), elsewhere = asyncio.run(main())
    assert ran_on == read_on == threading.get_ident()
    assert names == elsewhere == ["a"]


def test_an_inline_write_that_fails_is_rolled_back_and_raises(database):
    def add_then_fail(session):
        repo.add(session, AgentRow(tenant_id="t1", name="half"))
        session.flush()
        raise ValueError("no")

    async def main():
        with pytest.raises(ValueError):
            await database.write(add_then_fail, inline=True)
        return await database.read(_names, inline=True)

    assert asyncio.run(main()) == []


def test_an_inline_write_finding_the_lock_held_waits_on_a_thread_not_on_the_loop(database):
    """Another connection (a CLI command, say) holds the write lock for a while: the inline
    write goes to a worker thread and waits there; the loop keeps serving meanwhile, and the
    write lands once the lock is released."""
    holder = sqlite3.connect(database.sqlite_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.5, lambda: holder.execute("COMMIT"))

    async def main():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        released.start()
        ran_on = await database.write(_add("late"), inline=True)
        ticker.cancel()
        return ran_on, ticks, await database.read(_names, inline=True)

    try:
        ran_on, ticks, names = asyncio.run(main())
    finally:
        released.join()
        holder.close()
    assert ran_on != threading.get_ident()  # a worker thread
    assert ticks >= 10  # the loop ran while the write waited (~50 ticks in 0.5 s)
    assert names == ["late"]


def test_an_inline_commit_wakes_the_pollers_of_its_database(database):
    """An outbox's poller waits on the database's writer; a commit on the loop's connection that
    queued work for it wakes it as a worker thread's commit does."""
    async def main():
        waiter = Waiter(database.writer, "topic")
        waiter.clear()

        def queue(session):
            repo.add(session, AgentRow(tenant_id="t1", name="queued"))
            mark(session, "topic")
        await database.write(queue, inline=True)
        return await waiter.wait(2.0)

    assert asyncio.run(main()) is True


def test_a_batch_written_in_turns_lets_the_loop_serve_others_between_its_slices():
    """A batch of spans or audit events is written on the loop in slices (`in_turns`): what
    became ready during one slice (a streamed token, say) runs before the next."""
    seen: list = []

    async def main():
        async for part in in_turns(list(range(120)), 50):
            seen.append(len(part))
            if len(seen) == 1:
                asyncio.get_running_loop().call_soon(seen.append, "other")

    asyncio.run(main())
    assert seen == [50, "other", 50, 20]
