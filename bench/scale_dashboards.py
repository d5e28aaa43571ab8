"""Time every PostgreSQL query of every shipped Grafana dashboard, as Grafana would run it.

Each panel target, template variable and annotation whose datasource is the autofix
PostgreSQL is interpolated (template variables at their defaults, "All" where a variable
allows it, the drill-down `incident` set to the newest incident with actions) and its
macros expanded by tests/harness/dashboards.py, for each range of RANGES ending now; then
run `repeats` times by a login in the read-only Grafana role (as tests/test_e2e_dashboards.py
runs them), on one connection, read-only. The median is the figure. The slowest
(query, range) pairs get EXPLAIN (ANALYZE, BUFFERS). Prometheus queries are out of scope.
"""

from __future__ import annotations

import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import make_url

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

__all__ = ["RANGES", "postgres_queries", "time_dashboard_queries"]

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
POSTGRES = "autofix-postgres"
UNEXPANDED = re.compile(r"\$(\w|\{)|\[\[")  # a variable or macro left in the query


def postgres_queries() -> list[Query]:
    return [query for query in all_queries() if query.is_sql]


def panel_title(query: Query) -> str:
    """The panel's title ("Incidents"), or "variable x" / "annotation y"."""
    where = query.where.removeprefix(f"{query.dashboard} / ")
    return where.rsplit(" / ", 1)[0] if query.kind == "panel" else where


def _dsn(url: str, user: str | None = None) -> str:
    parsed = make_url(url)
    return (f"host={parsed.host} port={parsed.port} dbname={parsed.database} "
            f"user={user or parsed.username}")


def _expanded(board: dict[str, Any], query: Query, incident: str, window: TimeRange) -> str:
    variables = Variables.for_dashboard(board, {"incident": [incident]}, window.builtins())
    text = variables.interpolate(query.text, POSTGRES)
    sql = expand_sql_macros(text, window.start, window.end, window.interval_s)
    if UNEXPANDED.search(sql):
        raise ValueError(f"{query.where}: a variable or macro left in\n{sql}")
    return sql


def time_dashboard_queries(url: str, repeats: int = 3, explain: int = 3,
                           now: datetime | None = None) -> dict[str, Any]:
    """{"incident", "queries": one entry per PostgreSQL dashboard query with its median
    time per range, "slowest": the `explain` slowest (query, range) pairs with their plan}."""
    import psycopg2

    end = now or datetime.now(UTC)
    boards = dashboards_by_uid()
    login = create_grafana_login(_dsn(url))
    conn = psycopg2.connect(_dsn(url, login))
    try:
        conn.set_session(readonly=True, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(incident_id), 0) FROM actions")
            incident = str(cur.fetchone()[0])
        entries: list[dict[str, Any]] = []
        for query in postgres_queries():
            entry: dict[str, Any] = {"dashboard": query.dashboard, "title": panel_title(query),
                                     "kind": query.kind, "where": query.where, "ranges": {},
                                     "error": None}
            for label, span in RANGES.items():
                sql = _expanded(boards[query.dashboard], query, incident,
                                TimeRange(end - span, end))
                try:
                    entry["ranges"][label] = _timed(conn, sql, repeats)
                except psycopg2.Error as exc:
                    entry["error"] = f"{label}: {type(exc).__name__}: {exc}".strip()
                    break
            entries.append(entry)
        slowest = sorted(((entry, label, figures) for entry in entries
                          for label, figures in entry["ranges"].items()),
                         key=lambda item: item[2]["ms"], reverse=True)[:explain]
        plans = [{"where": entry["where"], "range": label, "ms": figures["ms"],
                  "sql": figures["sql"], "plan": _explain(conn, figures["sql"])}
                 for entry, label, figures in slowest]
    finally:
        conn.close()
        drop_login(_dsn(url), login)
    for entry in entries:  # the SQL is kept only beside the plans
        for figures in entry["ranges"].values():
            figures.pop("sql")
    return {"incident": incident, "repeats": repeats, "queries": entries, "slowest": plans}


def _timed(conn: Any, sql: str, repeats: int) -> dict[str, Any]:
    runs_ms: list[float] = []
    rows = 0
    with conn.cursor() as cur:
        for _ in range(repeats):
            started = time.perf_counter()
            cur.execute(sql)
            rows = len(cur.fetchall())
            runs_ms.append((time.perf_counter() - started) * 1000)
    return {"ms": round(statistics.median(runs_ms), 3),
            "runs_ms": [round(ms, 3) for ms in runs_ms], "rows": rows, "sql": sql}


def _explain(conn: Any, sql: str) -> str:
    with conn.cursor() as cur:
        cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        return "\n".join(row[0] for row in cur.fetchall())
