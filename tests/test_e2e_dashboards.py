"""Every dashboard query, run live against the e2e stack (Grafana itself cannot run here).

Runs right after tests/test_e2e.py (file-name order) on the same session `e2e_stack`, so
the crash/hang/error/latency/cpu scenarios have left incidents, actions and metrics behind;
run alone, it drives the two scenarios it needs first.

* PromQL: every panel target and Prometheus variable, with the template variables
  substituted the way Grafana's Prometheus datasource formats them - once for a container
  the e2e created and once for "All" - as range queries over the time the e2e ran (instant
  targets at its end). Each must return a series, unless listed in MAY_BE_EMPTY with why.
* SQL: every panel target, variable query and annotation query, with variables formatted
  the way Grafana's PostgreSQL datasource does and its macros expanded
  (tests/test_dashboards.py: expand_sql_macros), executed AS A LOGIN USER IN THE READ-ONLY
  ROLE autofix_grafana. Each must run and return rows (same exceptions list); time-series
  queries must return an ascending `time` column, annotations `time` and `text`.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.harness import e2e_scenarios, overrides
from tests.harness.dashboards import (
    Query,
    TimeRange,
    Variables,
    create_grafana_login,
    dashboards_by_uid,
    drop_login,
    expand_sql_macros,
    iter_queries,
)
from tests.harness.stack import Stack

pytestmark = pytest.mark.e2e

# Queries that may legitimately return nothing, and why. Everything else must return data.
MAY_BE_EMPTY = {
    "autofix-overview / Database errors / A":
        "autofix_database_errors_total has no series until the receiver's first database "
        "error, and the e2e scenarios cause none",
    "autofix-overview / Autofix's own alerts / A":
        "ALERTS{component=\"autofix\"} exists only while one of autofix's own alerts is "
        "pending or firing; the full e2e run opens a breaker (AutofixBreakerOpen), a run of "
        "this file alone does not",
    "target-app / annotation autofix: failed":
        "no remediation action fails in the e2e scenarios (a failing restart is covered by "
        "the unit tests, not the live loop)",
    "target-app / annotation autofix: dry_run":
        "the e2e runs no playbook in dry-run mode",
    "autofix-incidents / Dependents restarted after incident $incident's target / A":
        "the e2e's target app has no dependents (tests/test_dashboards.py runs this query "
        "on a seeded dependent run; tests/test_dependents_docker.py restarts real ones)",
    "autofix-overview / annotation Maintenance windows":
        "the e2e opens no maintenance window (tests/test_dashboards.py runs this query on "
        "seeded windows)",
    "autofix-incidents / annotation Maintenance windows":
        "the e2e opens no maintenance window (tests/test_dashboards.py runs this query on "
        "seeded windows)",
    "autofix-overview / annotation Host storms":
        "the e2e acts on too few containers at once for a host storm (tests/"
        "test_blast_radius_docker.py makes one; test_dashboards runs this query on it)",
    "autofix-overview / Host storms (in range) / A":
        "as the Host storms annotation: no storm in the e2e",
    "target-app / variable host":
        "the e2e has one Docker host, whose containers Prometheus labels with no `host`: "
        "the variable is empty and All matches them (tests/test_dashboards.py evaluates "
        "the panels with and without a host label on promtool)",
}

SQL_FORMATS_WITH_TIME = {"time_series"}
# A variable or macro left as written: `$name`, `${name}`, `[[name]]`. Not `$1`
# (label_replace's capture group) nor a dollar-quoted literal (`$$app$$` is a value).
UNEXPANDED = re.compile(r"\$\{|\[\[|\$\$\$\w|(?<![$\w])\$(?![$\d])\w")


@dataclass
class Live:
    stack: Stack
    window: TimeRange
    login_dsn: str
    # Variable values taken from real incidents of the e2e, the main pick first.
    picks: list[dict[str, list[str]]]

    @property
    def main(self) -> dict[str, list[str]]:
        return self.picks[0]

    def variables(self, board: dict[str, Any], everything: bool,
                  pick: dict[str, list[str]] | None = None) -> Variables:
        pick = pick or self.main
        chosen: dict[str, list[str] | None] = {"incident": pick["incident"]}
        if not everything:
            chosen.update({k: v for k, v in pick.items() if k != "incident"})
        return Variables.for_dashboard(board, chosen, self.window.builtins())


def _ensure_live_data(stack: Stack) -> None:
    """When this file runs alone: a restart that succeeds and a guard that skips."""
    outcomes = {row.outcome for row in stack.sql("SELECT DISTINCT outcome FROM actions")}
    if "succeeded" not in outcomes:
        target = stack.run_target()
        e2e_scenarios.run_scenario(stack, target, "TargetDown", "crash")
    if "skipped" not in outcomes:
        target = stack.run_target(restart_policy="on-failure", startup_delay_s=6)
        e2e_scenarios.run_scenario(stack, target, "TargetDown", "crash", acts=False)


@pytest.fixture(scope="module")
def live(e2e_stack: Stack) -> Iterator[Live]:
    stack = e2e_stack
    _ensure_live_data(stack)
    [main] = stack.sql("""
        SELECT i.id FROM incidents i
        WHERE i.container <> '' AND i.labels->>'component' IS NULL AND EXISTS (
            SELECT 1 FROM actions a WHERE a.incident_id = i.id AND a.outcome = 'succeeded')
        ORDER BY i.id DESC LIMIT 1""")
    # One incident per outcome its actions had, the latest first: a restart that succeeded
    # is the main pick; the others let a per-outcome query find its rows. Only app
    # incidents: autofix's own alerts (component=autofix) name the receiver, which has no
    # target-app series.
    picks = [{"incident": [str(row.id)], "status": [row.status],
              "alertname": [row.alertname], "container": [row.container]}
             for row in stack.sql("""
        SELECT DISTINCT ON (a.outcome) i.id, i.alertname, i.container, i.status, a.outcome
        FROM incidents i JOIN actions a ON a.incident_id = i.id
        WHERE i.container <> '' AND i.labels->>'component' IS NULL
        ORDER BY a.outcome, (a.outcome = 'succeeded') DESC, i.id DESC""")]
    picks.sort(key=lambda p: p["incident"] != [str(main.id)])
    [(first_seen,)] = stack.sql("SELECT min(first_seen) FROM incidents")
    window = TimeRange(first_seen - timedelta(minutes=2), datetime.now(UTC),
                       scrape_interval_s=overrides.seconds(overrides.SCRAPE_INTERVAL))
    url = make_url(stack.database_url)
    base = f"host={url.host} port={url.port} dbname={url.database}"
    user = create_grafana_login(f"{base} user={url.username}")
    try:
        yield Live(stack, window, f"{base} user={user}", picks)
    finally:
        drop_login(f"{base} user={url.username}", user)


def _queries() -> list[tuple[dict[str, Any], Query]]:
    return [(board, query) for board in dashboards_by_uid().values()
            for query in iter_queries(board)]


QUERIES = _queries()
PROMQL = [(b, q) for b, q in QUERIES if q.datasource == "prometheus"]
SQL = [(b, q) for b, q in QUERIES if q.is_sql]


def _ids(pairs: list[tuple[dict[str, Any], Query]]) -> list[str]:
    return [q.where for _, q in pairs]


@pytest.mark.parametrize(("text", "unexpanded"), [
    ("$host", True), ("x = $container AND", True), ("${host:regex}", True), ("[[host]]", True),
    ("$$$host$$", True), ("$__timeFilter(x)", True),
    ("$$app-1$$ || '$'", False), ("$$.*$$", False), ("label_replace(x, 'a', '$1')", False),
])
def test_unexpanded_finds_variables_but_not_dollar_quoted_values(text: str,
                                                                 unexpanded: bool) -> None:
    assert bool(UNEXPANDED.search(text)) is unexpanded


def test_the_exceptions_list_names_real_queries() -> None:
    assert set(MAY_BE_EMPTY) <= {q.where for _, q in QUERIES}


# --- PromQL -------------------------------------------------------------------------------

def _prometheus(live: Live, path: str, params: dict[str, Any]) -> Any:
    url = f"{live.stack.prometheus.url}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def _run_promql(live: Live, query: Query, text: str) -> int:
    """Number of series (or variable values) Grafana would get back."""
    start, end = live.window.start.timestamp(), live.window.end.timestamp()
    if query.kind == "variable":
        # label_values(selector, label): Grafana asks the series/label API, not PromQL.
        inner = text[len("label_values("):-1]
        selector, _, label = inner.rpartition(",")
        values = _prometheus(live, f"/api/v1/label/{label.strip()}/values",
                             {"match[]": selector.strip(), "start": start, "end": end})
        return len(values)
    if query.instant:
        data = _prometheus(live, "/api/v1/query", {"query": text, "time": end})
    else:
        data = _prometheus(live, "/api/v1/query_range", {
            "query": text, "start": start, "end": end, "step": live.window.interval_s})
    return len(data["result"])


@pytest.mark.parametrize("everything", [False, True], ids=["one-container", "all"])
@pytest.mark.parametrize(("board", "query"), PROMQL, ids=_ids(PROMQL))
def test_promql_returns_series(live: Live, board: dict[str, Any], query: Query,
                               everything: bool) -> None:
    text = live.variables(board, everything).interpolate(query.text, "prometheus")
    assert not UNEXPANDED.search(text), text
    series = _run_promql(live, query, text)
    if query.where not in MAY_BE_EMPTY:
        assert series > 0, f"{query.where}: no series for\n{text}"


# --- SQL, as the read-only role -----------------------------------------------------------

def _sql_format(board: dict[str, Any], query: Query) -> str | None:
    for panel in board.get("panels", []):
        for target in panel.get("targets", []):
            if target.get("rawSql") == query.text:
                return str(target.get("format", "table"))
    return None


def _execute_as_grafana(live: Live, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    import psycopg2

    conn = psycopg2.connect(live.login_dsn)
    try:
        conn.set_session(readonly=True)
        with conn.cursor() as cur:
            cur.execute(sql)
            columns = [d.name for d in cur.description or []]
            return columns, cur.fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("everything", [False, True], ids=["one-incident", "all"])
@pytest.mark.parametrize(("board", "query"), SQL, ids=_ids(SQL))
def test_sql_runs_as_the_read_only_role_and_returns_rows(
        live: Live, board: dict[str, Any], query: Query, everything: bool) -> None:
    # "All" once; otherwise each picked incident's values (one per action outcome), and
    # rows from at least one of them: a per-outcome query has no rows for the others.
    found = 0
    for pick in live.picks[:1] if everything else live.picks:
        text = live.variables(board, everything, pick).interpolate(query.text,
                                                                   "autofix-postgres")
        sql = expand_sql_macros(text, live.window.start, live.window.end,
                                live.window.interval_s)
        assert not UNEXPANDED.search(sql), sql
        columns, rows = _execute_as_grafana(live, sql)
        found += len(rows)
        if query.kind == "annotation":
            assert {"time", "text"} <= set(columns), columns
        if _sql_format(board, query) in SQL_FORMATS_WITH_TIME:
            assert columns[0] == "time", columns
            times = [row[0] for row in rows]
            assert times == sorted(times), "Grafana needs time series ordered by time"
        if query.kind == "variable":
            assert len(columns) == 1 and all(row[0] for row in rows), rows
    if query.where not in MAY_BE_EMPTY:
        assert found, f"{query.where}: no rows for\n{sql}"


def test_drill_down_shows_the_incident_and_its_actions(live: Live) -> None:
    board = dashboards_by_uid()["autofix-incidents"]
    variables = live.variables(board, everything=False)
    incident_id = int(live.main["incident"][0])
    expected = [(r.action, r.outcome) for r in live.stack.sql(
        "SELECT action, outcome FROM actions WHERE incident_id = :i ORDER BY started_at, id",
        i=incident_id)]
    [actions] = [q for q in iter_queries(board) if "Actions of incident" in q.where]
    sql = expand_sql_macros(variables.interpolate(actions.text, "autofix-postgres"),
                            live.window.start, live.window.end, live.window.interval_s)
    columns, rows = _execute_as_grafana(live, sql)
    found = [(row[columns.index("action")], row[columns.index("outcome")]) for row in rows]
    assert found == expected
    [details] = [q for q in iter_queries(board) if q.where.endswith("Incident $incident / A")]
    sql = expand_sql_macros(variables.interpolate(details.text, "autofix-postgres"),
                            live.window.start, live.window.end, live.window.interval_s)
    columns, [row] = _execute_as_grafana(live, sql)
    record = dict(zip(columns, row, strict=True))
    assert record["id"] == incident_id
    assert str(record["prometheus"]).startswith("http")
    # runbook_base is empty by default: a repository path opens the Runbooks panel, which
    # holds docs/runbooks.md (tests/test_dashboards.py), and a section for this alert.
    [panel] = [p for p in board["panels"] if p.get("title") == "Runbooks (docs/runbooks.md)"]
    assert record["runbook"] == f"/d/autofix-incidents/autofix-incidents?viewPanel={panel['id']}"
    assert f"\n## {record['alert']}\n" in panel["options"]["content"]
    silence = str(record["silence"])
    assert silence.startswith("{") and f'container="{live.main["container"][0]}"' in silence
