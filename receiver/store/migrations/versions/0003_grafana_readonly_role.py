"""Read-only role for Grafana: SELECT on incidents and actions, nothing else.

Revision ID: 0003
Revises: 0002

PostgreSQL only (a no-op on SQLite, which has no roles). Creates `autofix_grafana`, a
NOLOGIN group role; an operator (or the compose init script grafana/postgres-init/) creates
a LOGIN user that is a member of it, see docs/dashboards.md:

    CREATE ROLE grafana_reader LOGIN PASSWORD '...' IN ROLE autofix_grafana;
    ALTER ROLE grafana_reader SET default_transaction_read_only = on;

What the role gets, and why only that:
  * SELECT on `incidents` and `actions`: every dashboard query reads these two tables.
    `runs` is NOT granted: the dashboards need nothing from it that `actions` does not
    carry (outcome, reason, error, duration, playbook, trigger), and it holds who asked
    for a manual run and why. notifications (raw payloads), the outbox (Slack ids, errors),
    breakers, config_versions (playbook sources) and audit_log stay unreadable.
  * USAGE on schema public (to name the tables) and CONNECT on the database; nothing else.
    CREATE on schema public is revoked from PUBLIC (the PostgreSQL 15 default; older
    servers granted it to everyone, so any role could create tables) and so is TEMPORARY
    on this database: the owner keeps both through its own grants.
  * Tables added by later migrations are not readable until a migration grants them.

The role is cluster-wide and may already exist (another database on the same server, or
created by the init script before this migration ran): creation is idempotent, grants are
per database. The migration user needs CREATEROLE to create it; without it (and without the
role existing) the grants are skipped with a warning instead of failing the upgrade.
Downgrade revokes this database's grants but leaves the role: it may have members and
privileges in other databases (DROP ROLE is the operator's call).
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ROLE = "autofix_grafana"
READABLE_TABLES = ("incidents", "actions")

log = logging.getLogger("alembic.runtime.migration")


def _role_exists(bind: sa.Connection) -> bool:
    found = bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": ROLE})
    return found.scalar() is not None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if not _role_exists(bind):
        can_create = bind.execute(sa.text(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        )).scalar()
        if not can_create:
            log.warning("cannot create role %s (no CREATEROLE): Grafana's read-only access "
                        "was not set up; see docs/dashboards.md", ROLE)
            return
        # Two databases on one server can migrate at once: the loser of the race is fine.
        op.execute(f"""
            DO $$ BEGIN
                CREATE ROLE {ROLE} NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$""")
    op.execute(f"""
        DO $$ BEGIN
            EXECUTE format('GRANT CONNECT ON DATABASE %I TO {ROLE}', current_database());
            EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
            EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM {ROLE}', current_database());
        END $$""")
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    op.execute(f"REVOKE ALL ON SCHEMA public FROM {ROLE}")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {ROLE}")
    op.execute(f"GRANT SELECT ON {', '.join(READABLE_TABLES)} TO {ROLE}")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not _role_exists(bind):
        return
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ROLE}")
    op.execute(f"REVOKE ALL ON SCHEMA public FROM {ROLE}")
    op.execute(f"""
        DO $$ BEGIN
            EXECUTE format('REVOKE ALL ON DATABASE %I FROM {ROLE}', current_database());
            EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
        END $$""")
    # CREATE on schema public is not given back to PUBLIC: PostgreSQL 15 no longer grants
    # it either, and nothing in autofix needs other roles to create tables.
