"""Persistence: one SQLModel engine per service, migrations through Alembic, and sessions that run
in worker threads so database work never blocks the event loop.

SQLite (default): one file per service in the data directory, WAL mode, and every write
transaction opened with `BEGIN IMMEDIATE`, so concurrent read-then-write transactions queue on the
write lock instead of failing with "database is locked" when they upgrade.
PostgreSQL (`AGENTMESH_DATABASE_URL`): one schema per service in the given database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlmodel import Session

from mesh.runtime.settings import Settings

T = TypeVar("T")
# A package resource (`package:dir`), which Alembic resolves itself: works from a wheel too.
_ALEMBIC_DIR = "mesh.runtime:alembic"
_WRITE = "agentmesh_write"


def _sqlite_engine(path: Path) -> sa.Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False,
                                                                "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" event, not pysqlite, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Database:
    """The database of one service."""

    def __init__(self, engine: sa.Engine, schema: str | None, workers: int = 8) -> None:
        self.engine = engine
        self.schema = schema
        self._writer = engine.execution_options(**{_WRITE: True})
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="db")

    @classmethod
    def for_service(cls, service: str, settings: Settings) -> "Database":
        if not settings.database_url:
            return cls(_sqlite_engine(settings.data_dir / f"{service}.db"), schema=None)
        engine = sa.create_engine(
            settings.database_url, pool_pre_ping=True, pool_size=10,
            connect_args={"options": f"-csearch_path={service}"})
        return cls(engine, schema=service)

    def migrate(self, versions_dir: Path | str) -> None:
        """Brings the schema to the newest migration of the service (idempotent)."""
        config = Config()
        config.set_main_option("script_location", _ALEMBIC_DIR)
        config.set_main_option("version_locations", str(versions_dir))
        # Not ":" (os): a location may be a package resource, `mesh.agents:migrations`.
        config.set_main_option("path_separator", "newline")
        with self.engine.begin() as connection:
            if self.schema:
                connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            config.attributes["connection"] = connection
            config.attributes["schema"] = self.schema
            command.upgrade(config, "head")

    def _run(self, engine: sa.Engine, fn: Callable[[Session], T]) -> T:
        with Session(engine, expire_on_commit=False) as session:
            with session.begin():
                return fn(session)

    async def read(self, fn: Callable[[Session], T]) -> T:
        """Runs `fn(session)` in a read transaction on a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run, self.engine, fn)

    async def write(self, fn: Callable[[Session], T]) -> T:
        """Runs `fn(session)` in a write transaction (committed, or rolled back on error)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run, self._writer, fn)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.engine.dispose()
