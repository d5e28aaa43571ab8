"""Operator intent: the events follower's lease and coverage per Docker daemon, and each
container's last state transition with its cause.

Revision ID: 0010
Revises: 0009

"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events_followers",
        sa.Column("daemon_id", sa.String(length=128), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("lease_until", _TS, nullable=False),
        sa.Column("covered_since", _TS, nullable=True),
        sa.Column("covered_until", _TS, nullable=True),
        sa.Column("windows", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("daemon_id"),
    )
    op.create_table(
        "target_transitions",
        sa.Column("container_id", sa.String(length=64), nullable=False),
        sa.Column("daemon_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("died_at", _TS, nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("operator_request", sa.Text(), nullable=True),
        sa.Column("start_window", _TS, nullable=True),
        sa.Column("window", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("container_id"),
    )
    op.create_index("ix_target_transitions_name", "target_transitions", ["name"])


def downgrade() -> None:
    op.drop_index("ix_target_transitions_name", table_name="target_transitions")
    op.drop_table("target_transitions")
    op.drop_table("events_followers")
