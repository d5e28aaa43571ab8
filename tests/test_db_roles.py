"""Migration 0005 on real PostgreSQL: no large objects or advisory locks for PUBLIC.

As a superuser it revokes them; as the recommended application role (database owner,
no SUPERUSER, no CREATEROLE) it changes nothing, and `autofix db upgrade` says so in one
line naming the psql command that runs docs/postgres-roles.sql as a superuser.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.harness.postgres import Postgres

pytestmark = pytest.mark.timeout(120)

LO = "SELECT lo_from_bytea(0, 'x')"


def _run(dsn: str, *statements: str) -> str:
    """'ok', or the SQLSTATE of the first failing statement (autocommit)."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                try:
                    cur.execute(statement)
                except psycopg2.Error as exc:
                    return str(exc.pgcode)
        return "ok"
    finally:
        conn.close()


def _dsn(url: str, user: str | None = None) -> str:
    parsed = make_url(url)
    return (f"host={parsed.host} port={parsed.port} dbname={parsed.database} "
            f"user={user or parsed.username}")


def _reader(admin: str, name: str) -> None:
    _run(admin, "DO $$ BEGIN CREATE ROLE autofix_grafana NOLOGIN; "
                "EXCEPTION WHEN duplicate_object THEN NULL; END $$",
         f"CREATE ROLE {name} LOGIN IN ROLE autofix_grafana")


def test_as_superuser_the_reader_loses_large_objects_and_advisory_locks(pg_url: str) -> None:
    admin = _dsn(pg_url)
    reader = f"reader_{uuid.uuid4().hex[:8]}"
    _reader(admin, reader)
    try:
        dsn = _dsn(pg_url, reader)
        assert _run(dsn, LO) == "42501"                       # insufficient_privilege
        assert _run(dsn, "SELECT lo_create(0)") == "42501"
        assert _run(dsn, "SELECT pg_advisory_lock(7)") == "42501"
        assert _run(dsn, "SELECT count(*) FROM incidents") == "ok"
    finally:
        _run(admin, f"DROP ROLE IF EXISTS {reader}")


def test_as_the_owner_role_nothing_changes_and_db_upgrade_names_the_sql_file(
        postgres: Postgres) -> None:
    url = postgres.create_database()
    admin = _dsn(url)
    app = f"app_{uuid.uuid4().hex[:8]}"
    reader = f"reader_{uuid.uuid4().hex[:8]}"
    database = make_url(url).database
    _run(admin, f"CREATE ROLE {app} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB",
         f'ALTER DATABASE "{database}" OWNER TO {app}')
    _reader(admin, reader)
    try:
        app_url = make_url(url).set(username=app).render_as_string(hide_password=False)
        cli = Path(sys.executable).with_name("autofix")
        env = {**os.environ, "AUTOFIX_DATABASE_URL": app_url}
        done = subprocess.run([str(cli), "db", "upgrade"], env=env, capture_output=True,
                              text=True, timeout=90, check=False)
        assert done.returncode == 0, done.stderr
        # One line (issue 27: it was 59 lines of SQL), naming the file and how to run it.
        [said] = done.stderr.strip().splitlines()
        assert "need a PostgreSQL superuser" in said and "docs/postgres-roles.sql" in said
        command = said[said.index("psql "):said.index(" (docs/deploy.md")]
        assert f"-v owner={app} -d {database} -f docs/postgres-roles.sql" in command, said
        # nothing changed yet: the reader can still make a large object
        assert _run(_dsn(url, reader), "BEGIN READ WRITE", LO, "ROLLBACK") == "ok"
        # a superuser runs the command it names; then the reader cannot, the app still locks
        argv = [a for a in shlex.split(command) if a not in ("-d", database)]
        argv[0:1] = ["psql", admin, "-X", "-q"]
        psql = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                              cwd=Path(__file__).resolve().parents[1])
        assert psql.returncode == 0, psql.stderr
        assert _run(_dsn(url, reader), LO) == "42501"
        assert _run(_dsn(url, app), "SELECT pg_advisory_xact_lock(1)") == "ok"
        assert _run(_dsn(url, app), "SELECT count(*) FROM incidents") == "ok"
    finally:
        _run(admin, f"DROP ROLE IF EXISTS {reader}")
        _run(admin, f'ALTER DATABASE "{database}" OWNER TO CURRENT_USER')
        _run(admin, f"DROP OWNED BY {app}", f"DROP ROLE IF EXISTS {app}")


def test_docs_sql_file_does_what_the_migration_prints(postgres: Postgres) -> None:
    url = postgres.create_database()
    admin = _dsn(url)
    app = f"app_{uuid.uuid4().hex[:8]}"
    reader = f"reader_{uuid.uuid4().hex[:8]}"
    database = make_url(url).database
    _run(admin, f"CREATE ROLE {app} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB",
         f'ALTER DATABASE "{database}" OWNER TO {app}')
    _reader(admin, reader)
    try:
        psql = subprocess.run(
            ["psql", admin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"owner={app}",
             "-f", str(Path(__file__).resolve().parents[1] / "docs" / "postgres-roles.sql")],
            capture_output=True, text=True, timeout=60, check=False)
        assert psql.returncode == 0, psql.stderr
        assert _run(_dsn(url, reader), "BEGIN READ WRITE", LO, "ROLLBACK") == "42501"
        assert _run(_dsn(url, app), "SELECT pg_advisory_xact_lock(1)") == "ok"
    finally:
        _run(admin, f"DROP ROLE IF EXISTS {reader}")
        _run(admin, f'ALTER DATABASE "{database}" OWNER TO CURRENT_USER')
        _run(admin, f"DROP OWNED BY {app}", f"DROP ROLE IF EXISTS {app}")
