"""Seed a migrated autofix database with incidents, their runs and actions, in SQL only.

Each `seed` call appends `count` incidents spread over the 90 days that end now (ids rise
with time within a call), in batches of `batch` incidents: one transaction per batch, each
three `INSERT ... SELECT` statements (incidents from generate_series, then runs from those
incidents, then actions from those runs), so the foreign keys hold by construction and
the schema's own constraints and triggers check every row. Then VACUUM (ANALYZE), so that
the measurements neither wait for autovacuum nor run on missing statistics.

What the rows look like (issue #33 asks for a realistic spread):
- alerts: the shipped rules' alertnames and a few an operator's own rules would add, with
  the playbook the shipped receiver/playbooks.yml gives each (notify-only ones are
  created closed and get no run, as ingest does); 300 containers, skewed so that a few
  flap a lot, 40 Swarm services, host-level alerts with no container;
- incident statuses: every lifecycle.IncidentStatus, most resolved;
- runs: only terminal lifecycle.RunStatus values. Queued, running and awaiting-approval
  runs would be claimed, reconciled or expired by the receiver while it is measured;
  the claim-latency measurement of the issue seeds its own queue;
- actions: one per step of the playbook (its steps read from the shipped file), up to
  the step that failed or was interrupted; a guard's skip is one action at step -1.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from receiver.store.ingest_store import NOTIFY_ONLY_REASON
from receiver.store.lifecycle import IncidentStatus, RunStatus

__all__ = ["ALERTS", "SPAN_DAYS", "TARGETS", "Alert", "acting_playbook_steps", "seed"]

SHIPPED_PLAYBOOKS = Path(__file__).resolve().parents[1] / "receiver" / "playbooks.yml"
SPAN_DAYS = 90
TARGETS = 300  # containers; Swarm services and hosts come on top
SERVICES = 40
HOSTS = 12
STEP_SLOT_S = 30  # each step starts this long after the previous one began
SKIP_REASONS = ("cooldown", "already_recovered", "target_not_found", "maintenance",
                "alert_resolved")


@dataclass(frozen=True)
class Alert:
    name: str
    percent: int  # share of all incidents
    playbook: str  # the shipped playbook that matches it first
    severity: str
    subject: str  # container, service, autofix or host: what its target is


ALERTS = (
    Alert("TargetDown", 18, "restart-on-target-down", "critical", "container"),
    Alert("HighErrorRate", 14, "restart-on-high-error-rate", "warning", "container"),
    Alert("HighLatencyP95", 14, "restart-on-high-latency", "warning", "container"),
    Alert("HighCPU", 6, "restart-on-resource-pressure", "warning", "container"),
    Alert("MemoryGrowth", 6, "restart-on-resource-pressure", "warning", "container"),
    Alert("SwarmTaskDown", 3, "force-update-swarm-task-down", "critical", "service"),
    Alert("AutofixActionsFailing", 1, "notify-autofix-self", "warning", "autofix"),
    Alert("AutofixBreakerOpen", 1, "notify-autofix-self", "warning", "autofix"),
    Alert("ContainerRestarting", 8, "notify-unmatched", "warning", "container"),
    Alert("ContainerOOMKilled", 5, "notify-unmatched", "critical", "container"),
    Alert("HostDiskFilling", 6, "notify-unmatched", "warning", "host"),
    Alert("HostHighLoad", 6, "notify-unmatched", "warning", "host"),
    Alert("HostMemoryPressure", 4, "notify-unmatched", "warning", "host"),
    Alert("CertificateExpiring", 3, "notify-unmatched", "info", "host"),
    Alert("PostgresReplicationLag", 3, "notify-unmatched", "warning", "host"),
    Alert("BackupMissed", 2, "notify-unmatched", "critical", "host"),
)


def acting_playbook_steps(path: Path = SHIPPED_PLAYBOOKS) -> dict[str, list[tuple[str, Any]]]:
    """{playbook: [(action, params), ...]} of the shipped playbooks that act (a playbook
    whose only steps notify is notify-only: its incidents are closed on arrival)."""
    steps: dict[str, list[tuple[str, Any]]] = {}
    for playbook in yaml.safe_load(path.read_text())["playbooks"]:
        actions = [next(iter(step.items())) for step in playbook["actions"]]
        if any(name != "notify" for name, _ in actions):
            steps[playbook["name"]] = [(name, params or {}) for name, params in actions]
    return steps


# Incident statuses, cumulative shares: (upper bound of the draw, status). The draw's
# first 1% are resolutions of alerts never seen firing (resolved_unseen, no playbook).
UNSEEN_SHARE = 0.01
ACTING_STATUSES = ((0.85, IncidentStatus.RESOLVED), (0.88, IncidentStatus.REMEDIATING),
                   (0.94, IncidentStatus.ESCALATED), (0.96, IncidentStatus.ACKNOWLEDGED),
                   (0.98, IncidentStatus.CLOSED), (1.01, IncidentStatus.OPEN))
NOTIFY_ONLY_STATUSES = ((0.80, IncidentStatus.RESOLVED), (1.01, IncidentStatus.CLOSED))


def _status_case(shares: tuple[tuple[float, str], ...]) -> str:
    whens = " ".join(f"WHEN r_status < {bound} THEN '{status}'" for bound, status in shares)
    return f"CASE {whens} END"


INSERT_INCIDENTS = f"""
WITH alert AS (
    SELECT * FROM unnest(CAST(:names AS text[]), CAST(:playbooks AS text[]),
                         CAST(:severities AS text[]), CAST(:subjects AS text[]),
                         CAST(:acting AS boolean[]))
        WITH ORDINALITY AS a(alertname, playbook, severity, subject, acts, k)
), drawn AS (
    SELECT CAST(:window_start AS timestamptz)
             + make_interval(secs => (g + random()) * :span_s / :count) AS seen,
           random() AS r_alert, random() AS r_target, random() AS r_status,
           random() AS r_ttr, random() AS r_count
    FROM generate_series(CAST(:first_g AS bigint), :last_g) AS g
), placed AS (
    SELECT d.*, a.alertname, a.severity, a.subject, a.acts,
           r_status < {UNSEEN_SHARE} AS unseen,
           CASE WHEN r_status < {UNSEEN_SHARE} THEN NULL ELSE a.playbook END AS playbook,
           CASE WHEN r_status < {UNSEEN_SHARE} THEN '{IncidentStatus.RESOLVED}'
                WHEN a.acts THEN {_status_case(ACTING_STATUSES)}
                ELSE {_status_case(NOTIFY_ONLY_STATUSES)} END AS status,
           floor({TARGETS} * r_target * r_target)::int AS idx,
           1 + floor(24 * r_count ^ 3)::int AS notifications,
           make_interval(secs => CASE WHEN a.acts THEN 120 ELSE 0 END
                                 + 60 * 60 ^ r_ttr) AS ttr
    FROM drawn d
    JOIN alert a ON a.k = (CAST(:slots AS int[]))[1 + floor(d.r_alert * 100)::int]
), subject AS (
    SELECT p.*,
           CASE WHEN subject = 'container' THEN 'app-' || lpad(idx::text, 3, '0')
                ELSE '' END AS container,
           CASE subject WHEN 'container' THEN 'app-' || lpad(idx::text, 3, '0')
                        WHEN 'service' THEN 'svc-' || lpad((idx % {SERVICES})::text, 2, '0')
                        WHEN 'autofix' THEN 'autofix'
                        ELSE alertname END AS target,
           'node-' || (idx % {HOSTS}) AS host,
           CASE WHEN unseen THEN seen - ttr ELSE seen - interval '30 seconds' END
             AS starts_at,
           CASE WHEN unseen THEN seen
                WHEN status = '{IncidentStatus.RESOLVED}'
                THEN least(CAST(:window_end AS timestamptz), seen + ttr) END AS resolved_at
    FROM placed p
)
INSERT INTO incidents (
    fingerprint, starts_at, ends_at, alertname, severity, container, target, playbook,
    labels, annotations, generator_url, status, notification_count, first_seen, last_seen,
    resolved_at, time_to_resolve_s, resolved_unseen, escalated_at, escalation_reason,
    trigger, acknowledged_at, acknowledged_by, closed_at, closed_by, close_reason,
    next_attempt_at, classification)
SELECT
    left(md5(alertname || '|' || target), 16),
    starts_at,
    resolved_at,
    alertname, severity, container, target, playbook,
    jsonb_strip_nulls(jsonb_build_object(
        'alertname', alertname, 'severity', severity, 'container', nullif(container, ''),
        'service', CASE WHEN subject = 'service' THEN target END,
        'component', CASE WHEN subject = 'autofix' THEN 'autofix' END,
        'instance', format('%s:9100', host),
        'job', CASE subject WHEN 'container' THEN 'containers' ELSE 'node' END)),
    jsonb_build_object('summary', format('%s on %s', alertname, target),
                       'runbook_url', 'runbooks.md#' || lower(alertname)),
    'http://prometheus:9090/graph?g0.expr=' || alertname,
    status,
    CASE WHEN unseen THEN 1 ELSE notifications END,
    seen,
    CASE WHEN resolved_at IS NOT NULL THEN resolved_at
         ELSE least(CAST(:window_end AS timestamptz),
                    seen + (notifications - 1) * interval '1 hour') END,
    resolved_at,
    extract(epoch FROM resolved_at - starts_at),
    unseen,
    CASE WHEN status IN ('{IncidentStatus.ESCALATED}', '{IncidentStatus.ACKNOWLEDGED}')
         THEN seen + interval '3 minutes' END,
    CASE WHEN status IN ('{IncidentStatus.ESCALATED}', '{IncidentStatus.ACKNOWLEDGED}')
         THEN 'the run failed or was interrupted: a human should look' END,
    'alert',
    CASE WHEN status = '{IncidentStatus.ACKNOWLEDGED}' THEN seen + interval '15 minutes' END,
    CASE WHEN status = '{IncidentStatus.ACKNOWLEDGED}' THEN 'oncall' END,
    CASE WHEN NOT acts AND NOT unseen THEN seen
         WHEN status = '{IncidentStatus.CLOSED}' THEN seen + interval '30 minutes' END,
    CASE WHEN NOT acts AND NOT unseen THEN 'autofix'
         WHEN status = '{IncidentStatus.CLOSED}' THEN 'oncall' END,
    CASE WHEN NOT acts AND NOT unseen THEN :notify_only_reason
         WHEN status = '{IncidentStatus.CLOSED}' THEN 'not actionable' END,
    NULL, NULL
FROM subject
ON CONFLICT ON CONSTRAINT uq_incident_occurrence DO NOTHING
"""

# One run per acting incident, two for one in eight: the first skipped by a pause and
# queued again when it ended (incidents/pause.py). The last run's status follows its
# incident's: a run that failed escalated it, a guard's skip left it open or closed.
INSERT_RUNS = f"""
WITH playbook AS (
    SELECT * FROM unnest(CAST(:acting_playbooks AS text[]), CAST(:step_counts AS int[]))
        AS p(name, steps)
), planned AS (
    SELECT i.id AS incident_id, i.playbook, i.target, i.first_seen, k,
           1 + (i.id % 8 = 0)::int AS runs, p.steps, i.status AS incident_status,
           (CAST(:skip_reasons AS text[]))[1 + i.id % {len(SKIP_REASONS)}] AS skip_reason,
           'node-' || (abs(hashtext(i.target)) % {HOSTS}) AS host
    FROM incidents i
    JOIN playbook p ON p.name = i.playbook
    CROSS JOIN LATERAL generate_series(1, 1 + (i.id % 8 = 0)::int) AS k
    WHERE i.id > :after_id AND i.id <= :last_id
), decided AS (
    SELECT *,
           CASE WHEN k < runs THEN '{RunStatus.SKIPPED}'
                WHEN incident_status IN ('{IncidentStatus.RESOLVED}',
                                         '{IncidentStatus.REMEDIATING}')
                  THEN '{RunStatus.SUCCEEDED}'
                WHEN incident_status IN ('{IncidentStatus.ESCALATED}',
                                         '{IncidentStatus.ACKNOWLEDGED}')
                  THEN CASE WHEN incident_id % 10 = 0 THEN '{RunStatus.INTERRUPTED}'
                            ELSE '{RunStatus.FAILED}' END
                ELSE '{RunStatus.SKIPPED}' END AS status,
           first_seen + (k - 1) * interval '10 minutes' + interval '50 milliseconds'
             AS queued_at
    FROM planned
), stepped AS (
    SELECT *,
           CASE WHEN k < runs THEN 'paused' WHEN status = '{RunStatus.SKIPPED}' THEN skip_reason END
             AS skip,
           CASE status WHEN '{RunStatus.SUCCEEDED}' THEN steps - 1
                       WHEN '{RunStatus.SKIPPED}' THEN NULL
                       ELSE least(steps - 1, incident_id % 2) END AS last_step,
           queued_at + interval '200 milliseconds' AS started_at
    FROM decided
)
INSERT INTO runs (
    incident_id, playbook, target, trigger, alert_status, reason, requested_by, status,
    queued_at, started_at, admitted_at, host, heartbeat_at, finished_at, worker, dry_run,
    error, config_version, lane, priority, current_step)
SELECT incident_id, playbook, target, 'alert', 'firing', skip, NULL, status,
       queued_at, started_at,
       CASE WHEN skip IS NULL THEN started_at END,
       CASE WHEN skip IS NULL THEN host END,
       CASE WHEN skip IS NULL THEN started_at + (last_step + 1) * interval '{STEP_SLOT_S} s'
            END,
       started_at + (coalesce(last_step, -1) + 1) * interval '{STEP_SLOT_S} s',
       'autofix-1:' || (1000 + incident_id % 4),
       false,
       CASE WHEN skip IS NOT NULL THEN skip || ': held by a guard'
            WHEN status = '{RunStatus.FAILED}'
              THEN format('step %s failed: not healthy within the timeout', last_step + 1)
            WHEN status = '{RunStatus.INTERRUPTED}'
              THEN format('worker autofix-1:%s stopped during the run; not resumed',
                          1000 + incident_id % 4) END,
       NULL, 'act', 0, last_step
FROM stepped
"""

INSERT_ACTIONS = f"""
WITH step AS (
    SELECT * FROM unnest(CAST(:step_playbooks AS text[]), CAST(:step_indexes AS int[]),
                         CAST(:step_actions AS text[]), CAST(:step_params AS jsonb[]))
        AS s(playbook, step, action, params)
)
INSERT INTO actions (
    run_id, incident_id, playbook, action, target, params, outcome, reason, error,
    started_at, finished_at, duration_s, trigger, step)
SELECT r.id, r.incident_id, r.playbook, coalesce(s.action, 'guard'), r.target,
       coalesce(s.params, '{{}}'::jsonb),
       CASE WHEN n < 0 THEN 'skipped'
            WHEN n < r.current_step OR r.status = '{RunStatus.SUCCEEDED}' THEN 'succeeded'
            WHEN r.status = '{RunStatus.FAILED}' THEN 'failed'
            ELSE 'interrupted' END,
       CASE WHEN n < 0 THEN r.reason
            WHEN n = r.current_step AND r.status = '{RunStatus.INTERRUPTED}' THEN 'worker_stopped'
            END,
       CASE WHEN n < 0 OR (n = r.current_step AND r.status <> '{RunStatus.SUCCEEDED}')
            THEN r.error END,
       r.started_at + greatest(n, 0) * interval '{STEP_SLOT_S} s',
       r.started_at + greatest(n, 0) * interval '{STEP_SLOT_S} s' + d.took,
       extract(epoch FROM d.took),
       r.trigger, n
FROM runs r
CROSS JOIN LATERAL generate_series(CASE WHEN r.current_step IS NULL THEN -1 ELSE 0 END,
                                   coalesce(r.current_step, -1)) AS n
CROSS JOIN LATERAL (SELECT CASE WHEN n < 0 THEN interval '0'
                                ELSE make_interval(secs => {STEP_SLOT_S}
                                                   * (0.1 + 0.8 * random())) END
                    AS took) d
LEFT JOIN step s ON s.playbook = r.playbook AND s.step = n
WHERE r.incident_id > :after_id AND r.incident_id <= :last_id
"""


def _vocabulary(steps: dict[str, list[tuple[str, Any]]]) -> dict[str, Any]:
    """The statements' parameters besides ids and times: alerts, their percent slots, the
    acting playbooks and their steps, skip reasons."""
    slots = [k for k, alert in enumerate(ALERTS, start=1) for _ in range(alert.percent)]
    if len(slots) != 100:
        raise ValueError(f"ALERTS' percents add up to {len(slots)}, not 100")
    flat = [(name, index, action, json.dumps(params))
            for name, actions in steps.items() for index, (action, params) in enumerate(actions)]
    return {
        "names": [a.name for a in ALERTS], "playbooks": [a.playbook for a in ALERTS],
        "severities": [a.severity for a in ALERTS], "subjects": [a.subject for a in ALERTS],
        "acting": [a.playbook in steps for a in ALERTS], "slots": slots,
        "acting_playbooks": list(steps), "step_counts": [len(s) for s in steps.values()],
        "step_playbooks": [row[0] for row in flat], "step_indexes": [row[1] for row in flat],
        "step_actions": [row[2] for row in flat], "step_params": [row[3] for row in flat],
        "notify_only_reason": NOTIFY_ONLY_REASON, "skip_reasons": list(SKIP_REASONS),
    }


def _max_id(conn: Connection, table: str) -> int:
    return int(conn.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table}").scalar_one())


def seed(url: str, count: int, batch: int = 1_000_000, vacuum: bool = True,
         log: bool = True, end_ago: timedelta = timedelta(0)) -> dict[str, Any]:
    """Append `count` incidents with their runs and actions; what was inserted, and how
    fast. The database must be at the head migration. `end_ago`: the 90 days end that long
    before now (rows a retention prune will find expired)."""
    vocabulary = _vocabulary(acting_playbook_steps())
    engine = create_engine(url)
    inserted = {"incidents": 0, "runs": 0, "actions": 0}
    try:
        with engine.connect() as conn:
            window_end: datetime = conn.exec_driver_sql("SELECT now()").scalar_one() - end_ago
        window = {"window_end": window_end, "span_s": SPAN_DAYS * 86400.0, "count": count,
                  "window_start": window_end - timedelta(days=SPAN_DAYS)}
        started = time.perf_counter()
        for first in range(0, count, batch):
            last = min(first + batch, count) - 1
            with engine.begin() as conn:
                after = _max_id(conn, "incidents")
                done = conn.execute(text(INSERT_INCIDENTS), {
                    **vocabulary, **window, "first_g": first, "last_g": last}).rowcount
                # This batch's incidents: the seeder is the only writer while it runs.
                ids = {**vocabulary, "after_id": after, "last_id": _max_id(conn, "incidents")}
                runs = conn.execute(text(INSERT_RUNS), ids).rowcount
                actions = conn.execute(text(INSERT_ACTIONS), ids).rowcount
            for table, rows in (("incidents", done), ("runs", runs), ("actions", actions)):
                inserted[table] += rows
            if log:
                print(f"  seed: incidents {first + 1:,}-{last + 1:,} of {count:,}: "
                      f"{done + runs + actions:,} rows", flush=True)
        seconds = time.perf_counter() - started
        vacuum_s = _vacuum_analyze(engine) if vacuum else 0.0
    finally:
        engine.dispose()
    rows = sum(inserted.values())
    return {**inserted, "rows": rows, "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds, 1) if seconds else None,
            "incidents_per_s": round(inserted["incidents"] / seconds, 1) if seconds else None,
            "vacuum_analyze_s": round(vacuum_s, 3), "batch": batch}


def _vacuum_analyze(engine: Any) -> float:
    """VACUUM cannot run in a transaction: an autocommit connection."""
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE) incidents, runs, actions")
    return time.perf_counter() - started
