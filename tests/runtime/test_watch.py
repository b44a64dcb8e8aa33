"""Long polls on the server (mesh.runtime.watch), on SQLite and PostgreSQL: a held call answers
at once when a marked commit of this process changes the content, within about the check
interval when another connection (another process) writes it, and at once when the service
drains; however many calls are held, one read serves them all. The watches here are a named
replica's (other replicas may write); the only replica on PostgreSQL checks every
ALONE_CHECK_SECONDS."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import sqlalchemy as sa

from mesh.runtime.db import Database
from mesh.runtime.service import Runtime
from mesh.runtime.settings import Settings
from mesh.runtime.wakeups import mark
from mesh.runtime.watch import Watched

INTERVAL = 0.3
TOPIC = "items"


def _names(session) -> tuple[str, ...]:
    return tuple(session.execute(sa.text("SELECT name FROM items ORDER BY name")).scalars())


def _version(names: tuple[str, ...]) -> str:
    return "v:" + ",".join(names)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """A database with a table `items`, and an engine of its own that writes it as another
    process would (no marks, no shared pool)."""
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path, database_url="")
        db = Database.for_service("watched", settings)
        other = sa.create_engine(f"sqlite:///{db.sqlite_path}")
    else:
        url = request.getfixturevalue("postgres_url")
        schema = f"watch_{uuid.uuid4().hex[:8]}"
        settings = Settings(data_dir=tmp_path, database_url=url)
        db = Database.for_service(schema, settings)
        with db.engine.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        other = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    with db.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE items (name VARCHAR(40) PRIMARY KEY)")
    db.kind = request.param
    db.other = other
    try:
        yield db
    finally:
        other.dispose()
        db.drop_schema()
        db.close()


def _watched(db: Database, interval: float = INTERVAL,
             replica_id: str = "watched-0") -> tuple[Watched, Runtime]:
    runtime = Runtime("watched", Settings(replica_id=replica_id), None, db)
    return Watched(runtime, TOPIC, _names, _version, lambda: interval), runtime


def _insert_marked(db: Database, name: str):
    def insert(session) -> None:
        session.execute(sa.text("INSERT INTO items (name) VALUES (:name)"), {"name": name})
        mark(session, TOPIC)
    return db.write(insert)


def _insert_elsewhere(db: Database, name: str) -> None:
    with db.other.begin() as connection:
        connection.execute(sa.text("INSERT INTO items (name) VALUES (:name)"), {"name": name})


async def _timed(coroutine) -> tuple[float, object]:
    began = time.monotonic()
    result = await coroutine
    return time.monotonic() - began, result


def test_an_empty_version_or_no_wait_answers_at_once(database):
    async def scenario():
        watched, _ = _watched(database)
        now = await watched.poll("", 20)
        other = await watched.poll("v:someone-else", 0)
        return now, other

    now, other = asyncio.run(scenario())
    assert now == ("v:", ()) and other == ("v:", ())


def test_a_held_call_answers_when_a_commit_of_this_process_changes_the_content(database):
    async def scenario():
        watched, _ = _watched(database, interval=30)  # no check comes: only the commit
        version, _ = await watched.poll("", 0)
        held = asyncio.create_task(_timed(watched.poll(version, 20)))
        await asyncio.sleep(1.0)  # held: nothing changed
        assert not held.done()
        began = time.monotonic()
        await _insert_marked(database, "a")
        elapsed, answer = await held
        return time.monotonic() - began, elapsed, answer

    after_commit, held_for, answer = asyncio.run(scenario())
    assert answer == ("v:a", ("a",))
    assert after_commit < 0.5, after_commit
    assert held_for >= 1.0


def test_a_change_written_by_another_process_is_seen_within_the_interval(database):
    async def scenario():
        watched, _ = _watched(database)
        version, _ = await watched.poll("", 0)
        held = asyncio.create_task(watched.poll(version, 20))
        await asyncio.sleep(2.5)  # past SQLite's window for a file written just now
        assert not held.done()
        began = time.monotonic()
        await asyncio.to_thread(_insert_elsewhere, database, "b")
        answer = await held
        return time.monotonic() - began, answer

    elapsed, answer = asyncio.run(scenario())
    assert answer == ("v:b", ("b",))
    assert elapsed < INTERVAL * 3 + 0.5, elapsed


def test_a_held_call_ends_with_its_wait_and_answers_the_same_version(database):
    async def scenario():
        watched, _ = _watched(database)
        version, _ = await watched.poll("", 0)
        return version, await _timed(watched.poll(version, 1))

    version, (elapsed, answer) = asyncio.run(scenario())
    assert answer == (version, ()) and 0.9 <= elapsed < 2.0


def test_a_caller_ahead_of_the_watch_gets_the_database_not_an_older_value(database):
    """A version from another replica that saw a change first: the call reads again rather
    than answering the older value the task holds."""
    async def scenario():
        watched, _ = _watched(database)
        first, _ = await watched.poll("", 0)
        holding = asyncio.create_task(watched.poll(first, 20))  # the task runs, holds "v:"
        await asyncio.sleep(2.5)
        await asyncio.to_thread(_insert_elsewhere, database, "c")
        newer, _ = await watched.read_now()  # what another replica would have answered
        answer = await asyncio.wait_for(watched.poll(newer, 0.5), 5)
        await holding
        return newer, answer

    newer, answer = asyncio.run(scenario())
    assert newer == "v:c" and answer[0] == "v:c"


def test_draining_answers_held_calls_at_once_and_later_ones_without_waiting(database):
    async def scenario():
        watched, runtime = _watched(database)
        version, _ = await watched.poll("", 0)
        held = [asyncio.create_task(watched.poll(version, 30)) for _ in range(5)]
        await asyncio.sleep(0.5)
        began = time.monotonic()
        for hook in runtime.drain_hooks:  # what RunningService.stop runs before the grace
            hook()
        answers = await asyncio.wait_for(asyncio.gather(*held), 5)
        drained = time.monotonic() - began
        later, _ = await _timed(watched.poll(version, 30))
        return version, answers, drained, later

    version, answers, drained, later = asyncio.run(scenario())
    assert answers == [(version, ())] * 5
    assert drained < 0.5 and later < 0.5


def test_many_held_calls_share_one_read_per_change_and_per_check(database):
    async def scenario():
        watched, _ = _watched(database)
        version, _ = await watched.poll("", 0)
        held = [asyncio.create_task(watched.poll(version, 30)) for _ in range(50)]
        await asyncio.sleep(2.5)  # SQLite: past the window of a file written just now
        before = watched.reads
        await asyncio.sleep(INTERVAL * 6)  # six checks, nothing written
        idle_reads = watched.reads - before
        await _insert_marked(database, "d")
        answers = await asyncio.wait_for(asyncio.gather(*held), 5)
        return before, idle_reads, answers, watched.reads

    before, idle_reads, answers, reads = asyncio.run(scenario())
    assert answers == [("v:d", ("d",))] * 50
    # The first read and those of the checks after it: one per check at most, not one per call.
    assert before <= 2.5 / INTERVAL + 2, before
    assert idle_reads <= 7, idle_reads
    assert reads - before - idle_reads <= 2  # the commit's read (and a check's), not 50


def test_idle_checks_read_nothing_on_sqlite_and_once_per_interval_on_postgres(database):
    async def scenario():
        watched, _ = _watched(database)
        version, _ = await watched.poll("", 0)
        held = [asyncio.create_task(watched.poll(version, 30)) for _ in range(20)]
        await asyncio.sleep(2.5)
        before = watched.reads
        await asyncio.sleep(INTERVAL * 10)
        after = watched.reads
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        return after - before

    reads = asyncio.run(scenario())
    if database.kind == "sqlite":
        assert reads == 0
    else:  # about one per interval, whatever the number of held calls
        assert 5 <= reads <= 12, reads


def test_the_only_replica_checks_every_alone_check_on_postgres(database, monkeypatch):
    """No replica id: no other replica writes. On PostgreSQL a check (a read) comes every
    ALONE_CHECK_SECONDS, not every interval; a marked commit still answers at once; SQLite
    keeps its interval (a check there is two stat calls)."""
    from mesh.runtime import watch

    monkeypatch.setattr(watch, "ALONE_CHECK_SECONDS", 2.0)

    async def scenario():
        watched, _ = _watched(database, interval=0.1, replica_id="")
        version, _ = await watched.poll("", 0)
        held = asyncio.create_task(watched.poll(version, 20))
        await asyncio.sleep(2.5)  # past SQLite's window for a file written just now
        before = watched.reads
        await asyncio.sleep(1.0)  # ten intervals
        idle_reads = watched.reads - before
        await asyncio.to_thread(_insert_elsewhere, database, "c")
        elapsed, answer = await _timed(held)
        version = answer[0]
        held = asyncio.create_task(watched.poll(version, 20))
        await asyncio.sleep(0.5)
        after_commit, answer = await _timed(asyncio.gather(_insert_marked(database, "d"), held))
        return idle_reads, elapsed, after_commit, answer[1]

    idle_reads, elapsed, after_commit, answer = asyncio.run(scenario())
    assert answer == ("v:c,d", ("c", "d"))
    assert after_commit < 0.5, after_commit
    if database.kind == "sqlite":
        assert idle_reads == 0 and elapsed < 0.5, elapsed
    else:  # another process's write: at the next check, 2 s at most
        assert idle_reads == 0 and elapsed < 2.5, elapsed
