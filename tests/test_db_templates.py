"""pg_url and sqlite_url copy a database migrated once a session (tests/conftest.py): each
copy must be what running the migrations on a database of its own gives, grants included
(the database-level ones are not part of what CREATE DATABASE ... TEMPLATE copies)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text

from receiver.store.migrate import upgrade
from tests.harness.db import query
from tests.harness.postgres import Postgres

PG_SNAPSHOT = {
    "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default"
               " FROM information_schema.columns WHERE table_schema = 'public'"
               " ORDER BY 1, 2",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
               " ORDER BY 1",
    "table grants": "SELECT c.relname, c.relacl::text FROM pg_class c JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1",
    "schema grants": "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'",
    "function grants": "SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_proc p"
                       " WHERE p.proacl IS NOT NULL ORDER BY 1",
    "database grants": "SELECT datacl::text FROM pg_database"
                       " WHERE datname = current_database()",
    "database settings": "SELECT setrole, setconfig::text FROM pg_db_role_setting"
                         " WHERE setdatabase = (SELECT oid FROM pg_database"
                         " WHERE datname = current_database()) ORDER BY 1",
    "revision": "SELECT version_num FROM alembic_version",
}


def pg_snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    return {name: [tuple(row) for row in query(url, sql)] for name, sql in PG_SNAPSHOT.items()}


def test_a_pg_url_copy_is_a_database_migrated_for_itself(postgres: Postgres,
                                                         pg_url: str) -> None:
    own = postgres.create_database()
    upgrade(own)
    copy, migrated = pg_snapshot(pg_url), pg_snapshot(own)
    assert copy == migrated
    # Not vacuous: the migrations' database-level grants are there (0003: the Grafana role
    # may connect, nobody gets TEMPORARY).
    [(acl,)] = copy["database grants"]
    assert "autofix_grafana=c/" in acl and "=Tc/" not in acl, acl


def test_a_template_s_database_settings_reach_its_copies(postgres: Postgres) -> None:
    """No migration sets any yet (ALTER DATABASE ... SET); one that does must not be lost
    in the copies."""
    template = postgres.create_database()
    name = template.rsplit("/", 1)[1]
    engine = create_engine(postgres.url("postgres"))
    with engine.begin() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" SET work_mem = \'3MB\''))
    engine.dispose()
    copy = postgres.create_database(template=name)
    assert query(copy, "SHOW work_mem") == [("3MB",)]


def test_a_pg_url_copy_is_its_own_database(postgres: Postgres, pg_url: str,
                                           pg_template: str) -> None:
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE scratch_only_here (id int)"))
    engine.dispose()
    assert query(pg_url, "SELECT to_regclass('scratch_only_here')::text") == \
        [("scratch_only_here",)]
    another = postgres.create_database(template=pg_template)
    assert query(another, "SELECT to_regclass('scratch_only_here')") == [(None,)]


def sqlite_snapshot(url: str) -> dict[str, object]:
    """Tables column by column, their foreign keys (as a set: SQLite's batch migrations
    write them in no fixed order) and indexes, and the revision."""
    tables = [name for (name,) in query(url, "SELECT name FROM sqlite_master WHERE type ="
                                              " 'table' ORDER BY name")]
    snapshot: dict[str, object] = {
        "revision": query(url, "SELECT version_num FROM alembic_version"),
        "other objects": query(url, "SELECT type, name, tbl_name, sql FROM sqlite_master"
                                    " WHERE type != 'table' ORDER BY type, name")}
    for table in tables:
        snapshot[table] = (
            query(url, f'PRAGMA table_info("{table}")'),
            sorted(tuple(row)[2:] for row in query(url, f'PRAGMA foreign_key_list("{table}")')),
            sorted((tuple(row)[1:], query(url, f'PRAGMA index_info("{row[1]}")'))
                   for row in query(url, f'PRAGMA index_list("{table}")')))
    return snapshot


def test_a_sqlite_url_copy_is_a_database_migrated_for_itself(sqlite_url: str,
                                                             tmp_path: Path) -> None:
    own = f"sqlite:///{tmp_path / 'own.db'}"
    upgrade(own)
    copy = sqlite_snapshot(sqlite_url)
    assert copy == sqlite_snapshot(own)
    assert "incidents" in copy and copy["revision"]
