"""The audit trail captures every change (mesh.runtime.audit): the API key a change was made
with, the resource before and after it, and its forwarding to observability.

Revision ID: runtime_0005
Revises: runtime_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "runtime_0005"
down_revision = "runtime_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("api_key_id", sa.String(), server_default="",
                                   nullable=False))
        batch.add_column(sa.Column("before", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("after", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("forwarded_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("next_forward_at", sa.DateTime(timezone=True),
                                   nullable=True))
    op.create_index("ix_audit_events_forwarded_at", "audit_events",
                    ["forwarded_at", "next_forward_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_forwarded_at", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        for column in ("next_forward_at", "forwarded_at", "after", "before", "api_key_id"):
            batch.drop_column(column)
