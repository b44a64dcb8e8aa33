"""The agents migration that brings versions (agents_0005): an agent saved before it gets its
current configuration as its current version, so reads and runs by version find it."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa
from alembic import command

from mesh.agents.service import DEFINITION
from mesh.runtime.db import Database, alembic_config
from mesh.runtime.settings import Settings


def _upgrade(database: Database, target: str) -> None:
    config = alembic_config(DEFINITION.migration_dirs())
    with database.engine.begin() as connection:
        if database.schema:
            connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"')
        config.attributes["connection"] = connection
        config.attributes["schema"] = database.schema
        command.upgrade(config, target)


@pytest.fixture
def database(tmp_path):
    db = Database.for_service("agents", Settings(data_dir=tmp_path))
    yield db
    db.close()


def test_an_agent_saved_before_versions_gets_its_current_version(database):
    _upgrade(database, "runtime@head")   # the runtime's tables (row_counts) exist already
    _upgrade(database, "agents_0004")
    tenant, agent = str(uuid.uuid4()), str(uuid.uuid4())
    with database.engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO agents (id, tenant_id, created_at, updated_at, name, description, "
            "agent_type, model, system_prompt, prompt_id, tools, skills, constraints, config, "
            "labels, status, version, environment, deployments, created_by) VALUES (:id, :t, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'old', 'd', '', 'fast', 'be brief', '', "
            ":tools, '[]', '[]', :config, '{}', 'AGENT_STATUS_ACTIVE', 4, '', 0, 'someone')"),
            {"id": agent, "t": tenant, "tools": json.dumps(["search"]),
             "config": json.dumps({"temperature": 0.2})})
    _upgrade(database, "heads")
    with database.engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT tenant_id, version, agent, created_by FROM agent_versions "
            "WHERE agent_id = :id"), {"id": agent}).all()
        labels = connection.execute(sa.text("SELECT version_labels FROM agents")).scalar_one()
        counted = connection.execute(sa.text(
            "SELECT n FROM row_counts WHERE table_name = 'agent_versions' "
            "AND tenant_id = :t"), {"t": tenant}).scalar_one()
    assert len(rows) == 1 and counted == 1
    tenant_id, version, snapshot, created_by = rows[0]
    snapshot = json.loads(snapshot) if isinstance(snapshot, str) else snapshot
    assert (tenant_id, version, created_by) == (tenant, 4, "someone")
    assert snapshot["system_prompt"] == "be brief" and snapshot["tools"] == ["search"]
    assert snapshot["config"] == {"temperature": 0.2} and snapshot["name"] == "old"
    assert (json.loads(labels) if isinstance(labels, str) else labels) == {}
