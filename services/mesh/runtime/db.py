"""Persistence: one database per service, migrations through Alembic, and two ways to run work.

* `write(fn)` / `read(fn)`: `fn(session)` in a SQLModel session on a worker thread, in one
  transaction, so database work never blocks the event loop. Writers on SQLite open with
  `BEGIN IMMEDIATE`: concurrent read-then-write transactions queue on the write lock instead of
  failing with "database is locked" when they upgrade. On SQLite, `inline=True` runs a short
  transaction of a hot path (a few rows by key: an execution's insert, a batch of decisions or
  spans) on the event loop itself: on a worker thread every statement hands the GIL to the
  busy loop and back, context switches each way, which cost more than the transaction itself
  (docs/budgets.md). It never waits on the loop: when another connection holds the write lock,
  it runs on a thread as any other.
* `fetch(sql, params, inline=...)`: the hot read path. A statement planned once (see
  `mesh.runtime.repository`) runs on a raw DB-API connection, no ORM, no session. On SQLite,
  short indexed reads (a row by key, one page through an index) run inline on the event loop on
  a read-only connection: they take tens of microseconds, less than the hop to a thread. WAL
  readers never wait for writers, so inline reads cannot stall the loop behind a write.
  Anything that may scan (search, filtered counts) passes `inline=False` and runs on the pool.

SQLite (default): one file per service in the data directory, WAL mode.
PostgreSQL (`AGENTMESH_DATABASE_URL`): one schema per service in the given database; every
read runs on the pool (a network round trip must not block the loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import Session

from mesh.runtime import wakeups
from mesh.runtime.settings import Settings

T = TypeVar("T")
_WRITE = "agentmesh_write"
WORKERS = 8
_SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA foreign_keys=ON",
                   "PRAGMA busy_timeout=30000", "PRAGMA synchronous=NORMAL")
# The event loop's own connection never waits for a lock: busy, the work goes to a thread.
_NEVER_WAIT = "PRAGMA busy_timeout=0"


def _sqlite_engine(path: Path, on_loop: bool = False) -> sa.Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One pooled connection per worker thread, kept open: reconnecting reruns the PRAGMAs.
    # The loop's engine: one connection (its transactions never overlap; two in reserve).
    engine = sa.create_engine(f"sqlite:///{path}", pool_size=1 if on_loop else WORKERS + 2,
                              max_overflow=2 if on_loop else 0,
                              connect_args={"check_same_thread": False,
                                            "timeout": 0 if on_loop else 30})
    pragmas = (*_SQLITE_PRAGMAS, _NEVER_WAIT) if on_loop else _SQLITE_PRAGMAS

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" event, not pysqlite, decide how transactions start.
        dbapi_connection.isolation_level = None
        for pragma in pragmas:
            dbapi_connection.execute(pragma)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        # On the driver's connection: through exec_driver_sql, SQLAlchemy's statement machinery
        # cost more than the BEGIN itself, on every transaction.
        connection.connection.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Database:
    """The database of one service."""

    def __init__(self, engine: sa.Engine, schema: str | None, sqlite_path: Path | None = None,
                 workers: int = WORKERS) -> None:
        self.engine = engine
        self.schema = schema
        self.sqlite_path = sqlite_path
        self.writer = engine.execution_options(**{_WRITE: True})
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="db")
        self._inline: sqlite3.Connection | None = None
        # SQLite: the engines (reader, writer) of `inline` sessions, made at the first.
        self._on_loop: tuple[sa.Engine, sa.Engine] | None = None
        self._local = threading.local()

    @classmethod
    def for_service(cls, service: str, settings: Settings, schema: str = "") -> "Database":
        """The service's SQLite file, or its schema (`schema` or the service's name)."""
        if not settings.database_url:
            path = settings.data_dir / f"{service}.db"
            return cls(_sqlite_engine(path), schema=None, sqlite_path=path)
        schema = schema or service
        engine = sa.create_engine(
            settings.database_url, pool_pre_ping=True, pool_size=WORKERS + 2,
            connect_args={"options": f"-csearch_path={schema}"})
        return cls(engine, schema=schema)

    def drop_schema(self) -> None:
        """Removes a PostgreSQL schema made for a test or a check."""
        if self.schema:
            with self.engine.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    @property
    def placeholder(self) -> str:
        """The DB-API parameter marker of this database (`?` or `%s`)."""
        return "?" if self.sqlite_path is not None else "%s"

    # ---- migrations ------------------------------------------------------------------------
    def migrate(self, versions_dirs: Sequence[Path]) -> None:
        """Brings the schema to the newest migration of every branch (idempotent)."""
        from alembic import command

        config = alembic_config(versions_dirs)
        with self.engine.begin() as connection:
            if self.schema:
                # Replicas (pods) starting together migrate one at a time; the others then find
                # the schema at its newest revision. Held until this transaction ends.
                connection.exec_driver_sql(
                    "SELECT pg_advisory_xact_lock(hashtext(%(key)s))",
                    {"key": f"agentmesh-migrate:{self.schema}"})
                connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            config.attributes["connection"] = connection
            config.attributes["schema"] = self.schema
            command.upgrade(config, "heads")

    def revisions(self) -> list[str]:
        """The Alembic revisions the database is at (one per migration branch), sorted."""
        with self.engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        return sorted(r[0] for r in rows)

    # ---- sessions on the pool ---------------------------------------------------------------
    def _run(self, engine: sa.Engine, fn: Callable[[Session], T]) -> T:
        with Session(engine, expire_on_commit=False) as session:
            with session.begin():
                return fn(session)

    async def read(self, fn: Callable[[Session], T], *, inline: bool = False) -> T:
        """Runs `fn(session)` in a read transaction on a worker thread (`inline`: on SQLite,
        on the loop; for a few rows by key)."""
        if inline and self.sqlite_path is not None:
            ran, result = self._run_on_loop(fn, write=False)
            if ran:
                return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run, self.engine, fn)

    async def write(self, fn: Callable[[Session], T], *, inline: bool = False) -> T:
        """Runs `fn(session)` in a write transaction (committed, or rolled back on error), in
        the caller's context (the call being served: who the audit trail names). `inline`: on
        SQLite, on the loop when the write lock is free (a short transaction of a hot path)."""
        if inline and self.sqlite_path is not None:
            ran, result = self._run_on_loop(fn, write=True)
            if ran:
                return result
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._pool, context.run, self._run, self.writer, fn)

    def _run_on_loop(self, fn: Callable[[Session], T], write: bool) -> tuple[bool, T | None]:
        """(True, what `fn` returned) run on the loop's connection, or (False, None) when the
        database was busy (another connection holds the write lock) before a write's `fn` ran,
        or at any point of a read."""
        if self._on_loop is None:
            engine = _sqlite_engine(self.sqlite_path, on_loop=True)
            self._on_loop = (engine, engine.execution_options(**{_WRITE: True}))
            # Its commits wake the pollers of this database (outboxes, long polls) as the
            # pool's do.
            wakeups.same_database(self._on_loop[1], self.writer)
        engine = self._on_loop[write]
        began = False

        def body(session: Session) -> T:
            nonlocal began
            session.connection()  # BEGIN (IMMEDIATE): busy here, nothing has run yet
            began = True
            return fn(session)
        try:
            return True, self._run(engine, body)
        except (sa.exc.OperationalError, sqlite3.OperationalError) as exc:
            if (began and write) or not _busy(exc):
                raise
            return False, None

    def session(self, write: bool = False) -> Session:
        """A session for synchronous tools (CLI commands), outside any service."""
        return Session(self.writer if write else self.engine, expire_on_commit=False)

    # ---- the hot read path ------------------------------------------------------------------
    def _sqlite_reader(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.sqlite_path, check_same_thread=False,
                                     isolation_level=None, cached_statements=512)
        for pragma in (*_SQLITE_PRAGMAS, "PRAGMA query_only=ON"):
            connection.execute(pragma)
        return connection

    def _fetch_on_thread(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple]]:
        if self.sqlite_path is not None:
            connection = getattr(self._local, "reader", None)
            if connection is None:
                connection = self._local.reader = self._sqlite_reader()
            return _run_statements(connection, statements)
        raw = self.engine.raw_connection()
        try:  # psycopg opens a transaction at the first statement: one snapshot for all
            connection = raw.driver_connection
            return [connection.execute(sql, params).fetchall() for sql, params in statements]
        finally:
            raw.rollback()
            raw.close()

    async def fetch(self, *statements: tuple[str, Sequence[Any]],
                    inline: bool = False) -> list[list[tuple]]:
        """Runs read statements (SQL, parameters) in one snapshot; one list of rows each."""
        if inline and self.sqlite_path is not None:
            if self._inline is None:
                self._inline = self._sqlite_reader()
            return _run_statements(self._inline, statements)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._fetch_on_thread, statements)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._inline is not None:
            self._inline.close()
        if self._on_loop is not None:
            self._on_loop[0].dispose()
        self.engine.dispose()


# An inline transaction writes about this many rows at most: a batch (spans, audit events) is
# written in slices of it, the loop serving its other calls between them (`in_turns`); one
# transaction of hundreds of rows held the loop for milliseconds (a streamed token waited).
INLINE_ROWS = 20
# Between two steps of background work on the loop (a batch's slices, an outbox's claim and
# its marks) it serves its other calls for this long, not for one turn: a call in flight takes
# many turns (each await one), and a slice in every one of them added up to milliseconds on a
# streamed reply's first token.
BACKGROUND_PAUSE = 0.002


async def pause() -> None:
    """Lets the loop serve its calls before background work goes on (`BACKGROUND_PAUSE`)."""
    await asyncio.sleep(BACKGROUND_PAUSE)


async def in_turns(rows: Sequence[T], size: int = INLINE_ROWS) -> AsyncIterator[Sequence[T]]:
    """`rows` in slices of `size`, the event loop's calls served between them (`pause`)."""
    for start in range(0, len(rows), size):
        if start:
            await pause()
        yield rows[start:start + size]


def _busy(exc: Exception) -> bool:
    """Whether SQLite refused for a lock another connection holds (SQLITE_BUSY/LOCKED)."""
    error = getattr(exc, "orig", exc)
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


def serialize(session: Session, name: str) -> None:
    """Makes the rest of this write transaction exclusive among every replica doing the same
    `name`: a PostgreSQL advisory lock held until commit. On SQLite, where one process writes
    at a time and a write transaction already excludes the others, there is nothing to do. For
    check-then-insert work that replicas starting together would otherwise both do."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                        {"name": f"agentmesh:{name}"})


def _run_statements(connection: sqlite3.Connection,
                    statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple]]:
    if len(statements) == 1:  # one statement is its own snapshot
        sql, params = statements[0]
        return [connection.execute(sql, params).fetchall()]
    connection.execute("BEGIN")
    try:
        return [connection.execute(sql, params).fetchall() for sql, params in statements]
    finally:
        connection.execute("COMMIT")


def alembic_config(versions_dirs: Sequence[Path]):
    """Alembic's configuration for a service: the shared env.py, the service's versions folder
    and the runtime's own (the tables every service has)."""
    from alembic.config import Config

    config = Config()
    script_location = resources.files("mesh.runtime") / "alembic"
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("version_locations", " ".join(str(d) for d in versions_dirs))
    config.set_main_option("path_separator", "space")
    return config
