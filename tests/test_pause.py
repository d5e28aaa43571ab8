"""The kill switch (#19): while paused no step that leaves the process starts;
recording, notifying and dry runs go on.

In-process tests use the in-memory executor and an injectable clock; the last test runs
`autofix serve` with two worker processes against a real dockerd and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.incidents.pause import end_lapsed_pauses
from receiver.notify import Event
from receiver.notify.messages import build_notice_slack, build_notice_webhook
from receiver.store.models import Action, AuditEntry, Incident, Outbox
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, api_headers
from tests.harness.app_driver import drain, runs
from tests.harness.containers import run_container, started_at
from tests.harness.db import query
from tests.harness.http_client import post_json
from tests.harness.memory_app import fire, make_app
from tests.harness.metrics import scrape, value
from tests.harness.playbook_yaml import restart_playbook
from tests.harness.procs import wait_for
from tests.harness.receiver import start_receiver
from tests.harness.slack_stub import start_slack_stub
from tests.payloads import alert, notification

PAUSE = {"actor": "alice", "reason": "maintenance window"}


def guard_reasons(app: Any) -> list[str | None]:
    with app.extensions["autofix"].database.session() as session:
        return [a.reason for a in session.scalars(
            select(Action).where(Action.action == "guard").order_by(Action.id))]


def audit(app: Any) -> list[tuple[str, str]]:
    with app.extensions["autofix"].database.session() as session:
        return [(e.verb, e.reason) for e in session.scalars(
            select(AuditEntry).order_by(AuditEntry.id))]


def test_an_alert_during_a_pause_is_recorded_and_skipped_then_resume_acts(
        db_url, app_factory, tmp_path) -> None:
    app, executor, clock = make_app(app_factory, db_url, tmp_path,
                                    outbound_webhook_url="http://127.0.0.1:9/hook")
    executor.add("web")
    client = app.test_client()
    assert client.get("/api/v1/pause", headers=api_headers()).json["paused"] is False
    paused = client.post("/api/v1/pause", json=PAUSE, headers=api_headers())
    assert paused.status_code == 200, paused.json
    assert paused.json["paused"] is True and paused.json["actor"].startswith("alice")
    assert client.get("/api/v1/pause", headers=api_headers()).json["paused"] is True

    fire(client, {"container": "web"})
    drain(app)
    assert executor.restarts("web") == 0
    assert [r.status for r in runs(app)] == ["skipped"]
    assert guard_reasons(app) == ["paused"]
    assert b"autofix_paused 1.0" in client.get("/metrics").data

    resumed = client.post("/api/v1/resume", json={"actor": "alice", "reason": "done"},
                          headers=api_headers())
    assert resumed.status_code == 200 and resumed.json["paused"] is False
    assert b"autofix_paused 0.0" in client.get("/metrics").data
    # The alert still fires: the resume queued the skipped run again, once, audited.
    drain(app)
    assert executor.restarts("web") == 1
    assert [(r.status, r.trigger) for r in runs(app)] == [("skipped", "alert"),
                                                          ("succeeded", "retry")]
    skipped, again = runs(app)
    assert skipped.reason == "paused" and f"run {skipped.id} was skipped" in again.reason
    clock.advance(60)
    fire(client, {"container": "web"})  # the same occurrence again: nothing more
    drain(app)
    assert executor.restarts("web") == 1 and len(runs(app)) == 2
    assert audit(app) == [
        ("pause", "maintenance window"), ("resume", "done"),
        ("resume_requeue", f"incident {skipped.incident_id}: run {skipped.id} skipped paused, "
                           f"queued again as run {again.id}")]
    listed = client.get("/api/v1/audit?verb=pause", headers=api_headers()).json["items"]
    assert [item["verb"] for item in listed] == ["pause"]
    with app.extensions["autofix"].database.session() as session:
        notices = [(o.kind, o.incident_id) for o in session.scalars(
            select(Outbox).where(Outbox.kind.in_(["paused", "resumed"])).order_by(Outbox.id))]
    assert notices == [("paused", None), ("resumed", None)]


def test_a_second_pause_is_409_and_resume_without_pause_is_409(
        db_url, app_factory, tmp_path) -> None:
    app, _, _ = make_app(app_factory, db_url, tmp_path)
    client = app.test_client()
    assert client.post("/api/v1/resume", json={"actor": "bob"},
                       headers=api_headers()).status_code == 409
    assert client.post("/api/v1/pause", json=PAUSE, headers=api_headers()).status_code == 200
    again = client.post("/api/v1/pause", json=PAUSE, headers=api_headers())
    assert again.status_code == 409
    assert again.json["reason"] == "paused" and again.json["paused_by"].startswith("alice")


@pytest.mark.parametrize("body, field", [
    ({"actor": "a"}, "reason"),
    ({"actor": "a", "reason": "r", "until": "2026-11-30T05:00:00"}, "until"),  # no offset
    ({"actor": "a", "reason": "r", "until": "soon"}, "until"),
    ({"reason": "r"}, "actor"),
])
def test_bad_pause_bodies_are_400(db_url, app_factory, tmp_path, body, field) -> None:
    app, _, _ = make_app(app_factory, db_url, tmp_path)
    response = app.test_client().post("/api/v1/pause", json=body, headers=api_headers())
    assert response.status_code == 400, response.json
    assert field in response.json["message"]


def test_a_pause_until_a_time_ends_by_itself(db_url, app_factory, tmp_path) -> None:
    app, executor, clock = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    client = app.test_client()
    past = {**PAUSE, "until": (clock.now - timedelta(seconds=1)).isoformat()}
    assert client.post("/api/v1/pause", json=past, headers=api_headers()).status_code == 400
    until = clock.now + timedelta(minutes=5)
    response = client.post("/api/v1/pause", json={**PAUSE, "until": until.isoformat()},
                           headers=api_headers())
    assert response.status_code == 200
    assert datetime.fromisoformat(response.json["until"]) == until
    clock.advance(301)
    assert client.get("/api/v1/pause", headers=api_headers()).json["paused"] is False
    fire(client, {"container": "web"})
    drain(app)
    assert executor.restarts("web") == 1
    # The lapsed pause frees its slot: a new pause is accepted.
    assert client.post("/api/v1/pause", json=PAUSE, headers=api_headers()).status_code == 200


def test_a_manual_run_during_a_pause_is_409_paused(db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    client = app.test_client()
    client.post("/api/v1/pause", json=PAUSE, headers=api_headers())
    response = client.post("/api/v1/playbooks/restart-on-down/run", headers=api_headers(),
                           json={"labels": {"container": "web"}, "reason": "try"})
    assert response.status_code == 409 and response.json["reason"] == "paused"
    assert executor.restarts("web") == 0


def test_a_manual_dry_run_goes_on_during_a_pause(db_url, app_factory, tmp_path) -> None:
    """#26: the README says dry runs go on while paused; a manual one answered 409."""
    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    client = app.test_client()
    client.post("/api/v1/pause", json=PAUSE, headers=api_headers())
    response = client.post("/api/v1/playbooks/restart-on-down/run", headers=api_headers(),
                           json={"labels": {"container": "web"}, "reason": "what would it do",
                                 "dry_run": True})
    assert response.status_code == 202, response.json
    drain(app)
    [run] = runs(app)
    assert (run.status, run.dry_run) == ("succeeded", True)
    with app.extensions["autofix"].database.session() as session:
        assert {a.outcome for a in session.scalars(select(Action))} == {"dry_run"}
    assert executor.calls == []


RESTART_THEN_HTTP = """
playbooks:
  - name: restart-then-call
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
    actions:
      - restart: {timeout_s: 5}
      - http: {method: POST, url: "URL", headers: {Authorization: "Bearer s3cret-0123456789"}}
"""


def test_a_pause_during_a_run_stops_its_next_http_step_too(db_url, app_factory,
                                                           tmp_path) -> None:
    """#26: an http step carrying a bearer token went out after a pause (only mutating
    steps checked it). Every step that leaves the process checks it now."""
    stub = start_slack_stub()
    try:
        text = RESTART_THEN_HTTP.replace("URL", f"{stub.url}/failover")
        app, executor, _ = make_app(app_factory, db_url, tmp_path, text)
        executor.add("web")
        client = app.test_client()
        executor.on_restart = lambda _name: client.post("/api/v1/pause", json=PAUSE,
                                                        headers=api_headers())
        fire(client, {"container": "web"})
        drain(app)
        assert stub.for_path("/failover") == []
        with app.extensions["autofix"].database.session() as session:
            steps = [(a.action, a.outcome, a.reason) for a in session.scalars(
                select(Action).order_by(Action.step))]
        assert steps == [("restart", "succeeded", None), ("http", "skipped", "paused")]
        [run] = runs(app)
        assert (run.status, run.reason) == ("skipped", "paused")
    finally:
        stub.stop()


CHECK_ONLY = """
playbooks:
  - name: look-only
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    actions:
      - wait_healthy: {timeout_s: 1}
      - notify: {message: "looked"}
"""


def test_a_check_only_run_is_held_by_the_pause_and_queued_again_at_resume(
        db_url, app_factory, tmp_path) -> None:
    """Not admitted (it changes nothing), but its step reaches dockerd: it skips `paused`,
    its incident stays open, and the resume queues it once."""
    app, executor, _ = make_app(app_factory, db_url, tmp_path, CHECK_ONLY)
    executor.add("web")
    client = app.test_client()
    client.post("/api/v1/pause", json=PAUSE, headers=api_headers())
    fire(client, {"container": "web"})
    drain(app)
    assert guard_reasons(app) == ["paused"]
    [run] = runs(app)
    assert (run.status, run.reason) == ("skipped", "paused")
    with app.extensions["autofix"].database.session() as session:
        assert session.scalars(select(Incident.status)).one() == "open"
    client.post("/api/v1/resume", json={"actor": "alice"}, headers=api_headers())
    drain(app)
    assert [(r.status, r.trigger, r.lane) for r in runs(app)] == [
        ("skipped", "alert", "light"), ("succeeded", "retry", "light")]
    assert [verb for verb, _ in audit(app)] == ["pause", "resume", "resume_requeue"]


CALL_THEN_LOOK = """
playbooks:
  - name: call-then-look
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
    actions:
      - http: {method: POST, url: "URL"}
      - wait_healthy: {timeout_s: 1}
"""


def test_a_check_only_run_paused_half_way_keeps_its_incident_for_the_resume(
        db_url, app_factory, tmp_path) -> None:
    """A pause between two steps of a check-only alert run skips the rest; the incident
    stays open (it was closed, and the resume never queued it again)."""
    stub = start_slack_stub()
    try:
        text = CALL_THEN_LOOK.replace("URL", f"{stub.url}/look")
        app, executor, _ = make_app(app_factory, db_url, tmp_path, text)
        executor.add("web")

        def pause_while_answering(_recorded: Any) -> None:
            app.test_client().post("/api/v1/pause", json=PAUSE, headers=api_headers())

        stub.rule("/look", pause_while_answering)
        client = app.test_client()
        fire(client, {"container": "web"})
        drain(app)
        [run] = runs(app)
        assert (run.status, run.reason) == ("skipped", "paused")
        with app.extensions["autofix"].database.session() as session:
            assert session.scalars(select(Incident.status)).one() != "closed"
        stub.rule("/look", None)
        client.post("/api/v1/resume", json={"actor": "alice"}, headers=api_headers())
        drain(app)
        assert [(r.status, r.trigger) for r in runs(app)] == [
            ("skipped", "alert"), ("succeeded", "retry")]
    finally:
        stub.stop()


def test_a_resume_requeues_only_runs_whose_alert_still_fires(db_url, app_factory,
                                                             tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    executor.add("db")
    client = app.test_client()
    client.post("/api/v1/pause", json=PAUSE, headers=api_headers())
    fire(client, {"container": "web"})
    fire(client, {"container": "db"})
    drain(app)
    assert [r.status for r in runs(app)] == ["skipped", "skipped"]
    fire(client, {"container": "db"}, status="resolved")  # db recovered during the pause
    client.post("/api/v1/resume", json={"actor": "alice"}, headers=api_headers())
    drain(app)
    assert executor.restarts("web") == 1 and executor.restarts("db") == 0
    assert [r.status for r in runs(app)] == ["skipped", "skipped", "succeeded"]
    # A later pause and resume queue nothing more: the skipped runs are not the newest.
    client.post("/api/v1/pause", json=PAUSE, headers=api_headers())
    client.post("/api/v1/resume", json={"actor": "alice"}, headers=api_headers())
    assert drain(app) == [] and len(runs(app)) == 3


def test_a_pause_that_ends_by_its_until_queues_its_skipped_runs_once(
        db_url, app_factory, tmp_path) -> None:
    app, executor, clock = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    client = app.test_client()
    until = clock.now + timedelta(minutes=5)
    client.post("/api/v1/pause", json={**PAUSE, "until": until.isoformat()},
                headers=api_headers())
    fire(client, {"container": "web"})
    drain(app)
    svc = app.extensions["autofix"]
    assert end_lapsed_pauses(svc) == [] and executor.restarts("web") == 0  # not yet
    clock.advance(301)
    [queued] = end_lapsed_pauses(svc)  # what every worker's heartbeat calls
    assert end_lapsed_pauses(svc) == []  # one worker wins; the others find nothing
    drain(app)
    assert executor.restarts("web") == 1
    assert [(r.id, r.status, r.trigger) for r in runs(app)][1] == (queued, "succeeded", "retry")
    assert [verb for verb, _ in audit(app)] == ["pause", "resume_requeue"]


def test_notify_only_runs_go_on_during_a_pause(db_url, app_factory, tmp_path) -> None:
    app, _, _ = make_app(app_factory, db_url, tmp_path,
                         outbound_webhook_url="http://127.0.0.1:9/hook")
    client = app.test_client()
    client.post("/api/v1/pause", json=PAUSE, headers=api_headers())
    fire(client, {"alertname": "Other"})  # matches notify-unmatched only
    drain(app)
    assert guard_reasons(app) == []


def test_notices_name_who_paused_until_when_and_why() -> None:
    event = Event("paused", 0, {"actor": "alice", "reason": "<maintenance>",
                                "until": "2026-11-30T05:00:00+00:00"})
    slack = build_notice_slack(event)
    assert "automation paused by alice until 2026-11-30T05:00:00+00:00" in slack["text"]
    assert "&lt;maintenance&gt;" in slack["blocks"][0]["text"]["text"]
    hook = build_notice_webhook(Event("resumed", 0, {"actor": "bob", "reason": ""}))
    assert (hook["event"], hook["summary"], hook["incident"]) == (
        "resumed", "automation resumed by bob", None)



@pytest.mark.slow
def test_pause_holds_across_two_worker_processes(pg_url, private_dockerd,
                                                 tmp_path: Path) -> None:
    """Paused through one worker, the alert lands on whichever: recorded, skipped `paused`,
    the container untouched, Slack told; after resume the next alert restarts it."""
    client = private_dockerd.client()
    container = run_container(client)
    before = started_at(container)
    stub = start_slack_stub()
    playbooks = tmp_path / "playbooks.yml"
    playbooks.write_text(restart_playbook(wait_timeout_s=20, running_for_s=0.3))
    receiver = start_receiver(pg_url, workers=2, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_DOCKER_HOST": private_dockerd.url, "AUTOFIX_PLAYBOOKS": str(playbooks),
        "AUTOFIX_SLACK_BOT_TOKEN": "xoxb-test", "AUTOFIX_SLACK_CHANNEL": "C0OPS",
        "AUTOFIX_SLACK_API_URL": stub.api_url, "AUTOFIX_NOTIFY_POLL_S": "0.2"})
    webhook = f"{receiver.url}/webhook/alertmanager"
    try:
        status, body = post_json(f"{receiver.url}/api/v1/pause", PAUSE, API_TOKEN)
        assert (status, body["paused"]) == (200, True)
        labels = {"container": container.name}
        assert post_json(webhook, notification([alert(labels, starts_at=datetime.now(UTC))])
                         )[0] == 200
        wait_for(lambda: query(pg_url, "select status from runs") == [("skipped",)], 30,
                 "the run skipped")
        assert query(pg_url, "select reason from actions") == [("paused",)]
        assert query(pg_url, "select count(*) from incidents")[0][0] == 1
        assert started_at(container) == before
        wait_for(lambda: any("automation paused by alice" in m.json()["text"]
                             for m in stub.messages()), 20, "Slack told of the pause")
        wait_for(lambda: value(scrape(receiver.url), "autofix_paused") == 1, 20, "gauge 1")

        status, _ = post_json(f"{receiver.url}/api/v1/resume", {"actor": "alice"}, API_TOKEN)
        assert status == 200
        assert post_json(webhook, notification([alert(labels, starts_at=datetime.now(UTC))])
                         )[0] == 200
        wait_for(lambda: ("succeeded",) in query(pg_url, "select status from runs"), 60,
                 "the next alert acted")
        assert started_at(container) != before
        wait_for(lambda: value(scrape(receiver.url), "autofix_paused") == 0, 20, "gauge 0")
    finally:
        receiver.stop()
        stub.stop()
        container.remove(force=True)


def test_an_until_utc_cannot_hold_is_a_400(db_url, app_factory, tmp_path) -> None:
    app, _, _ = make_app(app_factory, db_url, tmp_path)
    response = app.test_client().post("/api/v1/pause", headers=api_headers(), json={
        **PAUSE, "until": "9999-12-31T23:59:59-23:59"})
    assert response.status_code == 400, response.json


RESTART_THEN_STOP = """
playbooks:
  - name: restart-then-stop
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
    actions:
      - restart: {timeout_s: 5}
      - notify: {}
      - stop: {timeout_s: 5}
"""


def test_a_pause_during_a_run_stops_it_before_its_next_mutating_step(
        db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, RESTART_THEN_STOP)
    executor.add("web")
    client = app.test_client()
    executor.on_restart = lambda _name: client.post("/api/v1/pause", json=PAUSE,
                                                    headers=api_headers())
    fire(client, {"container": "web"})
    drain(app)
    assert executor.calls == [("restart", "web")]  # the stop never started
    with app.extensions["autofix"].database.session() as session:
        steps = [(a.action, a.outcome, a.reason) for a in session.scalars(
            select(Action).order_by(Action.step))]
    assert steps == [("restart", "succeeded", None), ("notify", "succeeded", None),
                     ("stop", "skipped", "paused")]
    [run] = runs(app)
    assert run.status == "skipped" and "paused by alice" in (run.error or "")
    with app.extensions["autofix"].database.session() as session:
        [incident] = session.scalars(select(Incident)).all()
    assert incident.status == "escalated"
