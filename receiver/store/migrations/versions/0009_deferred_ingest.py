"""A large notification is acknowledged once stored, and its alerts filed later.

Revision ID: 0009
Revises: 0008

"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_PENDING = sa.text("ingest_state = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("ingest_state", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("ingest_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("ingest_attempts", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("ingest_claimed_at", sa.DateTime(timezone=True),
                                   nullable=True))
    op.create_index("ix_notifications_pending", "notifications", ["id"],
                    postgresql_where=_PENDING, sqlite_where=_PENDING)


def downgrade() -> None:
    op.drop_index("ix_notifications_pending", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("ingest_claimed_at")
        batch.drop_column("ingest_attempts")
        batch.drop_column("ingest_error")
        batch.drop_column("ingest_state")
