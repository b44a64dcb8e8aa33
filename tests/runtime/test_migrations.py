"""Every service's models are what its migrations build: a model changed without a migration
fails here (run `agentmesh db revision <service> -m "..."` to write one)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from mesh import catalog, migrations
from mesh.runtime.service import ServiceDefinition

SERVICES_WITH_TABLES = [n for n in catalog.names() if catalog.definition(n).tables]


def test_some_services_have_tables():
    assert {"agents", "identity"} <= set(SERVICES_WITH_TABLES)


@pytest.mark.parametrize("service", SERVICES_WITH_TABLES)
def test_migrations_build_the_models_on_sqlite(service):
    assert migrations.drift(service) == []


@pytest.mark.parametrize("service", SERVICES_WITH_TABLES)
def test_migrations_build_the_models_on_postgres(service, postgres_url):
    assert migrations.drift(service, postgres_url) == []


def test_a_column_added_without_a_migration_is_drift(monkeypatch):
    agents = catalog.definition("agents")
    metadata = agents.metadata()
    metadata.tables["agents"].append_column(sa.Column("shiny_new_column", sa.String(),
                                                      nullable=False, server_default=""))
    monkeypatch.setattr(ServiceDefinition, "metadata", lambda self: metadata)
    added = [d for d in migrations.drift("agents")
             if d[0] == "add_column" and d[3].name == "shiny_new_column"]
    assert added, "the new column went unnoticed"
