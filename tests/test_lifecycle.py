"""Incidents and runs as one state machine (issue #13), on SQLite and PostgreSQL.

The in-memory executor and an injectable clock stand in for dockerd and for time here;
the real-dockerd scenarios (database blip, SIGKILL of a worker) are in
test_lifecycle_faults.py.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from receiver.engine.retries import queue_due_retries
from receiver.runtime.runner import Runner
from receiver.store.lifecycle import (
    INCIDENT_TRANSITIONS,
    OPEN_INCIDENT_STATUSES,
    IncidentStatus,
    transition_incident,
)
from receiver.store.models import Action, AuditEntry, Incident, Run
from tests.conftest import api_headers
from tests.harness.app_driver import drain, incidents, runs
from tests.harness.memory_app import fire, make_app
from tests.harness.memory_executor import MemoryExecutor
from tests.harness.playbook_yaml import restart_playbook

# ---- the table -------------------------------------------------------------------------

def test_every_incident_status_is_reachable_and_resolve_wins_over_all() -> None:
    reachable = {t.to for t in INCIDENT_TRANSITIONS.values()} | {IncidentStatus.OPEN}
    assert reachable == set(IncidentStatus)
    assert set(INCIDENT_TRANSITIONS["resolve"].allowed_from) == set(IncidentStatus) - {
        IncidentStatus.RESOLVED}
    # Only what the incident's own chain or rollback did after the resolve moves it again.
    leaving = [event for event, t in INCIDENT_TRANSITIONS.items()
               if IncidentStatus.RESOLVED in t.allowed_from]
    assert leaving == ["escalate_after_resolve"]
    assert INCIDENT_TRANSITIONS["escalate_after_resolve"].to == IncidentStatus.ESCALATED


def test_the_readme_diagram_draws_exactly_the_incident_transitions() -> None:
    import re
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    section = readme.split("### Incidents and runs: one state machine", 1)[1]
    diagram = section.split("```mermaid", 1)[1].split("```", 1)[0]
    statuses = {status.value for status in IncidentStatus}
    drawn = {(a, b) for a, b in re.findall(r"^\s*(\w+) --> (\w+)", diagram, re.M)
             if a in statuses and b in statuses}
    table = {(str(src), str(t.to)) for t in INCIDENT_TRANSITIONS.values()
             for src in t.allowed_from}
    assert drawn == table


def test_a_resolve_between_read_and_write_is_not_overwritten(db_url, app_factory,
                                                            tmp_path) -> None:
    """The lost update of the issue: a runner read `open`, the resolve committed, then the
    runner wrote `remediating`. A compare-and-set cannot write over the resolve."""
    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    client = app.test_client()
    fire(client, {"container": "web"})
    database = app.extensions["autofix"].database
    with database.session() as runner_session:
        stale = runner_session.scalars(select(Incident)).one()
        assert stale.status == "open"
        fire(client, {"container": "web"}, status="resolved")  # commits in between
        assert not transition_incident(runner_session, stale.id, "start")
        assert not transition_incident(runner_session, stale.id, "escalate")
    assert [i.status for i in incidents(app)] == ["resolved"]


def test_a_resolve_during_the_run_ends_resolved_whatever_the_run_does(
        db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    executor.stays_unhealthy.add("web")  # wait_healthy fails: the run escalates
    client = app.test_client()
    executor.on_restart = lambda _name: fire(client, {"container": "web"}, status="resolved")
    fire(client, {"container": "web"})
    drain(app)
    [incident] = incidents(app)
    assert incident.status == "resolved" and incident.resolved_at is not None
    assert [r.status for r in runs(app)] == ["failed"]
    assert incident.next_attempt_at is None  # a resolved incident is never retried


# ---- terminal states -------------------------------------------------------------------

def test_manual_notify_only_and_dry_run_incidents_close_when_their_run_ends(
        db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    client = app.test_client()
    fire(client, {"alertname": "DiskFilling", "container": "db"})  # notify-only
    response = client.post("/api/v1/playbooks/restart-on-down/run", headers=api_headers(),
                           json={"labels": {"container": "web"}, "reason": "test"})
    assert response.status_code == 202, response.json
    dry = client.post("/api/v1/playbooks/restart-on-down/run", headers=api_headers(),
                      json={"labels": {"container": "web"}, "reason": "t", "dry_run": True})
    assert dry.status_code == 202, dry.json
    drain(app)
    closed = {i.alertname: (i.status, i.closed_by, i.close_reason) for i in incidents(app)}
    assert closed["DiskFilling"][0] == "closed"
    assert "notify-only" in closed["DiskFilling"][2]
    statuses = [i.status for i in incidents(app)]
    assert statuses == ["closed", "closed", "closed"], closed
    assert all(i.closed_by == "autofix" for i in incidents(app))
    with app.extensions["autofix"].database.session() as session:
        open_count = session.scalar(select(Incident.id).where(
            Incident.status.in_(OPEN_INCIDENT_STATUSES)).limit(1))
    assert open_count is None
    # A closed notify-only incident still resolves when its alert does: resolve wins.
    fire(client, {"alertname": "DiskFilling", "container": "db"}, status="resolved")
    assert incidents(app)[0].status == "resolved"


def test_acknowledge_and_close_through_the_api(db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    executor.stays_unhealthy.add("web")
    client = app.test_client()
    fire(client, {"container": "web"})
    drain(app)
    [incident] = incidents(app)
    assert incident.status == "escalated" and incident.next_attempt_at is not None
    url = f"/api/v1/incidents/{incident.id}"
    body = {"actor": "alice", "reason": "looking at it"}
    assert client.post(f"{url}/acknowledge", json=body).status_code == 401
    first = client.post(f"{url}/acknowledge", json=body, headers=api_headers())
    assert first.status_code == 200 and first.json["status"] == "acknowledged"
    assert first.json["acknowledged_by"].startswith("alice")
    again = client.post(f"{url}/acknowledge", json=body, headers=api_headers())
    assert again.status_code == 200 and again.json["acknowledged_at"] == first.json[
        "acknowledged_at"]  # idempotent: the first acknowledgement stands
    assert client.post(f"{url}/acknowledge", json={"actor": ""},
                       headers=api_headers()).status_code == 400
    closed = client.post(f"{url}/close", json={"actor": "alice", "reason": "disk replaced"},
                         headers=api_headers())
    assert closed.status_code == 200 and closed.json["status"] == "closed"
    assert closed.json["next_attempt_at"] is None and closed.json["close_reason"] == (
        "disk replaced")
    for verb in ("close", "acknowledge"):
        conflict = client.post(f"{url}/{verb}", json=body, headers=api_headers())
        assert conflict.status_code == 409 and conflict.json["reason"] == "incident_closed"
    assert client.post("/api/v1/incidents/999999/close", json=body,
                       headers=api_headers()).status_code == 404
    with app.extensions["autofix"].database.session() as session:
        verbs = [(a.verb, a.subject) for a in session.scalars(select(AuditEntry)
                                                               .order_by(AuditEntry.id))]
    assert verbs == [("incident_acknowledge", str(incident.id)),
                     ("incident_close", str(incident.id))]
    # A closed incident gets no more automatic attempts, and resolve still wins.
    assert queue_due_retries(app.extensions["autofix"]) == []
    fire(client, {"container": "web"}, status="resolved")
    assert incidents(app)[0].status == "resolved"


# ---- breaker reset ---------------------------------------------------------------------

def test_breaker_reset_really_resets(db_url, app_factory, tmp_path) -> None:
    app, executor, clock = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    client = app.test_client()
    manual = {"labels": {"container": "web"}, "reason": "test"}
    for _ in range(3):
        assert client.post("/api/v1/playbooks/restart-on-down/run", json=manual,
                           headers=api_headers()).status_code == 202
        drain(app)
        clock.advance(1)
    refused = client.post("/api/v1/playbooks/restart-on-down/run", json=manual,
                          headers=api_headers())
    assert refused.status_code == 409 and refused.json["reason"] == "breaker_open"
    assert isinstance(refused.json["retry_after_s"], float)
    assert int(refused.headers["Retry-After"]) >= refused.json["retry_after_s"]
    reset = client.post("/api/v1/breakers/web/reset", headers=api_headers(),
                        json={"actor": "bob", "reason": "fixed the config"})
    assert reset.status_code == 200 and reset.json["state"] == "closed"
    # The manual path: admitted at once (the issue: 409 "circuit breaker is open").
    after = client.post("/api/v1/playbooks/restart-on-down/run", json=manual,
                        headers=api_headers())
    assert after.status_code == 202, after.json
    drain(app)
    # The alert path: the first runs after the reset count from zero, not from before.
    for minute in range(2):
        clock.advance(1)
        fire(client, {"container": "web"}, starts=clock.now - timedelta(seconds=0.5))
        drain(app)
    assert executor.restarts("web") == 6
    breakers = client.get("/api/v1/breakers", headers=api_headers()).json["items"]
    assert breakers[0]["state"] == "closed"


# ---- CrashLoopBackOff ------------------------------------------------------------------

def test_a_still_firing_incident_is_retried_with_a_growing_backoff(
        db_url, app_factory, tmp_path) -> None:
    """One occurrence keeps firing (Alertmanager re-sends the same startsAt, deduplicated):
    autofix queues the next attempts itself; the breaker bounds them and its open period
    doubles up to open_for_max (1m, 2m, 4m, 4m)."""
    app, executor, clock = make_app(app_factory, db_url, tmp_path)
    services = app.extensions["autofix"]
    executor.add("web")
    executor.stays_unhealthy.add("web")
    client = app.test_client()
    fire(client, {"container": "web"})
    drain(app)
    restarts_at: list[datetime] = [clock.now]
    due_times: list[datetime] = []
    for _ in range(12):
        fire(client, {"container": "web"})  # the repeat Alertmanager sends: deduplicated
        [incident] = incidents(app)
        assert incident.status == "escalated" and incident.next_attempt_at is not None
        due_times.append(incident.next_attempt_at)
        clock.now = incident.next_attempt_at - timedelta(seconds=0.5)
        assert queue_due_retries(services) == []  # not before it is due
        clock.now = incident.next_attempt_at
        before = executor.restarts("web")
        assert len(queue_due_retries(services)) == 1
        assert queue_due_retries(services) == []  # exactly one retry per due time
        drain(app)
        if executor.restarts("web") > before:
            restarts_at.append(clock.now)
    gaps = [round((b - a).total_seconds()) for a, b in itertools.pairwise(restarts_at)]
    # 3 in the window (cooldown 0: 1 s apart), then trials 1m, 2m, 4m, 4m (capped) after
    # the failure that follows each (+1 s: the failed trial's own retry re-opens it).
    assert gaps[:2] == [1, 1], gaps
    assert gaps[2:6] == [61, 121, 241, 241], gaps
    api = client.get(f"/api/v1/incidents/{incidents(app)[0].id}", headers=api_headers()).json
    assert api["next_attempt_at"] is not None
    retry_runs = [r for r in runs(app) if r.trigger == "retry"]
    assert retry_runs and all(r.status in ("failed", "skipped") for r in retry_runs)
    # Resolution stops the loop.
    fire(client, {"container": "web"}, status="resolved")
    clock.advance(3600)
    assert queue_due_retries(services) == []


def test_no_retry_for_manual_runs_or_when_the_run_succeeded(db_url, app_factory,
                                                            tmp_path) -> None:
    app, executor, clock = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    client = app.test_client()
    fire(client, {"container": "web"})
    drain(app)
    executor.stays_unhealthy.add("web")
    assert client.post("/api/v1/playbooks/restart-on-down/run", headers=api_headers(),
                       json={"labels": {"container": "web"}, "reason": "t"}).status_code == 202
    drain(app)
    assert [r.status for r in runs(app)] == ["succeeded", "failed"]
    assert all(i.next_attempt_at is None for i in incidents(app))
    clock.advance(3600)
    assert queue_due_retries(app.extensions["autofix"]) == []


# ---- the config a run was planned with -------------------------------------------------

V1 = restart_playbook(wait_timeout_s=0.2, running_for_s=0)
V2 = V1.replace("      - restart: {timeout_s: 5}\n", "      - stop: {timeout_s: 5}\n")


def test_a_run_executes_the_version_it_was_planned_with_on_another_app(
        pg_url, app_factory, tmp_path) -> None:
    """Two receivers share one database. A reload on A changes what B's runner executes,
    although B serves no request; a run planned before the reload keeps its version."""
    path_a, path_b = tmp_path / "a.yml", tmp_path / "b.yml"
    path_a.write_text(V1)
    path_b.write_text(V1)
    exec_a, exec_b = MemoryExecutor(), MemoryExecutor()
    app_a = app_factory(pg_url, playbooks=path_a, executor=exec_a, run_lease_s=3.0)
    app_b = app_factory(pg_url, playbooks=path_b, executor=exec_b, run_lease_s=3.0)
    for executor in (exec_a, exec_b):
        executor.add("web")
        executor.add("api")
    client_a = app_a.test_client()
    fire(client_a, {"container": "web"})  # planned with v1, not yet executed
    path_a.write_text(V2)
    assert client_a.post("/-/reload", headers=api_headers()).status_code == 200
    fire(client_a, {"container": "api"})  # planned with v2
    services_b = app_b.extensions["autofix"]
    assert services_b.config.current.sha256 != app_a.extensions["autofix"].config.current.sha256
    drain(app_b)
    assert exec_b.calls == [("restart", "web"), ("stop", "api")]
    versions = [r.config_version for r in runs(app_b)]
    assert versions[0] != versions[1] and None not in versions
    # B's own current config follows the reload from its heartbeat alone.
    runner = Runner(services_b)
    runner.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while services_b.config.current.sha256 != app_a.extensions[
                "autofix"].config.current.sha256:
            assert datetime.now(UTC) < deadline, "B never saw the reload"
            runner._stop.wait(0.2)
    finally:
        runner.stop(5)


def test_a_run_queued_by_another_process_is_executed_by_an_idle_runner(
        pg_url, app_factory, tmp_path, monkeypatch) -> None:
    """B's runner threads are idle and nothing in B wakes them (their own timeout is made
    100 s): B's poller sees the run A queued, and B executes it (once)."""
    monkeypatch.setattr("receiver.runtime.runner.IDLE_WAIT_POLLS", 1000)
    path = tmp_path / "p.yml"
    path.write_text(V1)
    exec_a, exec_b = MemoryExecutor(), MemoryExecutor()
    app_a = app_factory(pg_url, playbooks=path, executor=exec_a)
    app_b = app_factory(pg_url, playbooks=path, executor=exec_b, runner_poll_s=0.1)
    exec_b.add("web")
    runner = Runner(app_b.extensions["autofix"])
    runner.start()
    try:
        runner._stop.wait(0.5)  # every thread has polled once and is waiting
        fire(app_a.test_client(), {"container": "web"})
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while not exec_b.calls:
            assert datetime.now(UTC) < deadline, "B's runner never took A's run"
            runner._stop.wait(0.05)
    finally:
        runner.stop(5)
    assert exec_b.calls == [("restart", "web")] and exec_a.calls == []
    assert [r.status for r in runs(app_b)] == ["succeeded"]


# ---- replicas: a stale run of another host is reconciled once -------------------------

def _running_on(app: Any, executor: MemoryExecutor, worker: str) -> int:
    """A run claimed by `worker` (another host) and under way at step 0, heartbeat now."""
    from receiver.runtime.runner import claim_next

    executor.add("web")
    fire(app.test_client(), {"container": "web"})
    services = app.extensions["autofix"]
    run_id = claim_next(services, worker)
    assert run_id is not None
    with services.database.session() as session:
        session.execute(update(Run).where(Run.id == run_id).values(current_step=0))
    return run_id


def test_two_replicas_reconcile_a_stale_run_of_another_host_once(
        pg_url, app_factory, tmp_path) -> None:
    from receiver.runtime.runner import reconcile_interrupted

    app, executor, clock = make_app(app_factory, pg_url, tmp_path)
    run_id = _running_on(app, executor, "replica-a:4242")
    services = app.extensions["autofix"]
    lease = timedelta(seconds=services.settings.run_lease_s)
    assert reconcile_interrupted(services, stale_before=clock() - lease) == []  # in lease
    clock.advance(lease.total_seconds() + 1)
    start = threading.Barrier(2)

    def replica(_: int) -> list[int]:
        start.wait(10)
        return reconcile_interrupted(services, stale_before=clock() - lease)

    with ThreadPoolExecutor(2) as pool:
        done = [run for result in pool.map(replica, range(2)) for run in result]
    assert done == [run_id]
    [run] = runs(app)
    assert run.status == "interrupted" and "replica-a:4242" in (run.error or "")
    with services.database.session() as session:
        actions = [(a.step, a.outcome) for a in session.scalars(select(Action))]
    assert actions == [(0, "interrupted")]
    assert [i.status for i in incidents(app)] == ["escalated"]


def test_a_heartbeat_renewed_after_the_lookup_keeps_the_run(
        pg_url, app_factory, tmp_path, monkeypatch) -> None:
    """The lease is re-checked in the interrupt itself: a replica that read the run as
    stale, then lost the race to the owner's heartbeat, leaves it running."""
    import receiver.runtime.runner as runner_module

    app, executor, clock = make_app(app_factory, pg_url, tmp_path)
    run_id = _running_on(app, executor, "replica-a:4242")
    services = app.extensions["autofix"]
    clock.advance(services.settings.run_lease_s + 1)
    original = runner_module.transition_run_if

    def heartbeat_first(session: Any, *args: Any, **kwargs: Any) -> bool:
        with services.database.session() as owner:  # the owner's heartbeat commits first
            owner.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=clock()))
        return original(session, *args, **kwargs)

    monkeypatch.setattr(runner_module, "transition_run_if", heartbeat_first)
    stale_before = clock() - timedelta(seconds=services.settings.run_lease_s)
    assert runner_module.reconcile_interrupted(services, stale_before=stale_before) == []
    assert [r.status for r in runs(app)] == ["running"]
    assert [i.status for i in incidents(app)] != ["escalated"]


# ---- runs are recorded once ------------------------------------------------------------

def test_an_outcome_written_twice_is_one_row(db_url, app_factory, tmp_path) -> None:
    from receiver.engine.execution import insert_action

    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    fire(app.test_client(), {"container": "web"})
    drain(app)
    database = app.extensions["autofix"].database
    with database.session() as session:
        first = session.scalars(select(Action).where(Action.step == 0)).one()
        values = {c.name: getattr(first, c.name) for c in Action.__table__.columns
                  if c.name != "id"}
        assert insert_action(session, values) is False
    with database.session() as session:
        assert len(list(session.scalars(select(Action).where(Action.step == 0)))) == 1


@pytest.mark.parametrize("status", ["open", "remediating", "escalated", "acknowledged",
                                    "closed", "resolved"])
def test_status_filter_accepts_every_status(status, db_url, app_factory, tmp_path) -> None:
    app, _, _ = make_app(app_factory, db_url, tmp_path)
    response = app.test_client().get(f"/api/v1/incidents?status={status}",
                                     headers=api_headers())
    assert response.status_code == 200


def test_a_breaker_is_reset_by_any_alias_of_its_container(db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    web = executor.add("web")
    executor.stays_unhealthy.add("web")
    client = app.test_client()
    fire(client, {"container": "web"})
    drain(app)
    reset = client.post(f"/api/v1/breakers/{web.id[:12]}/reset", headers=api_headers(),
                        json={"actor": "bob", "reason": "by id"})
    assert reset.status_code == 200 and reset.json["target"] == "web", reset.json
    missing = client.post("/api/v1/breakers/nosuch/reset", headers=api_headers(),
                          json={"actor": "bob", "reason": "x"})
    assert missing.status_code == 404


def test_already_recovering_survives_an_alert_from_year_one() -> None:
    from receiver.executor import TargetState
    from receiver.executor.docker_executor import DockerExecutor

    state = TargetState(name="web", id="f" * 64, status="running", restart_count=2,
                        started_at=datetime(2026, 1, 1, tzinfo=UTC))
    year_one = datetime(1, 1, 1, 0, 0, 30, tzinfo=UTC)
    why = DockerExecutor(None, 1.0).already_recovering(state, year_one, timedelta(minutes=1))
    assert why is not None and "started at" in why


# ---- observe mode and dry runs ---------------------------------------------------------

def test_observe_mode_marks_its_runs_dry_run_and_keeps_the_incident_open(
        db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path,
                                restart_playbook(mode="observe", running_for_s=0))
    executor.add("web")
    client = app.test_client()
    fire(client, {"container": "web"})
    drain(app)
    [run] = runs(app)
    assert run.status == "succeeded" and run.dry_run is True
    assert all(call[0] != "restart" for call in executor.calls)
    [incident] = incidents(app)
    assert incident.status == "open" and incident.closed_at is None  # the alert still fires
    assert incident.next_attempt_at is None  # a dry run is not retried
    listed = client.get("/api/v1/runs", headers=api_headers()).json["items"]
    assert [r["dry_run"] for r in listed] == [True]
    fire(client, {"container": "web"}, status="resolved")
    assert [i.status for i in incidents(app)] == ["resolved"]


def test_every_skipped_run_carries_its_reason(db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, restart_playbook())
    executor.add("web", labels={})  # not opted in
    fire(app.test_client(), {"container": "web"})
    drain(app)
    [run] = runs(app)
    assert run.status == "skipped" and run.reason == "target_not_allowed", run.error
