"""bench/scale.py's seeding and dashboard timing, small: 2,000 incidents in a test database.

The seeded rows must be what the product could have written: statuses lifecycle knows,
playbooks the shipped file has, runs and actions that agree with their incident and run,
timestamps over the 90 days that end now. Timings are asserted in bench/, not here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
import yaml

from bench.scale_dashboards import RANGES, postgres_queries, time_dashboard_queries
from bench.scale_seed import SHIPPED_PLAYBOOKS, SPAN_DAYS, acting_playbook_steps, seed
from receiver.api.queries import ActionFilter
from receiver.store.lifecycle import IncidentStatus, RunStatus
from tests.harness.db import query
from tests.harness.postgres import Postgres

INCIDENTS = 2000


@pytest.fixture(scope="module")
def seeded(postgres: Postgres, pg_template: str) -> str:
    """One migrated copy for the module (as pg_url makes them), seeded once: the tests
    only read it. Two calls, several batches: seeding appends, a transaction a batch."""
    url = postgres.create_database(template=pg_template)
    first = seed(url, 1500, batch=700, vacuum=False, log=False)
    second = seed(url, INCIDENTS - 1500, batch=700, log=False)
    assert first["incidents"] + second["incidents"] == INCIDENTS
    return url


def one(url: str, sql: str) -> Any:
    [(value,)] = query(url, sql)
    return value


def test_counts_follow_the_playbooks(seeded: str) -> None:
    acting = "(" + ", ".join(f"'{name}'" for name in acting_playbook_steps()) + ")"
    assert one(seeded, "SELECT count(*) FROM incidents") == INCIDENTS
    # One run per acting incident, two for one in eight; none for a notify-only one.
    assert one(seeded, "SELECT count(*) FROM runs") == one(
        seeded, f"SELECT sum(1 + (id % 8 = 0)::int) FROM incidents WHERE playbook IN {acting}")
    assert one(seeded, "SELECT count(*) FROM runs r JOIN incidents i ON i.id = r.incident_id"
                       f" WHERE i.playbook NOT IN {acting} OR i.playbook IS NULL") == 0
    # One action per step reached; a guard's skip is one action.
    assert one(seeded, "SELECT count(*) FROM actions") == one(
        seeded, "SELECT sum(coalesce(current_step + 1, 1)) FROM runs")
    shipped = {p["name"] for p in yaml.safe_load(SHIPPED_PLAYBOOKS.read_text())["playbooks"]}
    playbooks = {row[0] for row in query(seeded, "SELECT DISTINCT playbook FROM incidents")}
    assert playbooks - {None} <= shipped
    targets = one(seeded, "SELECT count(DISTINCT target) FROM incidents")
    assert 100 <= targets <= 400


def test_every_status_is_one_lifecycle_knows(seeded: str) -> None:
    incident = {row[0] for row in query(seeded, "SELECT DISTINCT status FROM incidents")}
    assert incident == {s.value for s in IncidentStatus}  # every one, at 2,000 incidents
    run = {row[0] for row in query(seeded, "SELECT DISTINCT status FROM runs")}
    assert run <= {s.value for s in RunStatus}
    assert {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED} <= run
    outcomes = {row[0] for row in query(seeded, "SELECT DISTINCT outcome FROM actions")}
    assert outcomes <= set(get_args(get_args(ActionFilter.model_fields["outcome"].annotation)[0]))


def test_every_reference_holds(seeded: str) -> None:
    assert one(seeded, "SELECT count(*) FROM runs r LEFT JOIN incidents i"
                       " ON i.id = r.incident_id WHERE i.id IS NULL") == 0
    # An action names its run's incident, playbook and target.
    assert one(seeded, "SELECT count(*) FROM actions a LEFT JOIN runs r ON r.id = a.run_id"
                       " WHERE r.id IS NULL OR r.incident_id <> a.incident_id"
                       " OR r.playbook <> a.playbook OR r.target <> a.target") == 0
    assert one(seeded, "SELECT count(*) FROM runs r JOIN incidents i ON i.id = r.incident_id"
                       " WHERE r.playbook <> i.playbook OR r.target <> i.target") == 0
    # Resolved incidents say when; closed ones by whom; a resolution never seen firing
    # has no playbook.
    assert one(seeded, "SELECT count(*) FROM incidents WHERE (status = 'resolved')"
                       " <> (resolved_at IS NOT NULL)") == 0
    assert one(seeded, "SELECT count(*) FROM incidents WHERE status = 'closed'"
                       " AND closed_by IS NULL") == 0
    assert one(seeded, "SELECT count(*) FROM incidents WHERE resolved_unseen"
                       " AND playbook IS NOT NULL") == 0


def test_timestamps_span_ninety_days_and_keep_their_order(seeded: str) -> None:
    now = datetime.now(UTC)
    oldest, newest = query(seeded, "SELECT min(first_seen), max(first_seen) FROM incidents")[0]
    assert newest <= now and now - newest < timedelta(days=1)
    assert timedelta(days=SPAN_DAYS - 1) < newest - oldest <= timedelta(days=SPAN_DAYS)
    later = one(seeded, "SELECT max(greatest(last_seen, resolved_at, closed_at)) FROM incidents")
    assert later <= now
    assert one(seeded, "SELECT count(*) FROM incidents WHERE starts_at > first_seen"
                       " OR last_seen < first_seen OR resolved_at < starts_at") == 0
    assert one(seeded, "SELECT count(*) FROM runs r JOIN incidents i ON i.id = r.incident_id"
                       " WHERE r.queued_at < i.first_seen OR r.started_at < r.queued_at"
                       " OR r.finished_at < r.started_at") == 0
    assert one(seeded, "SELECT count(*) FROM actions a JOIN runs r ON r.id = a.run_id"
                       " WHERE a.started_at < r.started_at OR a.finished_at > r.finished_at"
                       " OR a.finished_at < a.started_at") == 0


def test_every_dashboard_query_is_timed_without_error(seeded: str) -> None:
    timed = time_dashboard_queries(seeded, repeats=1, explain=1)
    expected = [q.where for q in postgres_queries()]
    assert [entry["where"] for entry in timed["queries"]] == expected
    assert [(e["where"], e["error"]) for e in timed["queries"] if e["error"]] == []
    assert all(set(entry["ranges"]) == set(RANGES) for entry in timed["queries"])
    assert int(timed["incident"]) > 0
    [slowest] = timed["slowest"]
    assert "Execution Time" in slowest["plan"]
