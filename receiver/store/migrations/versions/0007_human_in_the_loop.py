"""Human in the loop: the kill switch (pause periods), approvals of runs, and the Slack
interaction requests seen (so that a replayed one is refused).

Revision ID: 0007
Revises: 0006

"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pauses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("paused_at", _TS, nullable=False),
        sa.Column("paused_by", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("until", _TS, nullable=True),
        sa.Column("resumed_at", _TS, nullable=True),
        sa.Column("resumed_by", sa.String(length=255), nullable=True),
        # 1 while the pause is in force, NULL after: the unique constraint allows one.
        sa.Column("active", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("active", name="uq_pauses_active"),
    )
    op.create_index("ix_pauses_paused_at", "pauses", ["paused_at"])
    op.create_table(
        "slack_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("signature", name="uq_slack_requests_signature"),
    )
    op.create_index("ix_slack_requests_received_at", "slack_requests", ["received_at"])
    with op.batch_alter_table("runs") as batch:
        # "awaiting_approval" is longer than the 16 characters statuses had.
        batch.alter_column("status", existing_type=sa.String(length=16),
                           type_=sa.String(length=32), existing_nullable=False)
        batch.add_column(sa.Column("approval_due_at", _TS, nullable=True))
        batch.add_column(sa.Column("decided_at", _TS, nullable=True))
        batch.add_column(sa.Column("decided_by", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("decision", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("decision_comment", sa.Text(), nullable=True))
        batch.create_index("ix_runs_approval_due_at", ["approval_due_at"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_approval_due_at")
        for column in ("decision_comment", "decision", "decided_by", "decided_at",
                       "approval_due_at"):
            batch.drop_column(column)
    # Runs in the new states cannot be kept by the old code: they end as skipped.
    op.execute("UPDATE runs SET status = 'skipped' WHERE status IN "
               "('awaiting_approval', 'denied', 'expired')")
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("status", existing_type=sa.String(length=32),
                           type_=sa.String(length=16), existing_nullable=False)
    op.drop_index("ix_slack_requests_received_at", table_name="slack_requests")
    op.drop_table("slack_requests")
    op.drop_index("ix_pauses_paused_at", table_name="pauses")
    op.drop_table("pauses")
