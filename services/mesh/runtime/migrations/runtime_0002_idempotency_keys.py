"""The runtime's Idempotency-Key store (mesh/runtime/idempotency.py), in every service.

Revision ID: runtime_0002
Revises: runtime_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "runtime_0002"
down_revision = "runtime_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agentmesh_idempotency_keys",
        sa.Column("tenant_id", sa.String(), primary_key=True),
        sa.Column("method", sa.String(), primary_key=True),
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("request_hash", sa.String(), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_agentmesh_idempotency_keys_expires_at", "agentmesh_idempotency_keys",
                    ["expires_at"])


def downgrade() -> None:
    op.drop_table("agentmesh_idempotency_keys")
