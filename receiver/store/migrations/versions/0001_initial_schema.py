"""Initial schema: notifications, incidents, runs, actions, breakers, audit log, configs.

Revision ID: 0001
Revises:

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("config_versions",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sha256", sa.String(length=64), nullable=False),
    sa.Column("source", sa.Text(), nullable=False),
    sa.Column("content", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )

    op.create_table("audit_log",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(length=255), nullable=False),
    sa.Column("verb", sa.String(length=64), nullable=False),
    sa.Column("subject", sa.String(length=255), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)

    op.create_table("breakers",
    sa.Column("target", sa.String(length=255), nullable=False),
    sa.Column("state", sa.String(length=16), nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("open_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("reopen_count", sa.Integer(), nullable=False),
    sa.Column("last_admitted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("target")
    )
    op.create_table("incidents",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("fingerprint", sa.String(length=64), nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("alertname", sa.String(length=255), nullable=False),
    sa.Column("severity", sa.String(length=64), nullable=False),
    sa.Column("container", sa.String(length=255), nullable=False),
    sa.Column("target", sa.String(length=255), nullable=True),
    sa.Column("playbook", sa.String(length=255), nullable=True),
    sa.Column("labels", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
    sa.Column("annotations", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
    sa.Column("generator_url", sa.Text(), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("notification_count", sa.Integer(), nullable=False),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("time_to_resolve_s", sa.Float(), nullable=True),
    sa.Column("resolved_unseen", sa.Boolean(), nullable=False),
    sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("escalation_reason", sa.Text(), nullable=True),
    sa.Column("trigger", sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("fingerprint", "starts_at", name="uq_incident_occurrence")
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incidents_alertname"), ["alertname"], unique=False)
        batch_op.create_index(batch_op.f("ix_incidents_container"), ["container"], unique=False)
        batch_op.create_index("ix_incidents_status_first_seen", ["status", "first_seen"], unique=False)
        batch_op.create_index(batch_op.f("ix_incidents_target"), ["target"], unique=False)

    op.create_table("notifications",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("group_key", sa.Text(), nullable=False),
    sa.Column("receiver", sa.String(length=1024), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("alert_count", sa.Integer(), nullable=False),
    sa.Column("truncated_alerts", sa.Integer(), nullable=False),
    sa.Column("external_url", sa.Text(), nullable=False),
    sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_received_at"), ["received_at"], unique=False)

    op.create_table("runs",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("incident_id", sa.Integer(), nullable=False),
    sa.Column("playbook", sa.String(length=255), nullable=False),
    sa.Column("target", sa.String(length=255), nullable=False),
    sa.Column("trigger", sa.String(length=16), nullable=False),
    sa.Column("alert_status", sa.String(length=16), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("requested_by", sa.String(length=255), nullable=True),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("worker", sa.String(length=255), nullable=True),
    sa.Column("dry_run", sa.Boolean(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_admitted_at"), ["admitted_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index("ix_runs_status_target", ["status", "target"], unique=False)

    op.create_table("actions",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("run_id", sa.Integer(), nullable=False),
    sa.Column("incident_id", sa.Integer(), nullable=False),
    sa.Column("playbook", sa.String(length=255), nullable=False),
    sa.Column("action", sa.String(length=64), nullable=False),
    sa.Column("target", sa.String(length=255), nullable=False),
    sa.Column("params", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
    sa.Column("outcome", sa.String(length=16), nullable=False),
    sa.Column("reason", sa.String(length=64), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("duration_s", sa.Float(), nullable=True),
    sa.Column("trigger", sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_actions_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_actions_run_id"), ["run_id"], unique=False)
        batch_op.create_index("ix_actions_target_started", ["target", "started_at"], unique=False)


def downgrade() -> None:
    op.drop_table("config_versions")

    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index("ix_actions_target_started")
        batch_op.drop_index(batch_op.f("ix_actions_run_id"))
        batch_op.drop_index(batch_op.f("ix_actions_incident_id"))

    op.drop_table("actions")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_status_target")
        batch_op.drop_index(batch_op.f("ix_runs_incident_id"))
        batch_op.drop_index(batch_op.f("ix_runs_admitted_at"))

    op.drop_table("runs")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_received_at"))

    op.drop_table("notifications")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incidents_target"))
        batch_op.drop_index("ix_incidents_status_first_seen")
        batch_op.drop_index(batch_op.f("ix_incidents_container"))
        batch_op.drop_index(batch_op.f("ix_incidents_alertname"))

    op.drop_table("incidents")
    op.drop_table("breakers")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")

