"""Idempotency records belong to a caller (mesh/runtime/idempotency.py): the key becomes
(tenant, caller, method, key), so a replay by another user of the tenant, or by an API key with
other scopes, is never handed the first caller's answer.

The records are a 24-hour cache of answers, and who made the old ones is not known: they are
dropped with the old table rather than guessed at. A retry of a create made just before the
upgrade then runs again.

Revision ID: runtime_0004
Revises: runtime_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "runtime_0004"
down_revision = "runtime_0003"
branch_labels = None
depends_on = None

TABLE = "agentmesh_idempotency_keys"
INDEX = "ix_agentmesh_idempotency_keys_expires_at"


def _create(with_caller: bool) -> None:
    op.create_table(
        TABLE,
        sa.Column("tenant_id", sa.String(), primary_key=True),
        *([sa.Column("caller", sa.String(), primary_key=True)] if with_caller else []),
        sa.Column("method", sa.String(), primary_key=True),
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("request_hash", sa.String(), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(INDEX, TABLE, ["expires_at"])


def upgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.drop_table(TABLE)
    _create(with_caller=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.drop_table(TABLE)
    _create(with_caller=False)
