"""Playbooks against a real dockerd and real databases: restart, guards, breaker, dry run."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from receiver.store.models import Breaker, Run
from tests.conftest import api_headers, webhook_headers
from tests.harness.app_driver import actions, drain, fire_container, incident_status
from tests.harness.clock import ShiftedClock
from tests.harness.containers import run_container, started_at
from tests.harness.playbook_yaml import write_playbooks
from tests.payloads import alert, notification


@pytest.fixture
def docker_app(db_url, app_factory, private_dockerd, tmp_path):
    def make(**overrides: Any):
        playbooks = write_playbooks(tmp_path, **{k: overrides.pop(k) for k in
                                                 ("cooldown", "open_for") if k in overrides})
        return app_factory(db_url, docker_host=private_dockerd.url, playbooks=playbooks,
                           **overrides)
    return make


def test_firing_alert_restarts_a_labelled_container(docker_app, docker_client) -> None:
    app = docker_app()
    container = run_container(docker_client)
    before = started_at(container)
    fire_container(app.test_client(), container.name)
    drain(app)
    assert started_at(container) != before
    restart, wait = actions(app, container.name)
    assert (restart.action, restart.outcome) == ("restart", "succeeded")
    assert restart.duration_s is not None and restart.duration_s > 0
    assert (wait.action, wait.outcome) == ("wait_healthy", "succeeded")
    assert incident_status(app, container.name) == ["remediating"]


def test_unlabelled_container_is_never_touched(docker_app, docker_client) -> None:
    app = docker_app()
    container = run_container(docker_client, labelled=False)
    before = started_at(container)
    fire_container(app.test_client(), container.name)
    drain(app)
    assert started_at(container) == before
    [skip] = actions(app, container.name)
    assert (skip.outcome, skip.reason) == ("skipped", "target_not_allowed")


def test_crash_loop_opens_the_breaker_then_allows_one_trial(docker_app, docker_client) -> None:
    # 10s: the seven refused alerts below must all land inside the open period, however
    # slow the three restarts before them were on a loaded machine.
    app = docker_app(cooldown="0s", open_for="10s")
    clock = app.extensions["autofix"].clock = ShiftedClock()
    client = app.test_client()
    container = run_container(docker_client)
    for _ in range(10):
        fire_container(client, container.name, starts=datetime.now(UTC))
        drain(app)
        time.sleep(0.05)
    restarts = [a for a in actions(app, container.name) if a.action == "restart"]
    skipped = [a.reason for a in actions(app, container.name) if a.outcome == "skipped"]
    assert len(restarts) == 3 and all(a.outcome == "succeeded" for a in restarts)
    assert skipped == ["breaker_open"] * 7
    assert incident_status(app, container.name)[3:] == ["escalated"] * 7
    with app.extensions["autofix"].database.session() as session:
        assert session.get(Breaker, container.name).state == "open"
    with app.extensions["autofix"].database.session() as session:
        open_until = session.get(Breaker, container.name).open_until
    clock.advance(max(0.0, (open_until - clock()).total_seconds()) + 0.2)
    # the open period has passed (on the receiver's clock): exactly one trial
    fire_container(client, container.name, starts=clock())
    drain(app)
    fire_container(client, container.name, starts=clock())
    drain(app)
    restarts = [a for a in actions(app, container.name) if a.action == "restart"]
    assert len(restarts) == 4
    with app.extensions["autofix"].database.session() as session:
        breaker = session.get(Breaker, container.name)
        assert breaker.state == "open" and breaker.reopen_count == 2  # re-opened, longer


def test_cooldown_skips_the_second_occurrence(docker_app, docker_client) -> None:
    app = docker_app(cooldown="10m")
    container = run_container(docker_client)
    fire_container(app.test_client(), container.name)
    drain(app)
    fire_container(app.test_client(), container.name, starts=datetime.now(UTC))
    drain(app)
    assert [a.reason for a in actions(app, container.name)] == [None, None, "cooldown"]


def test_dry_run_records_and_touches_nothing(docker_app, docker_client) -> None:
    app = docker_app(dry_run=True)
    container = run_container(docker_client)
    before = started_at(container)
    fire_container(app.test_client(), container.name)
    drain(app)
    assert started_at(container) == before
    assert [(a.action, a.outcome) for a in actions(app, container.name)] == [
        ("restart", "dry_run"), ("wait_healthy", "dry_run")]


def test_container_docker_already_restarted_is_not_restarted_again(
        docker_app, docker_client) -> None:
    app = docker_app()
    alert_start = datetime.now(UTC)
    time.sleep(0.05)
    container = run_container(docker_client)  # started after the alert began
    before = started_at(container)
    fire_container(app.test_client(), container.name, starts=alert_start)
    drain(app)
    assert started_at(container) == before
    [skip] = actions(app, container.name)
    assert (skip.outcome, skip.reason) == ("skipped", "already_recovered")


def test_missing_container_is_skipped(docker_app) -> None:
    app = docker_app()
    fire_container(app.test_client(), "no-such-container")
    drain(app)
    [skip] = actions(app, "no-such-container")
    assert skip.reason == "target_not_found"


def test_docker_down_fails_cleanly_and_escalates(db_url, app_factory, tmp_path) -> None:
    app = app_factory(db_url, docker_host="unix:///nonexistent/docker.sock",
                      playbooks=write_playbooks(tmp_path))
    fire_container(app.test_client(), "web")
    drain(app)
    [skip] = actions(app, "web")
    assert skip.reason == "executor_unavailable" and "docker" in (skip.error or "").lower()
    assert incident_status(app, "web") == ["escalated"]


def test_manual_run_answers_with_guard_codes(docker_app, docker_client) -> None:
    app = docker_app(cooldown="10m")
    client = app.test_client()
    labelled, unlabelled = run_container(docker_client), run_container(docker_client, False)
    url = "/api/v1/playbooks/restart-on-down/run"

    def run(labels: dict[str, str], **extra: Any):
        return client.post(url, json={"labels": labels, "reason": "test", **extra},
                           headers=api_headers())

    ok = run({"container": labelled.name})
    assert ok.status_code == 202 and ok.json["run_id"] and ok.json["incident_id"]
    drain(app)
    again = run({"container": labelled.name})
    assert again.status_code == 409 and again.json["reason"] == "cooldown"
    assert int(again.headers["Retry-After"]) > 500
    forbidden = run({"container": unlabelled.name})
    assert forbidden.status_code == 403 and forbidden.json["reason"] == "target_not_allowed"
    assert client.post("/api/v1/playbooks/nope/run", json={"labels": {"a": "b"}, "reason": "x"},
                       headers=api_headers()).status_code == 404
    assert client.post(url, json={"labels": "x"}, headers=api_headers()).status_code == 400
    assert client.post(url, json={"labels": {"container": "w"}, "reason": "x"}).status_code == 401
    crafted = run({"container": "../../etc; rm -rf /"})
    assert crafted.status_code == 400 and crafted.json["reason"] == "invalid_target"
    with app.extensions["autofix"].database.session() as session:
        runs = list(session.scalars(select(Run)))
        assert [(r.trigger, r.status) for r in runs] == [("manual", "succeeded")]


def test_run_queued_for_an_alert_that_resolved_meanwhile_is_skipped(
        docker_app, docker_client) -> None:
    app = docker_app()
    container = run_container(docker_client)
    before = started_at(container)
    starts = datetime.now(UTC)
    fire_container(app.test_client(), container.name, starts=starts)
    resolved = notification([alert({"container": container.name}, status="resolved",
                                   starts_at=starts, ends_at=datetime.now(UTC))])
    app.test_client().post("/webhook/alertmanager", json=resolved, headers=webhook_headers())
    drain(app)  # the worker gets to the run only now
    assert started_at(container) == before
    [skip] = actions(app, container.name)
    assert (skip.outcome, skip.reason) == ("skipped", "alert_resolved")
