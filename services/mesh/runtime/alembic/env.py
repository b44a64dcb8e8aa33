"""Alembic environment shared by every service: the connection, the schema and the service's
versions folder come from `mesh.runtime.db.Database.migrate`."""

from alembic import context

connection = context.config.attributes["connection"]
schema = context.config.attributes.get("schema")
context.configure(connection=connection, version_table_schema=schema,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
