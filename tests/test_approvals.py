"""Approvals (#19): a playbook in mode `approve` touches nothing until a human approves,
exactly one decision counts, and deny or expiry escalate. Real dockerd, real databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.incidents.approvals import expire_approvals
from receiver.store.models import Action, AuditEntry, Incident, Run
from tests.conftest import api_headers, webhook_headers
from tests.harness.app_driver import drain
from tests.harness.clock import Clock
from tests.harness.containers import run_container, started_at
from tests.harness.playbook_yaml import restart_playbook
from tests.payloads import alert, notification

COMMENT = {"actor": "carol", "comment": "looks right"}


@pytest.fixture
def approval_app(db_url: str, app_factory: Any, private_dockerd: Any, tmp_path: Path) -> Any:
    def make(mode: str = "approve", approval_timeout: str | None = None) -> Any:
        path = tmp_path / f"playbooks-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(restart_playbook(mode=mode, approval_timeout=approval_timeout,
                                         running_for_s=0.3))
        app = app_factory(db_url, docker_host=private_dockerd.url, playbooks=path)
        # Time moves only when a test says so (no sleeping through an approval timeout).
        app.extensions["autofix"].clock = Clock(datetime.now(UTC))
        return app
    return make


def post_alert(app: Any, container: str, starts: datetime, status: str = "firing") -> None:
    body = notification([alert({"container": container}, status=status, starts_at=starts,
                               ends_at=datetime.now(UTC) if status == "resolved" else None)])
    response = app.test_client().post("/webhook/alertmanager", json=body,
                                      headers=webhook_headers())
    assert response.status_code == 200, response.json


def only_run(app: Any) -> Run:
    with app.extensions["autofix"].database.session() as session:
        [run] = session.scalars(select(Run)).all()
        return run


def only_incident(app: Any) -> Incident:
    with app.extensions["autofix"].database.session() as session:
        [incident] = session.scalars(select(Incident)).all()
        return incident


def actions(app: Any) -> list[tuple[str, str, str | None]]:
    with app.extensions["autofix"].database.session() as session:
        return [(a.action, a.outcome, a.reason)
                for a in session.scalars(select(Action).order_by(Action.id))]


def decide(app: Any, run_id: int, verdict: str) -> Any:
    return app.test_client().post(f"/api/v1/runs/{run_id}/{verdict}", json=COMMENT,
                                  headers=api_headers())


def awaiting_gauge(app: Any) -> float:
    """autofix_runs_awaiting_approval as a scrape reads it from the database."""
    services = app.extensions["autofix"]
    services.metrics.database_changed()  # past the scrape cache, as 5 s later
    value: float = services.metrics.registry.get_sample_value("autofix_runs_awaiting_approval")
    return value


def awaiting(app: Any, container: Any) -> Run:
    """Fire, let the runner take the run: it waits, and the container is untouched."""
    before = started_at(container)
    post_alert(app, container.name, datetime.now(UTC))
    drain(app)
    run = only_run(app)
    assert run.status == "awaiting_approval", run.error
    assert run.approval_due_at is not None and run.admitted_at is None
    assert actions(app) == []
    assert started_at(container) == before
    assert only_incident(app).status == "open"
    return run


def test_approve_restarts_once_and_a_second_decision_is_409(approval_app,
                                                            docker_client) -> None:
    app = approval_app()
    container = run_container(docker_client)
    before = started_at(container)
    run = awaiting(app, container)
    app.extensions["autofix"].clock.advance(0.5)
    drain(app)  # nothing happens while it waits
    assert started_at(container) == before

    approved = decide(app, run.id, "approve")
    assert approved.status_code == 200, approved.json
    assert approved.json["decision"] == "approved"
    assert approved.json["decided_by"].startswith("carol")
    assert approved.json["decision_comment"] == "looks right"
    drain(app)
    assert started_at(container) != before
    assert [a[:2] for a in actions(app)] == [("restart", "succeeded"),
                                              ("wait_healthy", "succeeded")]
    assert only_run(app).status == "succeeded"

    for verdict in ("approve", "deny"):
        again = decide(app, run.id, verdict)
        assert again.status_code == 409, again.json
        assert again.json["reason"] == "run_succeeded"
    drain(app)
    assert [a[0] for a in actions(app)].count("restart") == 1
    with app.extensions["autofix"].database.session() as session:
        assert [(e.verb, e.subject) for e in session.scalars(select(AuditEntry))] == [
            ("run_approve", str(run.id))]


def test_deny_leaves_it_untouched_and_escalates(approval_app, docker_client) -> None:
    app = approval_app()
    container = run_container(docker_client)
    before = started_at(container)
    run = awaiting(app, container)
    assert awaiting_gauge(app) == 1
    denied = decide(app, run.id, "deny")
    assert denied.status_code == 200 and denied.json["status"] == "denied"
    assert decide(app, run.id, "approve").status_code == 409
    drain(app)
    assert started_at(container) == before and actions(app) == []
    incident = only_incident(app)
    assert incident.status == "escalated"
    assert "denied by carol" in (incident.escalation_reason or "")
    assert awaiting_gauge(app) == 0


def test_an_approval_not_given_in_time_expires_and_escalates(approval_app,
                                                             docker_client) -> None:
    app = approval_app(approval_timeout="1s")
    container = run_container(docker_client)
    before = started_at(container)
    run = awaiting(app, container)
    assert expire_approvals(app.extensions["autofix"]) == []  # not due yet
    app.extensions["autofix"].clock.advance(1.1)
    assert expire_approvals(app.extensions["autofix"]) == [run.id]
    assert (only_run(app).status, only_run(app).decision) == ("expired", "expired")
    assert decide(app, run.id, "approve").status_code == 409
    drain(app)
    assert started_at(container) == before and actions(app) == []
    assert only_incident(app).status == "escalated"
    assert "expired" in (only_incident(app).escalation_reason or "")


def test_an_alert_resolved_before_approval_makes_the_approval_skip(approval_app,
                                                                   docker_client) -> None:
    app = approval_app()
    container = run_container(docker_client)
    before = started_at(container)
    run = awaiting(app, container)
    post_alert(app, container.name, only_incident(app).starts_at, status="resolved")
    assert decide(app, run.id, "approve").status_code == 200
    drain(app)
    assert started_at(container) == before
    assert only_run(app).status == "skipped"
    assert actions(app) == [("guard", "skipped", "alert_resolved")]


def test_a_pause_at_approval_time_makes_the_approved_run_skip(approval_app,
                                                              docker_client) -> None:
    app = approval_app()
    container = run_container(docker_client)
    before = started_at(container)
    run = awaiting(app, container)
    client = app.test_client()
    assert client.post("/api/v1/pause", json={"actor": "ops", "reason": "freeze"},
                       headers=api_headers()).status_code == 200
    assert decide(app, run.id, "approve").status_code == 200
    drain(app)
    assert started_at(container) == before
    assert actions(app) == [("guard", "skipped", "paused")]


def test_observe_mode_records_a_dry_run_and_touches_nothing(approval_app,
                                                            docker_client) -> None:
    app = approval_app(mode="observe")
    container = run_container(docker_client)
    before = started_at(container)
    post_alert(app, container.name, datetime.now(UTC))
    drain(app)
    assert started_at(container) == before
    assert [a[:2] for a in actions(app)] == [("restart", "dry_run"), ("wait_healthy", "dry_run")]
    assert only_run(app).status == "succeeded"


def test_unknown_and_undecidable_runs(approval_app, docker_client) -> None:
    app = approval_app(mode="auto")
    assert decide(app, 12345, "approve").status_code == 404
    bad = app.test_client().post("/api/v1/runs/abc/approve", json=COMMENT,
                                 headers=api_headers())
    assert bad.status_code == 400
    container = run_container(docker_client)
    post_alert(app, container.name, datetime.now(UTC))
    drain(app)
    auto_run = only_run(app)
    assert auto_run.status == "succeeded"  # mode auto acts without asking
    assert decide(app, auto_run.id, "approve").status_code == 409


@pytest.mark.slow
def test_expiry_and_approval_across_two_worker_processes(pg_url, private_dockerd, docker_client,
                                                         tmp_path: Path) -> None:
    """`autofix serve --workers 2`: a heartbeat expires the unanswered run and escalates;
    the next alert's run, approved over HTTP, restarts the container once."""
    from tests.conftest import API_TOKEN, WEBHOOK_TOKEN
    from tests.harness.db import query
    from tests.harness.http_client import post_json
    from tests.harness.procs import wait_for
    from tests.harness.receiver import start_receiver

    container = run_container(docker_client)
    before = started_at(container)
    playbooks = tmp_path / "playbooks.yml"
    playbooks.write_text(restart_playbook(mode="approve", approval_timeout="2s",
                                          running_for_s=0.3))
    receiver = start_receiver(pg_url, workers=2, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_READ_TOKEN": "read-test-token-4d7a",
        "AUTOFIX_DOCKER_HOST": private_dockerd.url, "AUTOFIX_PLAYBOOKS": str(playbooks)})
    webhook = f"{receiver.url}/webhook/alertmanager"
    labels = {"container": container.name}
    try:
        assert post_json(webhook, notification([alert(labels, starts_at=datetime.now(UTC))])
                         )[0] == 200
        wait_for(lambda: query(pg_url, "select status from runs") == [("expired",)], 30,
                 "the heartbeat expired the run")
        assert query(pg_url, "select status from incidents") == [("escalated",)]
        assert started_at(container) == before

        assert post_json(webhook, notification([alert(labels, starts_at=datetime.now(UTC))])
                         )[0] == 200
        wait_for(lambda: ("awaiting_approval",) in query(pg_url, "select status from runs"),
                 30, "the second run waits")
        [(run_id,)] = query(pg_url, "select id from runs where status = 'awaiting_approval'")
        approve = f"{receiver.url}/api/v1/runs/{run_id}/approve"
        assert post_json(approve, COMMENT, "read-test-token-4d7a")[0] == 403
        assert post_json(approve, COMMENT, API_TOKEN)[0] == 200
        assert post_json(approve, COMMENT, API_TOKEN)[0] == 409
        wait_for(lambda: ("succeeded",) in query(pg_url, "select status from runs"), 60,
                 "the approved run acted")
        assert started_at(container) != before
        assert query(pg_url, "select count(*) from actions where action = 'restart'"
                     ) == [(1,)]
    finally:
        receiver.stop()
        container.remove(force=True)
