"""Evidence captured before actions, and the incident's classification.

Revision ID: 0008
Revises: 0006 (re-chained after 0007 when both branches are merged)

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("captured_at", _TS, nullable=False),
        sa.Column("took_s", sa.Float(), nullable=False),
        sa.Column("classification", sa.String(length=32), nullable=True),
        sa.Column("details", _JSON, nullable=False),
        sa.Column("logs", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_evidence_incident_id", "evidence", ["incident_id"])
    op.create_index("ix_evidence_run_id", "evidence", ["run_id"])
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("classification", sa.String(length=32), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.execute(sa.text(
            "SELECT 1 FROM pg_roles WHERE rolname = 'autofix_grafana'")).scalar():
        # The incident drill-down dashboard shows evidence (redacted before it is stored).
        op.execute("GRANT SELECT ON evidence TO autofix_grafana")


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("classification")
    op.drop_index("ix_evidence_run_id", table_name="evidence")
    op.drop_index("ix_evidence_incident_id", table_name="evidence")
    op.drop_table("evidence")
