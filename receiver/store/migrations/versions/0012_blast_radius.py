"""Blast radius: the host each admitted mutating run acted on (action budgets and the host
storm guard count by it), and the host storms in force.

Revision ID: 0012
Revises: 0010 (re-chained after 0011 when both branches are merged)

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("host", sa.String(length=255), nullable=True))
    op.create_index("ix_runs_host_admitted", "runs", ["host", "admitted_at"])
    op.create_table(
        "host_storms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("until", _TS, nullable=False),
        sa.Column("targets", _JSON, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_host_storms_host_until", "host_storms", ["host", "until"])
    op.create_index("ix_host_storms_started_at", "host_storms", ["started_at"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.execute(sa.text(
            "SELECT 1 FROM pg_roles WHERE rolname = 'autofix_grafana'")).scalar():
        # The overview dashboard annotates host storms.
        op.execute("GRANT SELECT ON host_storms TO autofix_grafana")


def downgrade() -> None:
    op.drop_index("ix_host_storms_started_at", table_name="host_storms")
    op.drop_index("ix_host_storms_host_until", table_name="host_storms")
    op.drop_table("host_storms")
    op.drop_index("ix_runs_host_admitted", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("host")
