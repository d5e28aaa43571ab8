"""Migration 0015's time-range indexes, and the dashboards' queries that need them: no
annotation returns an unbounded number of rows, and no variable reads the whole table.
The times are bench/scale.py's (issue #33); here, what makes them hold."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from bench.scale_seed import seed
from receiver.store.migrate import MIGRATIONS, alembic_config, upgrade
from tests.harness.dashboards import (
    Query,
    TimeRange,
    Variables,
    all_queries,
    create_grafana_login,
    dashboards_by_uid,
    drop_login,
    expand_sql_macros,
)
from tests.harness.db import query
from tests.harness.postgres import Postgres


def _migration() -> Any:
    """The revision file (its name starts with a digit: not importable by name)."""
    spec = importlib.util.spec_from_file_location(
        "migration_0015", MIGRATIONS / "versions" / "0015_time_range_indexes.py")
    if spec is None or spec.loader is None:
        raise ImportError("0015_time_range_indexes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


migration = _migration()
NEW = {name: (table, columns, include) for name, table, columns, include in migration.INDEXES}
REPLACED = {name: table for name, table, _ in migration.REPLACED}


def _indexes(url: str, table: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        return {i["name"]: list(i["column_names"]) for i in inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def test_migration_0015_adds_the_indexes_and_goes_down_and_up(db_url: str) -> None:
    from alembic import command

    for name, (table, columns, _) in NEW.items():
        assert _indexes(db_url, table).get(name) == columns, name
    for name, table in REPLACED.items():
        assert name not in _indexes(db_url, table)
    command.downgrade(alembic_config(db_url), "0014")
    for name, (table, _, _) in NEW.items():
        assert name not in _indexes(db_url, table)
    for name, table in REPLACED.items():
        assert name in _indexes(db_url, table)
    upgrade(db_url)
    assert {name for table in ("incidents", "actions") for name in _indexes(db_url, table)} \
        >= set(NEW)


def test_on_postgresql_the_time_indexes_carry_the_panels_columns(pg_url: str) -> None:
    """INCLUDE: a panel's range is read from the index alone (an index-only scan)."""
    defs = dict(query(pg_url, "SELECT indexname, indexdef FROM pg_indexes"
                              " WHERE schemaname = 'public'"))
    for name, (_, _, include) in NEW.items():
        if include:
            assert defs[name].endswith(f"INCLUDE ({', '.join(include)})"), defs[name]


def test_the_models_declare_what_the_migrations_create(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from receiver.store.models import Base

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


# --- the dashboards' queries --------------------------------------------------------------

SQL = [q for q in all_queries() if q.is_sql]
TIME_FILTER = re.compile(r"\$__timeFilter\(|\$__timeFrom\(\)|\$__timeTo\(\)")


def test_every_annotation_is_time_filtered_and_keeps_the_newest_500() -> None:
    annotations = [q for q in SQL if q.kind == "annotation"]
    assert len(annotations) == 7
    for annotation in annotations:
        assert TIME_FILTER.search(annotation.text), annotation.where
        assert re.search(r"ORDER BY [\w.]+ DESC\s+LIMIT 500\s*$", annotation.text), \
            annotation.where


def test_every_variable_is_a_loose_index_scan_within_the_time_range() -> None:
    variables = [q for q in SQL if q.kind == "variable"]
    assert {q.where for q in variables} == {"autofix-incidents / variable alertname",
                                            "autofix-incidents / variable container",
                                            "autofix-incidents / variable host"}
    for variable in variables:
        time_filter = ("$__timeFilter(a.started_at)" if variable.where.endswith(" host")
                       else "$__timeFilter(i.first_seen)")
        assert time_filter in variable.text, variable.where
        assert variable.text.startswith("WITH RECURSIVE") and "DISTINCT" not in variable.text


@pytest.fixture(scope="module")
def seeded(postgres: Postgres, pg_template: str) -> Iterator[tuple[str, str]]:
    """2,000 incidents over 90 days (bench/scale_seed.py), and a Grafana login."""
    url = postgres.create_database(template=pg_template)
    seed(url, 2000, log=False)
    # Two Docker hosts and actions without one (migration 0016; the seed has none).
    import psycopg2

    conn = psycopg2.connect(_dsn(url))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("UPDATE actions SET docker_host = CASE id % 3 WHEN 1 THEN 'edge-1' "
                    "WHEN 2 THEN 'edge-2' END")
        cur.execute("ANALYZE actions")
    conn.close()
    login = create_grafana_login(_dsn(url))
    try:
        yield url, login
    finally:
        drop_login(_dsn(url), login)


def _dsn(url: str, user: str | None = None) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return (f"host={parsed.host} port={parsed.port} dbname={parsed.database} "
            f"user={user or parsed.username}")


def _run(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        conn.set_session(readonly=True)
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def _sql(variable: Query, window: TimeRange) -> str:
    board = dashboards_by_uid()[variable.dashboard]
    text = Variables.for_dashboard(board, {}, window.builtins()).interpolate(
        variable.text, "autofix-postgres")
    return expand_sql_macros(text, window.start, window.end, window.interval_s)


@pytest.mark.parametrize("days", [1, 30, 120])
def test_a_variable_lists_exactly_the_values_seen_in_the_range(seeded: tuple[str, str],
                                                               days: int) -> None:
    url, login = seeded
    now = datetime.now(UTC)
    window = TimeRange(now - timedelta(days=days), now)
    between = f"first_seen BETWEEN '{window.start.isoformat()}' AND '{window.end.isoformat()}'"
    expected = {
        "alertname": f"SELECT DISTINCT alertname FROM incidents WHERE {between} ORDER BY 1",
        "container": "SELECT DISTINCT coalesce(nullif(container, ''), '(none)') FROM incidents"
                     f" WHERE {between} ORDER BY 1",
        "host": "SELECT DISTINCT coalesce(docker_host, 'local') FROM actions"
                f" WHERE {between.replace('first_seen', 'started_at')} ORDER BY 1"}
    for variable in (q for q in SQL if q.kind == "variable"):
        name = variable.where.rsplit(" ", 1)[1]
        found = _run(_dsn(url, login), _sql(variable, window))
        assert found == query(url, expected[name]) and found, (name, days)


def test_a_variable_reads_an_index_not_the_table(seeded: tuple[str, str]) -> None:
    url, login = seeded
    now = datetime.now(UTC)
    for variable in (q for q in SQL if q.kind == "variable"):
        plan = "\n".join(row[0] for row in _run(
            _dsn(url, login), "EXPLAIN " + _sql(variable, TimeRange(now - timedelta(days=30),
                                                                    now))))
        assert "Seq Scan" not in plan, plan
        assert re.search(r"Index Only Scan using (ix_incidents_(alertname|container)_first_seen"
                         r"|ix_actions_docker_host_started_at)", plan), plan


def test_migration_0017_adds_the_host_index_and_goes_down_and_up(db_url: str) -> None:
    """The dashboards' host variable probes actions(docker_host, started_at)."""
    from alembic import command

    command.downgrade(alembic_config(db_url), "0016")
    assert "ix_actions_docker_host_started_at" not in _indexes(db_url, "actions")
    upgrade(db_url)
    assert _indexes(db_url, "actions")["ix_actions_docker_host_started_at"] == [
        "docker_host", "started_at"]
