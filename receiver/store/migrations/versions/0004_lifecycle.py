"""Lifecycle: acknowledge/close, retries, the config a run was planned with, breaker reset.

Revision ID: 0004
Revises: 0003

"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("acknowledged_at", _TS, nullable=True))
        batch.add_column(sa.Column("acknowledged_by", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("closed_at", _TS, nullable=True))
        batch.add_column(sa.Column("closed_by", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("close_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("next_attempt_at", _TS, nullable=True))
        batch.create_index("ix_incidents_next_attempt_at", ["next_attempt_at"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("config_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("current_step", sa.Integer(), nullable=True))
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("step", sa.Integer(), nullable=True))
        batch.create_unique_constraint("uq_actions_run_step", ["run_id", "step"])
    with op.batch_alter_table("breakers") as batch:
        batch.add_column(sa.Column("reset_at", _TS, nullable=True))
    # Incidents no alert will ever resolve (manual runs) were left open by earlier versions.
    op.execute("UPDATE incidents SET status = 'closed', close_reason = 'closed by the 0004 "
               "upgrade: a manual run no alert will resolve' WHERE trigger = 'manual' "
               "AND status IN ('open', 'remediating')")


def downgrade() -> None:
    op.execute("UPDATE incidents SET status = 'escalated' WHERE status IN "
               "('closed', 'acknowledged')")
    with op.batch_alter_table("breakers") as batch:
        batch.drop_column("reset_at")
    with op.batch_alter_table("actions") as batch:
        batch.drop_constraint("uq_actions_run_step", type_="unique")
        batch.drop_column("step")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("current_step")
        batch.drop_column("config_version")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_index("ix_incidents_next_attempt_at")
        for column in ("next_attempt_at", "close_reason", "closed_by", "closed_at",
                       "acknowledged_by", "acknowledged_at"):
            batch.drop_column(column)
