"""Tables the runtime keeps in every service's database: per-tenant row counts.

Revision ID: runtime_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "runtime_0001"
down_revision = None
branch_labels = ("runtime",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "row_counts",
        sa.Column("table_name", sa.String(), primary_key=True),
        sa.Column("tenant_id", sa.String(), primary_key=True),
        sa.Column("n", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("row_counts")
