"""Platform events leave through each service's outbox (mesh.runtime.platform_events): queued in
the transaction of the change, handed to integration at least once.

Revision ID: runtime_0006
Revises: runtime_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "runtime_0006"
down_revision = "runtime_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "platform_event_outbox",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_platform_event_outbox_due", "platform_event_outbox",
                    ["sent_at", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_platform_event_outbox_due", table_name="platform_event_outbox")
    op.drop_table("platform_event_outbox")
