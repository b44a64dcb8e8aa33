"""DBOS's background jobs on PostgreSQL: the only replica runs them without their lock, a
transaction DBOS keeps open through each interval (its idle timeout ended that session, and
PostgreSQL started a new backend, every 10-45 s of an idle mesh); replicas keep the lock."""

from __future__ import annotations

import hashlib
import time

import pytest
import sqlalchemy as sa

from mesh.workflows.service import DEFINITION
from tests.harness import ServiceHarness
from tests.workflows.conftest import _drop_schemas


def _background_lock_seen(url: str, seconds: float) -> bool:
    """Whether the engine's background-jobs advisory lock (DBOS's key: the leading 8 bytes of
    SHA-256 of its name) is held at any moment of `seconds`."""
    from dbos._dbos import _get_dbos_instance

    sys_db = _get_dbos_instance()._sys_db
    name = f"dbos.background_job.{sys_db.schema}.{sys_db.app_name or ''}.background_jobs"
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    key &= 0xFFFFFFFFFFFFFFFF  # pg_locks shows the two halves as unsigned oids
    engine = sa.create_engine(url)
    try:
        deadline = time.monotonic() + seconds
        with engine.connect() as connection:
            while time.monotonic() < deadline:
                held = connection.execute(sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = :high AND objid = :low AND objsubid = 1"),
                    {"high": key >> 32, "low": key & 0xFFFFFFFF}).scalar()
                connection.rollback()
                if held:
                    return True
                time.sleep(0.1)
        return False
    finally:
        engine.dispose()


@pytest.mark.parametrize("replica_id,locked", [("", False), ("replica-1", True)],
                         ids=["only-replica", "one-of-replicas"])
def test_the_only_replica_runs_background_jobs_without_a_lock(replica_id, locked, postgres_url,
                                                             tmp_path):
    _drop_schemas(postgres_url)
    try:
        with ServiceHarness(DEFINITION, tmp_path, database_url=postgres_url,
                            replica_id=replica_id):
            assert _background_lock_seen(postgres_url, 4.0) is locked
    finally:
        _drop_schemas(postgres_url)
