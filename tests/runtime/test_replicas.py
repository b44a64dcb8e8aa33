"""What several replicas (or one replica's worker threads) do at once on PostgreSQL: concurrent
first writes of a tenant keep an exact row count, concurrent migrations of a fresh schema
serialize, and `agentmesh db upgrade` prepares every database and identity's first keys."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import uuid

import sqlalchemy as sa
from sqlmodel import select

from mesh.agents.models import AgentRow
from mesh.agents.service import DEFINITION as AGENTS
from mesh.runtime.db import Database
from mesh.runtime.paging import PageRequest
from mesh.runtime.settings import Settings
from tests.runtime.test_repository import repo


def _postgres_database(postgres_url: str, tmp_path) -> tuple[Database, str]:
    service = f"agents_replicas_{uuid.uuid4().hex[:8]}"
    return Database.for_service(service, Settings(data_dir=tmp_path, database_url=postgres_url)), \
        service


def test_concurrent_first_writes_of_a_tenant_all_succeed_and_count_exactly(postgres_url, tmp_path):
    db, schema = _postgres_database(postgres_url, tmp_path)
    try:
        db.migrate(AGENTS.migration_dirs())
        tenant = uuid.uuid4().hex
        writers = 8
        barrier = threading.Barrier(writers)
        errors = []

        def write(i: int) -> None:
            def add(session):
                barrier.wait(10)  # every transaction is open before any inserts
                return repo.add(session, AgentRow(tenant_id=tenant, name=f"a{i}"))
            try:
                asyncio.run(db.write(add))
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

        threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        page = asyncio.run(repo.page(db, tenant, PageRequest(page=1, page_size=1)))
        assert page.total == writers
    finally:
        db.drop_schema()
        db.close()


def test_replicas_migrating_a_fresh_schema_at_once_do_not_collide(postgres_url, tmp_path):
    schema = f"agents_replicas_{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path, database_url=postgres_url)
    databases = [Database.for_service(schema, settings) for _ in range(3)]
    errors = []

    def migrate(db: Database) -> None:
        try:
            db.migrate(AGENTS.migration_dirs())
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=migrate, args=(db,)) for db in databases]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
    finally:
        databases[0].drop_schema()
        for db in databases:
            db.close()


def test_db_upgrade_migrates_every_service_and_makes_the_first_signing_keys(postgres_url,
                                                                           tmp_path):
    from mesh.identity.models import SigningKeyRow

    name = f"agentmesh_upgrade_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = postgres_url.rsplit("/", 1)[0] + "/" + name
    try:
        env = {"AGENTMESH_DATABASE_URL": url, "AGENTMESH_DATA_DIR": str(tmp_path),
               "PATH": "/usr/bin:/bin"}
        for _ in range(2):  # idempotent: every upgrade runs it again
            result = subprocess.run([sys.executable, "-m", "mesh.cli", "db", "upgrade"],
                                    env=env, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            assert "identity: migrated" in result.stdout and "agents: migrated" in result.stdout
        identity = Database.for_service("identity", Settings(data_dir=tmp_path, database_url=url))
        with identity.session() as session:
            states = sorted(row.state for row in session.exec(select(SigningKeyRow)).all())
        identity.close()
        assert states == ["active", "next"]
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
