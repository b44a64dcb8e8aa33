"""Migrations written from the models and checked against them (`agentmesh db revision`,
`agentmesh db check`, tests/runtime/test_migrations.py).

Both start from a fresh database migrated to the newest revision of the service (and the
runtime's own branch) and compare it with the service's tables (`ServiceDefinition.metadata`):
`revision` writes the difference as a new migration in `mesh/<service>/migrations/`, `drift`
returns it so that a model changed without a migration fails CI.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mesh import catalog
from mesh.runtime.db import Database, alembic_config
from mesh.runtime.settings import Settings


def _fresh(service: str, tmp: str, database_url: str = "") -> Database:
    """A new, empty database migrated to head: a file in `tmp`, or a throwaway schema."""
    settings = Settings(data_dir=Path(tmp), database_url=database_url)
    database = Database.for_service(service, settings,
                                    schema=f"{service}_check_{uuid.uuid4().hex[:8]}")
    database.migrate(catalog.definition(service).migration_dirs())
    return database


def drift(service: str, database_url: str = "") -> list[Any]:
    """What differs between a freshly migrated database and the service's models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    definition = catalog.definition(service)
    with tempfile.TemporaryDirectory() as tmp:
        database = _fresh(service, tmp, database_url)
        try:
            with database.engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={
                    "compare_type": True, "version_table_schema": database.schema,
                    "include_schemas": False,
                    # Alembic's own bookkeeping table is not a model.
                    "include_name": lambda name, kind, _: name != "alembic_version"})
                return compare_metadata(context, definition.metadata())
        finally:
            database.drop_schema()
            database.close()


def revision(service: str, message: str) -> Path | None:
    """Writes the next migration of `service` from its models; None when nothing changed."""
    from alembic import command

    if not drift(service):
        return None
    definition = catalog.definition(service)
    own = Path(str(definition.migration_dirs()[-1]))
    if own.parent.name != service:  # the service has no migrations folder yet
        own = Path(catalog.__file__).parent / service / "migrations"
        own.mkdir(parents=True, exist_ok=True)
    existing = sorted(own.glob("*.py"))
    number = len([p for p in existing if p.name[:4].isdigit()]) + 1
    with tempfile.TemporaryDirectory() as tmp:
        database = _fresh(service, tmp)
        try:
            config = alembic_config(list(dict.fromkeys([*definition.migration_dirs(), own])))
            with database.engine.begin() as connection:
                config.attributes.update(connection=connection, schema=None,
                                         metadata=definition.metadata())
                script = command.revision(
                    config, message=message, autogenerate=True,
                    rev_id=f"{service}_{number:04d}", version_path=str(own),
                    head=f"{service}@head" if existing else "base",
                    branch_label=None if existing else service)
        finally:
            database.close()
    written = Path(script.path)
    target = written.with_name(f"{number:04d}_{written.name.split('_', 2)[-1]}")
    written.rename(target)
    return target


