"""Run lanes and priority; notification groups, whose one message replaces one per alert.

Revision ID: 0006
Revises: 0005

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "alert_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("receiver", sa.String(length=1024), nullable=False),
        sa.Column("group_labels", _JSON, nullable=False),
        sa.Column("external_url", sa.Text(), nullable=False),
        sa.Column("firing", sa.Integer(), nullable=False),
        sa.Column("resolved", sa.Integer(), nullable=False),
        sa.Column("summary", _JSON, nullable=False),
        sa.Column("first_seen", _TS, nullable=False),
        sa.Column("last_seen", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("ix_alert_groups_last_seen", "alert_groups", ["last_seen"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("lane", sa.String(length=8), nullable=False,
                                   server_default="act"))
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.create_index("ix_runs_status_lane", ["status", "lane"])
    with op.batch_alter_table("notification_outbox") as batch:
        batch.alter_column("incident_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("group_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_outbox_group", "alert_groups", ["group_id"], ["id"],
                                 ondelete="CASCADE")
        batch.create_index("ix_notification_outbox_group_id", ["group_id"])


def downgrade() -> None:
    op.execute("DELETE FROM notification_outbox WHERE incident_id IS NULL")
    with op.batch_alter_table("notification_outbox") as batch:
        batch.drop_index("ix_notification_outbox_group_id")
        batch.drop_constraint("fk_outbox_group", type_="foreignkey")
        batch.drop_column("group_id")
        batch.alter_column("incident_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_status_lane")
        batch.drop_column("priority")
        batch.drop_column("lane")
    op.drop_index("ix_alert_groups_last_seen", table_name="alert_groups")
    op.drop_table("alert_groups")
