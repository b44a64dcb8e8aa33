"""Token revocations (published to every service) and login throttling state.

Revision ID: identity_0002
Revises: identity_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "identity_0002"
down_revision = "identity_0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "token_revocations",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("kind", sa.String(), nullable=False),  # user | session
        sa.Column("subject", sa.String(), nullable=False, index=True),
        sa.Column("not_before", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False, index=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(), primary_key=True),  # account:<sha256> | ip:<address>
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("last_failure_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("login_throttle")
    op.drop_table("token_revocations")
