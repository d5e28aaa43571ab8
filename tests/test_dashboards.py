"""Grafana dashboards and provisioning, checked without Grafana (it cannot run here).

Structure: every dashboard JSON under grafana/dashboards/ loads, has a unique uid, names only
provisioned datasources, uses every template variable, gives every panel a title, a unit and
a query, links only to dashboards that exist, and keeps one colour per outcome. The
provisioning YAML parses and points where docker-compose.yml mounts things.

Read-only role (migration 0003), on a real PostgreSQL: the Grafana role reads incidents and
actions and nothing else, and cannot write or create.

The helpers (query extraction, Grafana's variable interpolation and its PostgreSQL macro
expansion) live in tests/harness/dashboards.py, shared with tests/test_e2e_dashboards.py,
which runs every query live.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.harness.dashboards import (
    COMPOSE,
    DASHBOARDS,
    DATASOURCE_VARIABLE,
    GRAFANA_ROLE,
    INIT_SCRIPT,
    PROVISIONING,
    REPO,
    VARIABLE,
    Query,
    TimeRange,
    Variables,
    all_panels,
    all_queries,
    create_grafana_login,
    dashboards_by_uid,
    datasource_uid,
    datasource_variables,
    drop_login,
    expand_sql_macros,
    iter_queries,
    link_urls,
    load_dashboards,
    provisioned_datasources,
    strings_in,
    variable_names_used,
)

NO_QUERY_PANELS = {"row", "text"}
OUTCOME_COLOURS = {"succeeded": "green", "failed": "red", "skipped": "orange",
                   "dry_run": "blue"}
EXPECTED = {  # uid -> folder (a directory under grafana/dashboards/)
    "autofix-overview": "Autofix",
    "autofix-incidents": "Autofix",
    "target-app": "Apps",
}


# ==========================================================================================
# Structure
# ==========================================================================================

def test_every_expected_dashboard_is_in_its_folder() -> None:
    found = {board["uid"]: path.parent.name for path, board in load_dashboards().items()}
    assert {uid: found.get(uid) for uid in EXPECTED} == EXPECTED
    for path in load_dashboards():
        # foldersFromFilesStructure: one level of folders, no dashboard at the root.
        assert path.parent.parent == DASHBOARDS, path


def test_dashboard_uids_are_unique_and_stable() -> None:
    uids = [board.get("uid") for board in load_dashboards().values()]
    assert all(isinstance(uid, str) and re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids)
    assert len(uids) == len(set(uids))
    titles = [board.get("title") for board in load_dashboards().values()]
    assert len(titles) == len(set(titles)) and all(titles)


def _datasource_refs(board: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(where, reference) of every datasource a panel, target, variable or annotation names."""
    for panel in all_panels(board):
        if panel["type"] in NO_QUERY_PANELS:
            continue
        yield panel.get("title", "?"), panel.get("datasource")
        for target in panel["targets"]:
            yield f"{panel.get('title')} / {target.get('refId')}", target.get("datasource")
    for var in board.get("templating", {}).get("list", []):
        if var["type"] == "query":
            yield f"variable {var['name']}", var.get("datasource")
    for ann in board.get("annotations", {}).get("list", []):
        if not ann.get("builtIn"):
            yield f"annotation {ann.get('name')}", ann.get("datasource")
            yield f"annotation {ann.get('name')} / target", (ann.get("target") or {}).get(
                "datasource")


def test_every_datasource_is_a_variable_defaulting_to_the_provisioned_one() -> None:
    """Importable into an existing Grafana: no panel names a uid; each names a datasource
    variable whose default is the provisioned uid (so provisioning works unchanged), and
    __inputs/__requires declare the datasource types for the import dialog."""
    provisioned = provisioned_datasources()
    problems = []
    for board in load_dashboards().values():
        variables = datasource_variables(board)
        for name, var in variables.items():
            default = var["current"]["value"]
            if default not in provisioned or provisioned[default]["type"] != var["query"]:
                problems.append((board["uid"], f"variable {name} defaults to {default}"))
        used_types = set()
        for where, ref in _datasource_refs(board):
            uid = datasource_uid(ref)
            match = DATASOURCE_VARIABLE.fullmatch(uid or "")
            var = variables.get((match.group(1) or match.group(2)) if match else "")
            if var is None or not isinstance(ref, dict) or ref.get("type") != var["query"]:
                problems.append((board["uid"], where, ref))
            else:
                used_types.add(var["query"])
        # Nothing anywhere (links, descriptions aside) names a provisioned uid directly.
        for ref in _all_datasource_dicts(board):
            if ref.get("uid") in provisioned:
                problems.append((board["uid"], "hard-coded uid", ref))
        inputs = {i["name"]: i for i in board.get("__inputs", []) if i["type"] == "datasource"}
        expected = {"prometheus": "DS_PROMETHEUS", "postgres": "DS_POSTGRES"}
        assert set(inputs) == {expected[t] for t in used_types}, board["uid"]
        for kind in used_types:
            item = inputs[expected[kind]]
            assert item["type"] == "datasource" and item["pluginId"] == kind
        required = {r["id"] for r in board.get("__requires", []) if r["type"] == "datasource"}
        assert required == used_types, board["uid"]
        # Each variable is named as its input, so panels say ${DS_PROMETHEUS}: provisioning
        # resolves that to the variable (default: the provisioned uid), and an import
        # replaces it with the datasource picked in the dialog (issue 27: the pickers'
        # choice was thrown away while panels said ${prometheus_ds}).
        assert set(variables) == {expected[t] for t in used_types}, board["uid"]
    assert problems == []
    assert all(q.datasource in provisioned for q in all_queries())


def _all_datasource_dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        ref = value.get("datasource")
        if isinstance(ref, dict):
            yield ref
        for item in value.values():
            yield from _all_datasource_dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_datasource_dicts(item)


PROMQL_JOB = re.compile(r"\bjob\s*(=~|!=|!~|=)\s*\"([^\"]*)\"")


def test_no_promql_hard_codes_a_job() -> None:
    """Scrape job names differ between deployments: every job matcher uses the job variable,
    whose default is a job of the shipped prometheus/prometheus.yml."""
    shipped = {job["job_name"] for job in yaml.safe_load(
        (REPO / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]}
    for board in load_dashboards().values():
        texts = [q.text for q in iter_queries(board) if not q.is_sql]
        matchers = [m.group(2) for text in texts for m in PROMQL_JOB.finditer(text)]
        assert all(value == "$job" for value in matchers), (board["uid"], matchers)
        if matchers:
            job = {v["name"]: v for v in board["templating"]["list"]}["job"]
            assert job["type"] == "query" and not job.get("includeAll")
            assert job["current"]["value"] in shipped, board["uid"]
            assert "job" in job["query"]["query"]


def test_every_template_variable_is_used() -> None:
    for board in load_dashboards().values():
        definitions = board.get("templating", {}).get("list", [])
        outside = {**board, "templating": {"list": []}}
        used: set[str] = set()
        for text in strings_in(outside):
            used |= variable_names_used(text)
        for definition in definitions:  # one variable may be used by another's query
            for other in definitions:
                if other is not definition:
                    for text in strings_in(other.get("query", "")):
                        used |= variable_names_used(text)
        unused = [d["name"] for d in definitions if d["name"] not in used]
        assert unused == [], f"{board['uid']}: unused variables {unused}"


def test_every_panel_has_a_title_a_unit_and_a_query() -> None:
    problems = []
    for board in load_dashboards().values():
        for panel in all_panels(board):
            kind = panel.get("type")
            if not panel.get("title"):
                problems.append((board["uid"], panel.get("id"), "no title"))
            if kind in NO_QUERY_PANELS:
                continue
            if not panel.get("targets"):
                problems.append((board["uid"], panel.get("title"), "no targets"))
            for target in panel.get("targets", []):
                if not (target.get("expr") or target.get("rawSql")):
                    problems.append((board["uid"], panel.get("title"), "empty target"))
            if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
                problems.append((board["uid"], panel.get("title"), "no unit"))
    assert problems == []


def test_every_dashboard_is_organised_in_rows_and_panels_do_not_overlap() -> None:
    for board in load_dashboards().values():
        panels = board["panels"]
        assert panels[0]["type"] == "row", board["uid"]
        cells: dict[tuple[int, int], str] = {}
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, (board["uid"], panel["title"], cells.get((x, y)))
                    cells[(x, y)] = panel["title"]


def test_outcomes_have_one_colour_everywhere() -> None:
    seen: list[tuple[str, str]] = []
    for board in load_dashboards().values():
        for panel in all_panels(board):
            field_config = panel.get("fieldConfig", {})
            for override in field_config.get("overrides", []):
                name = override["matcher"].get("options")
                for prop in override["properties"]:
                    if name in OUTCOME_COLOURS and prop["id"] == "color":
                        seen.append((name, prop["value"]["fixedColor"]))
                    if prop["id"] == "mappings":
                        seen.extend(_mapping_colours(prop["value"]))
            seen.extend(_mapping_colours(field_config.get("defaults", {}).get("mappings", [])))
        for ann in board.get("annotations", {}).get("list", []):
            for outcome in OUTCOME_COLOURS:
                if f"outcome = '{outcome}'" in json.dumps(ann):
                    seen.append((outcome, ann["iconColor"]))
    seen = [(name, colour) for name, colour in seen if name in OUTCOME_COLOURS]
    assert {name for name, _ in seen} == set(OUTCOME_COLOURS)
    assert [(n, c) for n, c in seen if OUTCOME_COLOURS[n] != c] == []


def _mapping_colours(mappings: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [(name, option.get("color", "")) for mapping in mappings
            if mapping.get("type") == "value"
            for name, option in mapping.get("options", {}).items()]


def test_links_point_at_existing_dashboards() -> None:
    uids = set(dashboards_by_uid())
    linked: set[str] = set()
    for board in load_dashboards().values():
        for where, url in link_urls(board):
            assert url, (board["uid"], where)
            for uid in re.findall(r"/d/([^/?&#$]+)", url):
                assert uid in uids, (board["uid"], where, url)
                linked.add(uid)
    assert linked == uids  # every dashboard is reachable from another one


def test_slack_links_open_the_incident_drill_down() -> None:
    from receiver.notify.messages import DASHBOARD_UID, dashboard_url

    board = dashboards_by_uid()[DASHBOARD_UID]
    assert dashboard_url("http://g", 7).endswith(f"/d/{DASHBOARD_UID}/autofix-incidents"
                                                 "?var-incident=7")
    incident = {v["name"]: v for v in board["templating"]["list"]}["incident"]
    assert incident["type"] == "textbox"
    drill_down = [q for q in iter_queries(board) if "${incident:sqlstring}" in q.text]
    assert {"incidents i", "actions a"} <= {
        table for q in drill_down for table in ("incidents i", "actions a") if table in q.text}
    # The drill-down must not depend on the time range: a Slack link carries none.
    assert all("$__timeFilter" not in q.text for q in drill_down)


def test_free_text_variables_reach_sql_only_quoted() -> None:
    """A textbox (or a ?var- URL parameter) is free text: in SQL it may appear only as
    ${name:sqlstring}, which Grafana quotes and escapes. Raw $incident inside quotes was an
    injection (?var-incident=0' OR '1'='1)."""
    for board in load_dashboards().values():
        free = {v["name"] for v in board.get("templating", {}).get("list", [])
                if v["type"] in ("textbox", "constant")}
        for query in iter_queries(board):
            if not query.is_sql:
                continue
            for match in VARIABLE.finditer(query.text):
                name = match.group(1) or match.group(2) or match.group(4)
                fmt = match.group(3) or match.group(6)
                if name in free:
                    assert fmt == "sqlstring", (query.where, match.group(0))


def test_runbooks_panel_is_docs_runbooks() -> None:
    board = dashboards_by_uid()["autofix-incidents"]
    [panel] = [p for p in all_panels(board) if p.get("title") == "Runbooks (docs/runbooks.md)"]
    assert panel["options"]["content"] == (REPO / "docs" / "runbooks.md").read_text(), \
        "the Runbooks panel drifted from docs/runbooks.md: copy the file into it"
    [details] = [q for q in iter_queries(board) if q.where.endswith("Incident $incident / A")]
    assert f"?viewPanel={panel['id']}'" in details.text
    runbook_base = {v["name"]: v for v in board["templating"]["list"]}["runbook_base"]
    assert runbook_base["current"]["value"] == ""  # no placeholder URL


def test_target_app_annotates_every_remediation_action() -> None:
    board = dashboards_by_uid()["target-app"]
    annotations = [q for q in iter_queries(board) if q.kind == "annotation"]
    assert {q.datasource for q in annotations} == {"autofix-postgres"}
    covered = {o for o in OUTCOME_COLOURS for q in annotations if f"'{o}'" in q.text}
    assert covered == set(OUTCOME_COLOURS)
    assert all("FROM actions" in q.text for q in annotations)


def test_sql_reads_only_the_tables_the_grafana_role_may_read() -> None:
    readable = {"incidents", "actions", "evidence", "maintenance_windows", "host_storms",
                "image_history"}
    for query in all_queries():
        if query.is_sql:
            tables = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)\b", query.text, re.I))
            tables -= {"jsonb_each_text", "jsonb_array_elements_text"}
            tables -= set(re.findall(r"\bWITH RECURSIVE\s+([a-z_]+)\b", query.text, re.I))
            assert tables <= readable, (query.where, tables)


# --- provisioning -------------------------------------------------------------------------

def _compose_grafana() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"]["grafana"])


def _host_path_for(container_path: str) -> Path | None:
    """Where a path inside the Grafana container comes from, through compose's bind mounts."""
    target = PurePosixPath(container_path)
    best: tuple[int, Path] | None = None
    for volume in _compose_grafana().get("volumes", []):
        source, _, rest = volume.partition(":")
        mount = PurePosixPath(rest.split(":")[0])
        if not source.startswith("."):
            continue  # a named volume
        if target == mount or mount in target.parents:
            depth = len(mount.parts)
            host = (REPO / source / target.relative_to(mount)).resolve()
            if best is None or depth > best[0]:
                best = (depth, host)
    return best[1] if best else None


def test_datasource_provisioning() -> None:
    sources = provisioned_datasources()
    assert set(sources) == {"prometheus", "autofix-postgres"}
    prom, pg = sources["prometheus"], sources["autofix-postgres"]
    assert prom["type"] == "prometheus" and prom["url"] == "http://prometheus:9090"
    assert pg["type"] == "postgres" and pg["url"] == "postgres:5432"
    assert pg["jsonData"]["database"] == pg["database"] == "autofix"
    # Never the owner account the receiver uses; the password comes from a secret file.
    assert pg["user"] not in ("autofix", "postgres")
    password = pg["secureJsonData"]["password"]
    match = re.fullmatch(r"\$__file\{(/run/secrets/(\w+))\}", password)
    assert match, password
    compose = _compose_grafana()
    assert match.group(2) in [s["source"] for s in compose.get("secrets", [])], \
        "grafana needs the secret mounted"


def test_dashboard_provider_points_at_the_dashboards() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    [provider] = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["foldersFromFilesStructure"] is True
    assert "folder" not in provider and "folderUid" not in provider
    # Through docker-compose.yml: provisioning at Grafana's default path, dashboards where
    # the provider looks.
    assert _host_path_for("/etc/grafana/provisioning/datasources") == \
        (PROVISIONING / "datasources").resolve()
    assert _host_path_for("/etc/grafana/provisioning/dashboards") == \
        (PROVISIONING / "dashboards").resolve()
    assert _host_path_for(provider["options"]["path"]) == DASHBOARDS.resolve()


def test_postgres_runs_the_grafana_login_init_script() -> None:
    postgres = yaml.safe_load(COMPOSE.read_text())["services"]["postgres"]
    mounts = {v.split(":")[1]: (REPO / v.split(":")[0]).resolve()
              for v in postgres.get("volumes", []) if v.startswith(".")}
    assert mounts.get("/docker-entrypoint-initdb.d") == INIT_SCRIPT.parent.resolve()
    assert "grafana_db_password" in [s["source"] for s in postgres.get("secrets", [])]


# --- the helpers themselves, against Grafana's documented expansions ----------------------

RANGE = TimeRange(datetime(2017, 4, 21, 5, 1, 17, tzinfo=UTC),
                  datetime(2017, 4, 21, 5, 6, 17, tzinfo=UTC))


@pytest.mark.parametrize(("sql", "expanded"), [
    ("$__time(dateColumn)", 'dateColumn AS "time"'),
    ("$__timeEpoch(dateColumn)", 'extract(epoch from dateColumn) as "time"'),
    ("$__timeFilter(dateColumn)",
     "dateColumn BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'"),
    ("$__timeFrom()", "'2017-04-21T05:01:17Z'"),
    ("$__timeTo()", "'2017-04-21T05:06:17Z'"),
    ("$__timeGroup(dateColumn,'5m')", "floor(extract(epoch from dateColumn)/300)*300"),
    ("$__timeGroup(dateColumn,'5m', 0)", "floor(extract(epoch from dateColumn)/300)*300"),
    ("$__timeGroupAlias(dateColumn, 1m)", 'floor(extract(epoch from dateColumn)/60)*60 AS "time"'),
    ("SELECT $__timeGroup(t,'5m'), v", 'SELECT floor(extract(epoch from t)/300)*300 AS "time", v'),
    ("$__unixEpochFilter(dateColumn)", "dateColumn >= 1492750877 AND dateColumn <= 1492751177"),
    ("$__unixEpochFrom()", "1492750877"),
    ("$__unixEpochGroupAlias(dateColumn, '5m')", 'floor(dateColumn/300)*300 AS "time"'),
    ("$__timeGroupAlias(c, $__interval)", 'floor(extract(epoch from c)/5)*5 AS "time"'),
])
def test_sql_macro_expansion_matches_grafana(sql: str, expanded: str) -> None:
    assert expand_sql_macros(sql, RANGE.start, RANGE.end, RANGE.interval_s) == expanded


def test_variable_formatting_matches_grafana() -> None:
    board = {"templating": {"list": [
        {"name": "one", "type": "textbox"},
        {"name": "many", "type": "custom", "multi": True, "includeAll": True,
         "query": "a,b'c"},
        {"name": "c", "type": "query", "multi": True, "includeAll": True, "allValue": ".+"},
    ]}}
    chosen = Variables.for_dashboard(board, {"one": ["7"], "c": ["app-1", "x.y"]},
                                     RANGE.builtins())
    assert chosen.interpolate("id = '$one' AND s IN ($many)", "autofix-postgres") == \
        "id = '7' AND s IN ('a','b''c')"
    assert chosen.interpolate('{c=~"$c"}[$__rate_interval]', "prometheus") == \
        '{c=~"(app-1|x\\.y)"}[20s]'
    assert chosen.interpolate("~ '^${c:regex}$'", "autofix-postgres") == "~ '^(app-1|x\\.y)$'"
    every = Variables.for_dashboard(board, {"one": ["7"]}, {})
    assert every.interpolate('"$c" ${c:regex} [[c]]', "prometheus") == '".+" .+ .+'


# ==========================================================================================
# The read-only role (migration 0003)
# ==========================================================================================

def _dsn_of(url: str, user: str | None = None) -> tuple[str, str]:
    """(admin dsn, login dsn template) for a SQLAlchemy URL of the test cluster."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    base = f"host={parsed.host} port={parsed.port} dbname={parsed.database}"
    return f"{base} user={parsed.username}", f"{base} user={user}" if user else base


def _attempt(dsn: str, statement: str) -> str:
    """'ok', or the SQLSTATE of the error the statement raised."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            if cur.description is not None:
                cur.fetchall()
        conn.rollback()
        return "ok"
    except psycopg2.Error as error:
        return str(error.pgcode)
    finally:
        conn.close()


INSUFFICIENT_PRIVILEGE = "42501"


def test_grafana_role_reads_incidents_and_actions_only(pg_url: str) -> None:
    import psycopg2

    admin, _ = _dsn_of(pg_url)
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:  # one row everywhere, so a SELECT that works returns it
        cur.execute("""
            INSERT INTO incidents (id, fingerprint, starts_at, alertname, severity, container,
                labels, annotations, generator_url, status, notification_count, first_seen,
                last_seen, resolved_unseen, trigger)
            VALUES (1, 'f', now(), 'TargetDown', 'critical', 'web', '{}', '{}', '', 'open', 1,
                now(), now(), false, 'alert');
            INSERT INTO runs (id, incident_id, playbook, target, trigger, alert_status, status,
                queued_at, dry_run) VALUES (1, 1, 'p', 'web', 'alert', 'firing', 'queued',
                now(), false);
            INSERT INTO actions (run_id, incident_id, playbook, action, target, params, outcome,
                started_at, trigger) VALUES (1, 1, 'p', 'restart', 'web', '{}', 'succeeded',
                now(), 'alert');
            INSERT INTO breakers (target, state, reopen_count, updated_at)
                VALUES ('web', 'closed', 0, now());
        """)
    conn.close()
    user = create_grafana_login(admin)
    try:
        dsn = _dsn_of(pg_url, user)[1]
        assert _attempt(dsn, "SELECT id, status FROM incidents") == "ok"
        assert _attempt(dsn, "SELECT a.outcome FROM actions a JOIN incidents i "
                             "ON i.id = a.incident_id") == "ok"
        assert _attempt(dsn, "SELECT id, logs FROM evidence") == "ok"
        assert _attempt(dsn, "SELECT id, matchers FROM maintenance_windows") == "ok"
        denied = {
            "insert incidents": "INSERT INTO incidents (fingerprint, starts_at, alertname, "
                                "labels, annotations, status) VALUES ('x', now(), 'a', '{}', "
                                "'{}', 'open')",
            "update incidents": "UPDATE incidents SET status = 'resolved'",
            "delete incidents": "DELETE FROM incidents",
            "insert actions": "INSERT INTO actions (run_id, incident_id, playbook, action, "
                              "target, params, outcome, started_at, trigger) VALUES "
                              "(1, 1, 'p', 'x', 'web', '{}', 'failed', now(), 'alert')",
            "update actions": "UPDATE actions SET outcome = 'failed'",
            "delete actions": "DELETE FROM actions",
            "truncate actions": "TRUNCATE actions",
            "lock incidents": "LOCK TABLE incidents IN EXCLUSIVE MODE",
            "select for update": "SELECT id FROM incidents FOR UPDATE",
            "create table": "CREATE TABLE grafana_was_here (id int)",
            "create view": "CREATE VIEW grafana_view AS SELECT 1 AS one",
            "create temp table": "CREATE TEMP TABLE grafana_tmp (id int)",
            "use sequence": "SELECT nextval('incidents_id_seq')",
            "update evidence": "UPDATE evidence SET logs = ''",
            "delete evidence": "DELETE FROM evidence",
        }
        for table in ("notifications", "breakers", "notification_outbox", "config_versions",
                      "audit_log", "runs", "alembic_version"):
            denied[f"select {table}"] = f"SELECT * FROM {table}"
        results = {what: _attempt(dsn, statement) for what, statement in denied.items()}
        assert results == dict.fromkeys(denied, INSUFFICIENT_PRIVILEGE)
    finally:
        drop_login(admin, user)


def _seed(admin_dsn: str, actions: Sequence[tuple[str, str]], graph: bool = False) -> None:
    """Incident 1 (TargetDown on web, with a runbook path) and run 1 with these
    (action, outcome) rows, started now; with `graph`, also a dependent's run and the
    images web ran."""
    import psycopg2

    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("""
            INSERT INTO incidents (id, fingerprint, starts_at, alertname, severity, container,
                labels, annotations, generator_url, status, notification_count, first_seen,
                last_seen, resolved_unseen, trigger)
            VALUES (1, 'f', now(), 'TargetDown', 'critical', 'web',
                '{"alertname": "TargetDown", "container": "web"}',
                '{"runbook_url": "docs/runbooks.md#targetdown"}', '', 'open', 1,
                now(), now(), false, 'alert');
            INSERT INTO runs (id, incident_id, playbook, target, trigger, alert_status, status,
                queued_at, dry_run) VALUES (1, 1, 'p', 'web', 'alert', 'firing', 'succeeded',
                now(), false);
            INSERT INTO evidence (incident_id, run_id, step, source, target, captured_at,
                took_s, classification, details, logs, size_bytes)
            VALUES (1, 1, 0, 'implicit', 'web', now(), 0.2, 'hung',
                '{"state": {"status": "running", "exit_code": 0, "oom_killed": false,
                  "health": {"status": "healthy"}},
                  "expression": {"expr": "up == 0", "series": [{"metric": {}, "value": "0"}]},
                  "cut": [], "errors": {}}',
                '2026-11-30T09:00:00Z hello', 30);
        """)
        for action, outcome in actions:
            cur.execute("""
                INSERT INTO actions (run_id, incident_id, playbook, action, target, params,
                    outcome, started_at, trigger)
                VALUES (1, 1, 'p', %s, 'web', '{}', %s, now(), 'alert')""", (action, outcome))
        if graph:
            cur.execute("""
                INSERT INTO runs (id, incident_id, playbook, target, trigger, alert_status, status,
                    queued_at, dry_run) VALUES (2, 1, 'p', 'sidecar', 'dependent', 'firing',
                    'succeeded', now(), false);
                INSERT INTO actions (run_id, incident_id, playbook, action, target, params,
                    outcome, started_at, trigger)
                VALUES (2, 1, 'p', 'restart', 'sidecar', '{}', 'succeeded', now(), 'dependent');
                INSERT INTO image_history (name, container_id, image_id, image_ref, created_at,
                    first_seen_at)
                VALUES ('web', 'c1', 'sha256:1', 'web:v1', now() - interval '2 days', now()),
                       ('web', 'c2', 'sha256:2', 'web:v2', now() - interval '3 minutes', now())""")
    conn.close()


def _rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        conn.set_session(readonly=True)
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def _as_grafana_would(board: Mapping[str, Any], query: Query,
                      values: Mapping[str, list[str] | None]) -> str:
    now = datetime.now(UTC)
    window = TimeRange(now - timedelta(hours=1), now + timedelta(minutes=1))
    variables = Variables.for_dashboard(board, values, window.builtins())
    text = variables.interpolate(query.text, query.datasource)
    return expand_sql_macros(text, window.start, window.end, window.interval_s)


HOSTILE = ["'; DROP TABLE incidents; --", "1' OR '1'='1", "1 OR 1=1", "1; SELECT 1",
           "$$; DROP TABLE actions; $$", "1)::text; --", "\\'", "99999999999999999999999",
           "-1", "", "abc"]


def test_incident_variable_cannot_inject_sql(pg_url: str) -> None:
    """Whatever arrives as ?var-incident= (or ?var-runbook_base=) runs without error and
    shows no incident, as the read-only Grafana login; a real id still shows its rows."""
    admin, _ = _dsn_of(pg_url)
    _seed(admin, [("restart", "succeeded"), ("wait_healthy", "succeeded")], graph=True)
    board = dashboards_by_uid()["autofix-incidents"]
    drill_down = [q for q in iter_queries(board) if "$incident" in q.where]
    assert len(drill_down) == 5
    user = create_grafana_login(admin)
    try:
        dsn = _dsn_of(pg_url, user)[1]
        for query in drill_down:
            assert len(_rows(dsn, _as_grafana_would(board, query, {"incident": ["1"]}))) >= 1
            for hostile in HOSTILE:
                sql = _as_grafana_would(board, query, {"incident": [hostile],
                                                       "runbook_base": [hostile]})
                assert _rows(dsn, sql) == [], (query.where, hostile, sql)
        [details] = [q for q in drill_down if q.where.endswith("Incident $incident / A")]
        base = "https://git.example/o'brien/autofix/blob/main/"
        [row] = _rows(dsn, _as_grafana_would(board, details, {"incident": ["1"],
                                                              "runbook_base": [base]}))
        assert base + "docs/runbooks.md#targetdown" in row
    finally:
        drop_login(admin, user)
    assert _attempt(admin, "SELECT count(*) FROM incidents") == "ok"  # still there


def test_success_rate_counts_only_steps_that_change_a_target(pg_url: str) -> None:
    from receiver.actions.builtin import build_registry

    mutating = {spec.name for spec in build_registry().specs() if spec.mutating}
    assert mutating == {"restart", "start", "stop", "kill", "exec", "scale", "rollback",
                        "rollback_image"}
    admin, _ = _dsn_of(pg_url)
    seeded = ([("restart", "succeeded")] * 3 + [("exec", "succeeded")]
              + [("restart", "failed"), ("kill", "interrupted")]
              # not fixes: a successful notify or escalate, checks either way, skips, dry runs
              + [("notify", "succeeded")] * 6 + [("escalate", "succeeded")] * 2
              + [("wait_healthy", "failed"), ("promql_check", "succeeded"),
                 ("http", "failed"), ("restart", "skipped"), ("stop", "dry_run")])
    _seed(admin, seeded)
    board = dashboards_by_uid()["autofix-overview"]
    [query] = [q for q in iter_queries(board) if "Remediation success rate" in q.where]
    user = create_grafana_login(admin)
    try:
        [(rate,)] = _rows(_dsn_of(pg_url, user)[1], _as_grafana_would(board, query, {}))
    finally:
        drop_login(admin, user)
    assert rate == pytest.approx(4 / 6)
    for action in mutating:
        assert f"'{action}'" in query.text


def test_maintenance_windows_are_annotation_regions_read_by_the_grafana_role(
        pg_url: str) -> None:
    """A window in force, one ended by hand and one cancelled before it started: the first
    two are regions ending at ends_at or when ended; the cancelled one shows nothing."""
    import psycopg2

    admin, _ = _dsn_of(pg_url)
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("""
        INSERT INTO maintenance_windows (matchers, starts_at, ends_at, created_at, created_by,
            reason, ended_at, ended_by) VALUES
        ('["container=~\\"shop-.*\\""]', now() - interval '30 minutes',
         now() + interval '1 hour', now(), 'alice (127.0.0.1)', 'db upgrade', NULL, NULL),
        ('["service=\\"cart\\""]', now() - interval '50 minutes',
         now() + interval '1 hour', now(), 'bob', 'cart deploy',
         now() - interval '40 minutes', 'bob'),
        ('["container=\\"later\\""]', now() + interval '1 day', now() + interval '2 days',
         now(), 'carol', 'cancelled', now(), 'carol')""")
    conn.close()
    user = create_grafana_login(admin)
    try:
        dsn = _dsn_of(pg_url, user)[1]
        for uid in ("autofix-overview", "autofix-incidents"):
            board = dashboards_by_uid()[uid]
            [query] = [q for q in iter_queries(board)
                       if q.where == f"{uid} / annotation Maintenance windows"]
            rows = _rows(dsn, _as_grafana_would(board, query, {"incident": ["1"]}))
            texts = [row[2] for row in rows]
            assert texts == [  # newest first: the annotation keeps the latest 500
                'maintenance window 1 by alice (127.0.0.1): db upgrade '
                '(container=~"shop-.*")',
                'maintenance window 2 by bob: cart deploy (service="cart"), ended by bob'], texts
            assert all(end > start for start, end, *_ in rows)
    finally:
        drop_login(admin, user)


def test_grafana_role_is_created_once_per_server_and_granted_per_database(
        postgres: Any, pg_url: str) -> None:
    from alembic import command

    from receiver.store.migrate import alembic_config, upgrade

    other = postgres.create_database()
    upgrade(other)  # the role already exists (pg_url made it): still granted here
    admin, _ = _dsn_of(other)
    user = create_grafana_login(admin)
    try:
        dsn = _dsn_of(other, user)[1]
        assert _attempt(dsn, "SELECT count(*) FROM incidents") == "ok"
        command.downgrade(alembic_config(other), "0002")
        assert _attempt(dsn, "SELECT count(*) FROM incidents") == INSUFFICIENT_PRIVILEGE
        assert _attempt(_dsn_of(pg_url, user)[1], "SELECT count(*) FROM incidents") == "ok"
        command.upgrade(alembic_config(other), "head")
        assert _attempt(dsn, "SELECT count(*) FROM actions") == "ok"
    finally:
        drop_login(admin, user)


def test_migration_is_a_no_op_on_sqlite(sqlite_url: str) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine, text

    from receiver.store.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(sqlite_url)).get_current_head()
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    engine.dispose()
    command.downgrade(alembic_config(sqlite_url), "0002")
    command.upgrade(alembic_config(sqlite_url), "head")


def test_compose_init_script_creates_a_read_only_grafana_login(pg_url: str,
                                                               tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    from tests.harness.procs import require_binary

    require_binary("psql")  # a skip locally, a failure in CI (AUTOFIX_REQUIRE_COMPONENTS)

    parsed = make_url(pg_url)
    user = f"grafana_s_{uuid.uuid4().hex[:8]}"
    secret = tmp_path / "grafana_db_password"
    secret.write_text("s3cret'with\"quotes")
    env = {**os.environ, "PGHOST": str(parsed.host), "PGPORT": str(parsed.port),
           "POSTGRES_USER": str(parsed.username), "POSTGRES_DB": str(parsed.database),
           "GRAFANA_DB_USER": user, "GRAFANA_DB_PASSWORD_FILE": str(secret)}
    done = subprocess.run(["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    admin, _ = _dsn_of(pg_url)
    try:
        assert done.returncode == 0, done.stderr
        dsn = _dsn_of(pg_url, user)[1]
        assert _attempt(dsn, "SELECT count(*) FROM actions") == "ok"
        assert _attempt(dsn, "SELECT count(*) FROM runs") == INSUFFICIENT_PRIVILEGE
        # default_transaction_read_only: even a stray write grant could not be used.
        assert _attempt(dsn, "CREATE TEMP TABLE t (i int)") == "25006"  # read_only_sql_tx
        again = subprocess.run(["sh", str(INIT_SCRIPT)], env=env, capture_output=True,
                               text=True, timeout=60, check=False)
        assert again.returncode != 0  # the login exists: the script never runs twice
    finally:
        drop_login(admin, user)


def test_init_script_refuses_to_run_without_the_secret(tmp_path: Path) -> None:
    env = {**os.environ, "POSTGRES_USER": "x", "POSTGRES_DB": "x",
           "GRAFANA_DB_PASSWORD_FILE": str(tmp_path / "missing")}
    done = subprocess.run(["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 1 and "missing" in done.stderr


# Used by tests/test_e2e_dashboards.py.
__all__ = ["GRAFANA_ROLE", "Query", "TimeRange", "Variables", "create_grafana_login",
           "dashboards_by_uid", "drop_login", "expand_sql_macros", "iter_queries"]


def test_an_import_sets_the_datasources_and_the_alertmanager_url() -> None:
    """What Grafana's import does (dashboardimport's template evaluator): every
    `${INPUT}` string becomes the value picked or typed in the dialog. Each declared input
    must be used, so no choice is thrown away; after the import no panel names a
    variable-less ${DS_...} and the silence links use the typed Alertmanager URL."""
    picked = {"DS_PROMETHEUS": "their-prom", "DS_POSTGRES": "their-pg",
              "VAR_ALERTMANAGER_URL": "https://alertmanager.example.com"}
    for board in load_dashboards().values():
        text = json.dumps(board)
        inputs = [i["name"] for i in board.get("__inputs", [])]
        for name in inputs:
            assert "${" + name + "}" in text, (board["uid"], f"input {name} is never used")
        imported = json.loads(re.sub(r"\$\{(\w+)\}", lambda m: picked.get(m.group(1), m.group(0))
                                     if m.group(1) in inputs else m.group(0), text))
        for where, ref in _datasource_refs(imported):
            assert datasource_uid(ref) in picked.values(), (board["uid"], where, ref)
    incidents = dashboards_by_uid()["autofix-incidents"]
    assert {"name": "VAR_ALERTMANAGER_URL", "type": "constant"}.items() <= {
        i["name"]: i for i in incidents["__inputs"]}["VAR_ALERTMANAGER_URL"].items()
    assert "${VAR_ALERTMANAGER_URL}/#/silences/new" in json.dumps(incidents)


def test_host_storm_queries_run_as_the_grafana_role(pg_url: str) -> None:
    """The overview's host storm annotation and table (migration 0012 grants host_storms),
    on a storm in the range and one long before it."""
    import psycopg2

    admin, _ = _dsn_of(pg_url)
    _seed(admin, [("guard", "skipped")])
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("""
            INSERT INTO host_storms (host, started_at, until, targets, incident_id) VALUES
              ('docker:ABCD', now() - interval '5 minutes', now() - interval '4 minutes',
               '{"acted": ["a", "b"], "skipped": ["c", "d"]}', 1),
              ('docker:OLD', now() - interval '3 days', now() - interval '3 days',
               '{"acted": ["x"], "skipped": ["y"]}', NULL)""")
    conn.close()
    board = dashboards_by_uid()["autofix-overview"]
    queries = [q for q in iter_queries(board) if "host_storms" in q.text]
    assert {q.where for q in queries} == {"autofix-overview / annotation Host storms",
                                          "autofix-overview / Host storms (in range) / A"}
    user = create_grafana_login(admin)
    try:
        dsn = _dsn_of(pg_url, user)[1]
        for query in queries:
            rows = _rows(dsn, _as_grafana_would(board, query, {}))
            assert len(rows) == 1, (query.where, rows)
            assert "docker:ABCD" in " ".join(map(str, rows[0]))
            assert "c, d" in " ".join(map(str, rows[0]))
    finally:
        drop_login(admin, user)


def test_skip_panel_shows_the_blast_radius_reasons() -> None:
    from receiver.telemetry.metrics import SKIP_REASONS_SHOWN

    board = dashboards_by_uid()["autofix-overview"]
    [panel] = [p for p in all_panels(board) if p.get("title") == "Runs skipped by reason"]
    assert "autofix_runs_skipped_total" in panel["targets"][0]["expr"]
    named = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]}
    assert {"host_storm", "budget_exhausted"} <= named & set(SKIP_REASONS_SHOWN)


# ==========================================================================================
# Per Docker host (issue 32): two hosts, and rows without one (one host: `local`)
# ==========================================================================================

# (id, alert `host` label or None, status, time to resolve, actions' docker_host, outcome)
FLEET = [(1, "a", "resolved", 10.0, "a", "succeeded"),
         (2, "a", "resolved", 30.0, "a", "succeeded"),
         (3, "a", "escalated", None, "a", "failed"),
         (4, "b", "resolved", 100.0, "b", "succeeded"),
         (5, None, "resolved", 5.0, None, "succeeded"),
         (6, None, "open", None, None, "skipped")]


def _seed_fleet(admin: str) -> None:
    """FLEET within the last hour, and host `c`'s incident and action three days ago (out of
    the range: not a value of the host variable, and resolved)."""
    import psycopg2

    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        for number, host, status, ttr, docker_host, outcome in [
                *FLEET, (7, "c", "resolved", 1.0, "c", "succeeded")]:
            ago = "3 days" if number == 7 else f"{number} minutes"
            labels = json.dumps({"alertname": "TargetDown", "container": "app",
                                 **({"host": host} if host else {})})
            target = f"{docker_host}/app" if docker_host else "app"
            cur.execute(f"""
                INSERT INTO incidents (id, fingerprint, starts_at, alertname, severity,
                    container, labels, annotations, generator_url, status, notification_count,
                    first_seen, last_seen, resolved_at, time_to_resolve_s, resolved_unseen,
                    trigger)
                VALUES (%(id)s, %(fp)s, now() - interval '{ago}', 'TargetDown', 'critical',
                    'app', %(labels)s, '{{}}', '', %(status)s, 1, now() - interval '{ago}',
                    now() - interval '{ago}',
                    CASE WHEN %(ttr)s IS NULL THEN NULL ELSE now() - interval '{ago}' END,
                    %(ttr)s, false, 'alert');
                INSERT INTO runs (id, incident_id, playbook, target, trigger, alert_status,
                    status, queued_at, dry_run, docker_host)
                VALUES (%(id)s, %(id)s, 'p', %(target)s, 'alert', 'firing', 'succeeded',
                    now(), false, %(dh)s);
                INSERT INTO actions (run_id, incident_id, playbook, action, target,
                    docker_host, params, outcome, started_at, trigger)
                VALUES (%(id)s, %(id)s, 'p', 'restart', %(target)s, %(dh)s, '{{}}',
                    %(outcome)s, now() - interval '{ago}', 'alert')""",
                {"id": number, "fp": f"f{number}", "labels": labels, "status": status,
                 "ttr": ttr, "target": target, "dh": docker_host, "outcome": outcome})
    conn.close()


def _panel(uid: str, title: str) -> tuple[dict[str, Any], Query]:
    board = dashboards_by_uid()[uid]
    [query] = [q for q in iter_queries(board) if q.where == f"{uid} / {title}"]
    return board, query


def test_host_variable_lists_the_hosts_acted_on_in_the_range(pg_url: str) -> None:
    """From actions.docker_host (the Grafana role may not read runs): `a`, `b` and `local`
    for the rows without one; `c`, acted on three days ago only, is out of the range."""
    admin, _ = _dsn_of(pg_url)
    _seed_fleet(admin)
    board, variable = _panel("autofix-incidents", "variable host")
    user = create_grafana_login(admin)
    try:
        rows = _rows(_dsn_of(pg_url, user)[1], _as_grafana_would(board, variable, {}))
    finally:
        drop_login(admin, user)
    assert rows == [("a",), ("b",), ("local",)]


ALL: dict[str, list[str] | None] = {}


@pytest.mark.parametrize(("chosen", "expected"), [
    (ALL, {"a": (3, 1, 1), "b": (1, 0, 0), "local": (2, 1, 0)}),
    ({"host": ["a"]}, {"a": (3, 1, 1)}),
    ({"host": ["local", "b"]}, {"b": (1, 0, 0), "local": (2, 1, 0)}),
])
def test_incidents_per_host(pg_url: str, chosen: dict[str, list[str] | None],
                            expected: dict[str, tuple[int, int, int]]) -> None:
    """(incidents, open, escalated) per host; an alert without a `host` label is `local`."""
    admin, _ = _dsn_of(pg_url)
    _seed_fleet(admin)
    board, query = _panel("autofix-overview", "Incidents per host / A")
    user = create_grafana_login(admin)
    try:
        rows = _rows(_dsn_of(pg_url, user)[1], _as_grafana_would(board, query, chosen))
    finally:
        drop_login(admin, user)
    assert {host: tuple(counts) for host, *counts in rows} == expected


@pytest.mark.parametrize(("chosen", "expected"), [
    (ALL, {"b": (100, 100, 100, 1), "a": (20, 29, 30, 2), "local": (5, 5, 5, 1)}),
    ({"host": ["b"]}, {"b": (100, 100, 100, 1)}),
    ({"host": ["local"]}, {"local": (5, 5, 5, 1)}),
])
def test_time_to_resolve_by_host(pg_url: str, chosen: dict[str, list[str] | None],
                                 expected: dict[str, tuple[float, ...]]) -> None:
    """(p50, p95, max, incidents) per host, as Time to resolve by alert defines them."""
    admin, _ = _dsn_of(pg_url)
    _seed_fleet(admin)
    board, query = _panel("autofix-overview", "Time to resolve by host / A")
    _, by_alert = _panel("autofix-overview", "Time to resolve by alert / A")
    for part in ("percentile_cont(0.5) WITHIN GROUP (ORDER BY time_to_resolve_s) AS p50",
                 "WHERE time_to_resolve_s IS NOT NULL AND $__timeFilter(resolved_at)"):
        assert part in query.text and part in by_alert.text
    user = create_grafana_login(admin)
    try:
        rows = _rows(_dsn_of(pg_url, user)[1], _as_grafana_would(board, query, chosen))
    finally:
        drop_login(admin, user)
    assert {host: tuple(round(v) for v in values) for host, *values in rows} == expected
    assert [row[0] for row in rows] == list(expected)  # slowest p95 first


@pytest.mark.parametrize(("uid", "title", "chosen", "expected"), [
    ("autofix-incidents", "Incidents / A", ALL, {1, 2, 3, 4, 5, 6}),
    ("autofix-incidents", "Incidents / A", {"host": ["local"]}, {5, 6}),
    ("autofix-incidents", "Incidents / A", {"host": ["a", "b"]}, {1, 2, 3, 4}),
    ("target-app", "annotation autofix: succeeded", ALL, {1, 2, 4, 5}),
    ("target-app", "annotation autofix: succeeded", {"host": ["a"]}, {1, 2}),
    ("target-app", "annotation autofix: succeeded", {"host": ["local"]}, {5}),
])
def test_rows_follow_the_host_variable(pg_url: str, uid: str, title: str,
                                       chosen: dict[str, list[str] | None],
                                       expected: set[int]) -> None:
    """The incidents table and the target app's annotations (a target `<host>/app` is the
    container `app`) keep the chosen hosts' rows; All keeps every row of the range."""
    admin, _ = _dsn_of(pg_url)
    _seed_fleet(admin)
    board, query = _panel(uid, title)
    user = create_grafana_login(admin)
    try:
        sql = _as_grafana_would(board, query, {**chosen, "container": ["app"]})
        rows = _rows(_dsn_of(pg_url, user)[1], sql)
    finally:
        drop_login(admin, user)
    if query.kind == "annotation":
        found = {int(re.search(r"incident (\d+)\)", row[2]).group(1)) for row in rows}
    else:
        found = {row[0] for row in rows}
    assert found == expected, sql


@pytest.mark.parametrize(("title", "chosen", "expected"), [
    ("Open incidents / A", ALL, 2),
    ("Open incidents / A", {"host": ["local"]}, 1),
    ("Escalated (in range) / A", {"host": ["b"]}, 0),
    ("Escalated (in range) / A", {"host": ["a"]}, 1),
    ("Remediation success rate / A", ALL, 4 / 5),
    ("Remediation success rate / A", {"host": ["a"]}, 2 / 3),
    ("Remediation success rate / A", {"host": ["b", "local"]}, 1.0),
])
def test_overview_stats_follow_the_host_variable(pg_url: str, title: str,
                                                 chosen: dict[str, list[str] | None],
                                                 expected: float) -> None:
    admin, _ = _dsn_of(pg_url)
    _seed_fleet(admin)
    board, query = _panel("autofix-overview", title)
    user = create_grafana_login(admin)
    try:
        [(value,)] = _rows(_dsn_of(pg_url, user)[1], _as_grafana_would(board, query, chosen))
    finally:
        drop_login(admin, user)
    assert value == pytest.approx(expected)


def test_regex_variables_reach_sql_only_dollar_quoted() -> None:
    """${name:regex} escapes regex characters, not quotes, and a ?var-host= URL value need
    not be one of the options: inside '...' it was an injection (?var-host=x' OR '1'='1).
    Dollar-quoted ($$...$$) it cannot end its string: every $ of the value comes escaped."""
    for board in load_dashboards().values():
        for query in iter_queries(board):
            if not query.is_sql:
                continue
            for match in VARIABLE.finditer(query.text):
                if (match.group(3) or match.group(6)) != "regex":
                    continue
                start, end = match.span()
                assert query.text[start - 2:start] == "$$" == query.text[end:end + 2], (
                    query.where, match.group(0))


HOSTILE_HOSTS = ["t' OR 't' IS DISTINCT FROM 'b", "x' OR '1'='1", "a' OR true OR 'x",
                 "'; DROP TABLE actions; --", "x$$ OR true OR $$", "a$", "\\", "a|b"]


def test_host_and_container_url_values_cannot_inject_sql(pg_url: str) -> None:
    """Whatever arrives as ?var-host= or ?var-container= on the Overview, the target app's
    annotations and the Incidents table shows no row (or fails to parse), as the read-only
    Grafana login; never every row."""
    import psycopg2

    admin, _ = _dsn_of(pg_url)
    _seed_fleet(admin)
    user = create_grafana_login(admin)
    checked = 0
    try:
        dsn = _dsn_of(pg_url, user)[1]
        for uid in ("autofix-overview", "target-app", "autofix-incidents"):
            board = dashboards_by_uid()[uid]
            for query in iter_queries(board):
                if not query.is_sql or "host" not in variable_names_used(query.text):
                    continue
                for hostile in HOSTILE_HOSTS:
                    sql = _as_grafana_would(board, query, {"host": [hostile],
                                                           "container": [hostile]})
                    try:
                        rows = _rows(dsn, sql)
                    except psycopg2.errors.SyntaxError:
                        continue
                    # No row matches: no group at all, or one count of 0 (a rate: None).
                    assert all(v in (0, None) for row in rows for v in row), (
                        query.where, hostile, rows)
                checked += 1
    finally:
        drop_login(admin, user)
    assert checked >= 12
    assert _attempt(admin, "SELECT count(*) FROM actions") == "ok"


def test_all_hosts_adds_no_filter_to_the_plan(pg_url: str) -> None:
    """Under All the host condition is a constant PostgreSQL folds away: the panels keep the
    index-only scans of migration 0015 (bench/NOTES.md section 9)."""
    admin, _ = _dsn_of(pg_url)
    board = dashboards_by_uid()["autofix-overview"]
    for title in ("Incidents by status / A", "Actions by outcome / A"):
        [query] = [q for q in iter_queries(board) if q.where == f"autofix-overview / {title}"]
        plan = "\n".join(row[0] for row in _rows(
            admin, "EXPLAIN " + _as_grafana_would(board, query, {})))
        assert "host" not in plan, plan
        chosen = _as_grafana_would(board, query, {"host": ["a"]})
        assert "'^a$'" in "\n".join(row[0] for row in _rows(admin, "EXPLAIN " + chosen))


BREAKERS = {"a/app": 2, "a/db": 2, "b/app": 0, "app": 2}  # `app`: the one host's plain key


def _promql(uid: str, title: str, chosen: dict[str, list[str] | None]) -> str:
    board, query = _panel(uid, title)
    variables = Variables.for_dashboard(board, {"job": ["autofix"], **chosen},
                                        {"__rate_interval": "20s"})
    return variables.interpolate(query.text, "prometheus")


@pytest.mark.parametrize(("chosen", "per_host", "per_target"), [
    (ALL, {"a": 2, "b": 0, "local": 1}, {"a/app": 2, "a/db": 2, "b/app": 0, "app": 2}),
    ({"host": ["b"]}, {"b": 0}, {"b/app": 0}),
    ({"host": ["a", "local"]}, {"a": 2, "local": 1}, {"a/app": 2, "a/db": 2, "app": 2}),
])
def test_breaker_panels_per_host_on_prometheus(
        tmp_path: Path, chosen: dict[str, list[str] | None], per_host: dict[str, int],
        per_target: dict[str, int]) -> None:
    """Open breakers per host and Circuit breaker per target, evaluated by Prometheus's own
    engine (promtool): a target `<host>/<name>` is on that host, a plain name on `local`;
    All shows every breaker."""
    from tests.harness.procs import require_binary

    def samples(label: str, values: dict[str, int]) -> list[dict[str, Any]]:
        return [{"labels": f'{{{label}="{key}"}}', "value": value}
                for key, value in values.items()]

    rules = tmp_path / "none.yml"
    rules.write_text("groups: []\n")
    cases = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": f'autofix_breaker_state{{job="autofix", target="{t}"}}',
                          "values": f"{state}x5"} for t, state in BREAKERS.items()],
        "promql_expr_test": [
            {"expr": _promql("autofix-overview", "Open breakers per host / A", chosen),
             "eval_time": "2m", "exp_samples": samples("host", per_host)},
            {"expr": _promql("autofix-overview", "Circuit breaker per target / A", chosen),
             "eval_time": "2m", "exp_samples": samples("target", per_target)}]}]}
    path = tmp_path / "breakers_test.yml"
    path.write_text(yaml.safe_dump(cases))
    done = subprocess.run([require_binary("promtool"), "test", "rules", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_target_app_all_hosts_matches_series_without_a_host_label(tmp_path: Path) -> None:
    """One host: Prometheus puts no `host` label, the variable has no value and All (`.*`)
    must still match every container; with several, a host keeps its own."""
    from tests.harness.procs import require_binary

    series = {'up{job="containers", container="app"}': 1,
              'up{job="containers", container="app", host="a"}': 1,
              'up{job="containers", container="app", host="b"}': 0}
    tests = []
    for chosen, expected in [(ALL, list(series)), ({"host": ["b"]}, [list(series)[2]])]:
        board, query = _panel("target-app", "Scrape up / A")
        expr = Variables.for_dashboard(board, {"job": ["containers"], **chosen}, {}
                                       ).interpolate(query.text, "prometheus")
        tests.append({"expr": expr, "eval_time": "1m",
                      "exp_samples": [{"labels": s, "value": series[s]} for s in expected]})
    rules = tmp_path / "none.yml"
    rules.write_text("groups: []\n")
    path = tmp_path / "target_app_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(rules)], "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": f"{v}x3"} for s, v in series.items()],
        "promql_expr_test": tests}]}))
    done = subprocess.run([require_binary("promtool"), "test", "rules", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
