"""No large objects or advisory locks for roles that only read (Grafana's).

Revision ID: 0005
Revises: 0004

PostgreSQL grants EXECUTE on its built-in functions to PUBLIC, so the read-only role
Grafana logs in as (migration 0003) could still:
  * create and fill large objects (`lo_from_bytea`, `lo_create`, `lowrite`, `lo_import`
    from the client…): writes into pg_largeobject, whatever default_transaction_read_only
    says, since a session can turn that off;
  * take advisory locks (`pg_advisory_lock`) on the keys the receiver claims runs with,
    and so stall remediation.
This revokes EXECUTE on those functions from PUBLIC in this database and grants the
advisory-lock functions back to the application role (the owner of the tables).

Only a superuser can change privileges on built-in functions. Run by a role that is not
one (the recommended setup: the receiver owns the database and has neither SUPERUSER nor
CREATEROLE), the migration changes nothing, logs one warning line saying so that names
the psql command running docs/postgres-roles.sql (the statements themselves only at
INFO), and succeeds; it is
silent once the SQL has been run. The compose stack runs the same SQL at PostgreSQL's
first start (grafana/postgres-init/05-autofix-owner.sh). The same happens for the
autofix_grafana role itself when 0003 could not create it (no CREATEROLE).

Downgrade gives EXECUTE back to PUBLIC (superuser only; otherwise a no-op with a warning).
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ROLE = "autofix_grafana"
READABLE_TABLES = ("incidents", "actions")
FUNCTIONS = """
    SELECT p.oid::regprocedure::text AS fn, p.proname LIKE '%advisory%' AS advisory,
           p.proacl IS NULL OR EXISTS (
               SELECT 1 FROM aclexplode(p.proacl) a
               WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_can
    FROM pg_proc p
    WHERE p.pronamespace = 'pg_catalog'::regnamespace
      AND (p.proname LIKE 'lo\\_%' OR p.proname IN ('loread', 'lowrite')
           OR p.proname LIKE 'pg\\_advisory\\_%' OR p.proname LIKE 'pg\\_try\\_advisory\\_%')
    ORDER BY 1"""

log = logging.getLogger("alembic.runtime.migration")


def _app_role(bind: sa.Connection) -> str:
    """The role the receiver runs as: the owner of its tables, unless that is a superuser
    (then the migration's own user, which needs no grant either)."""
    owner = bind.execute(sa.text(
        "SELECT t.tableowner FROM pg_tables t JOIN pg_roles r ON r.rolname = t.tableowner "
        "WHERE t.schemaname = 'public' AND t.tablename = 'incidents' AND NOT r.rolsuper"
    )).scalar()
    return str(owner or bind.execute(sa.text("SELECT current_user")).scalar())


def _quote(bind: sa.Connection, name: str) -> str:
    return str(bind.execute(sa.text("SELECT quote_ident(:n)"), {"n": name}).scalar())


def _statements(bind: sa.Connection) -> list[str]:
    rows = bind.execute(sa.text(FUNCTIONS)).all()
    app = _quote(bind, _app_role(bind))
    statements = []
    if bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"),
                    {"r": ROLE}).scalar() is None:
        statements += [f"CREATE ROLE {ROLE} NOLOGIN;",
                       f"GRANT CONNECT ON DATABASE {_quote(bind, _database(bind))} TO {ROLE};",
                       f"GRANT USAGE ON SCHEMA public TO {ROLE};",
                       f"GRANT SELECT ON {', '.join(READABLE_TABLES)} TO {ROLE};"]
    for fn, advisory, public_can in rows:
        if public_can:
            statements.append(f"REVOKE EXECUTE ON FUNCTION {fn} FROM PUBLIC;")
            if advisory:
                statements.append(f"GRANT EXECUTE ON FUNCTION {fn} TO {app};")
    return statements


def _database(bind: sa.Connection) -> str:
    return str(bind.execute(sa.text("SELECT current_database()")).scalar())


def _is_superuser(bind: sa.Connection) -> bool:
    return bool(bind.execute(sa.text(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar())


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    statements = _statements(bind)
    if not statements:
        return
    if _is_superuser(bind):
        for statement in statements:
            op.execute(statement.rstrip(";"))
        return
    # One line: the statements (one per function, ~60) are the file the line names; they
    # are logged at INFO for whoever wants to read them.
    owner = str(bind.execute(sa.text("SELECT current_user")).scalar())
    log.warning(
        "autofix db upgrade: %d privilege statement(s) for the read-only Grafana role need a "
        "PostgreSQL superuser; nothing was changed. Run as one: psql -v ON_ERROR_STOP=1 "
        "-v owner=%s -d %s -f docs/postgres-roles.sql (docs/deploy.md, step 5)",
        len(statements), owner, _database(bind))
    log.info("the statements docs/postgres-roles.sql runs here:\n%s", "\n".join(statements))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if not _is_superuser(bind):
        log.warning("downgrade of 0005 needs a superuser to give EXECUTE back to PUBLIC on "
                    "lo_* and advisory-lock functions; left as it is")
        return
    for fn, _advisory, public_can in bind.execute(sa.text(FUNCTIONS)).all():
        if not public_can:
            op.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO PUBLIC")
