"""Alembic environment shared by every service. The connection, the schema, the service's
metadata (its tables plus the runtime's) and its versions folders come from
`mesh.runtime.db` / `mesh.runtime.migrations`, so `upgrade`, `revision --autogenerate` and the
drift check all compare against the same models."""

from alembic import context


def _render_item(type_, obj, autogen_context):
    # SQLModel's AutoString is a plain String in the database; render it without sqlmodel.
    if type_ == "type" and type(obj).__name__ == "AutoString":
        return "sa.String()"
    return False


connection = context.config.attributes["connection"]
schema = context.config.attributes.get("schema")
context.configure(connection=connection, version_table_schema=schema,
                  target_metadata=context.config.attributes.get("metadata"),
                  render_as_batch=connection.dialect.name == "sqlite",
                  render_item=_render_item, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
