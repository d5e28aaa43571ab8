"""Time-range indexes: the dashboards' panels, annotations and variables read a time range
of incidents and actions, which no index served (bench/scale.py measured whole-table
scans). On PostgreSQL the time indexes carry (INCLUDE) the few columns the panels group
and filter by, so a range is read from the index alone. The alertname and container
indexes gain first_seen: a variable's "has an incident in this range" is one probe.

A plain CREATE INDEX (not CONCURRENTLY: the migrations run in one transaction, under the
advisory lock of env.py) blocks writes to incidents and actions while it builds; at a
million incidents that is seconds (docs/deploy.md, Upgrades).

Revision ID: 0015
Revises: 0014

"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# (name, table, columns, PostgreSQL INCLUDE columns)
INDEXES: tuple[tuple[str, str, list[str], list[str]], ...] = (
    ("ix_incidents_first_seen", "incidents", ["first_seen"],
     ["status", "alertname", "container"]),
    ("ix_incidents_resolved_at", "incidents", ["resolved_at"],
     ["alertname", "time_to_resolve_s"]),
    ("ix_incidents_alertname_first_seen", "incidents", ["alertname", "first_seen"], []),
    ("ix_incidents_container_first_seen", "incidents", ["container", "first_seen"], []),
    ("ix_actions_started_at", "actions", ["started_at"], ["outcome", "action"]),
    # The target app's annotations, one query per outcome: an outcome that never happens
    # (dry_run) is an empty range, not a walk through every action of the range.
    ("ix_actions_outcome_started_at", "actions", ["outcome", "started_at"], ["target"]),
)
# Replaced by the two-column ones above, which serve every lookup they served.
REPLACED: tuple[tuple[str, str, list[str]], ...] = (
    ("ix_incidents_alertname", "incidents", ["alertname"]),
    ("ix_incidents_container", "incidents", ["container"]),
)


def upgrade() -> None:
    for name, table, columns, include in INDEXES:
        op.create_index(name, table, columns, postgresql_include=include)
    for name, table, _ in REPLACED:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for name, table, columns in REPLACED:
        op.create_index(name, table, columns)
    for name, table, _, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
