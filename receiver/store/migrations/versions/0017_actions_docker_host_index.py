"""The dashboards' `host` variable: the Docker hosts with an action in the time range, found
by a loose index scan (one probe per host) on actions(docker_host, started_at). Without it
each probe read the whole table: 6 s at two million actions, 0.3 ms with it (EXPLAIN on a
seeded table, docs/dashboards.md).

A plain CREATE INDEX, as 0015's: writes to `actions` wait while it builds (docs/deploy.md,
Upgrades).

Revision ID: 0017
Revises: 0016

"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_actions_docker_host_started_at", "actions",
                    ["docker_host", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_actions_docker_host_started_at", table_name="actions")
