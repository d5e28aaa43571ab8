"""`require:` on a real dockerd with a real Prometheus: an expression that returns nothing,
or a Prometheus that cannot answer, leaves the container untouched with
`precondition_failed` (escalated, retried later); one that returns a result lets the
restart happen. Prometheus scrapes itself as job `self`: one healthy replica."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.engine.retries import queue_due_retries
from receiver.store.models import Incident, Run
from tests.conftest import api_headers, webhook_headers
from tests.harness.app_driver import actions, drain, runs
from tests.harness.clock import Clock
from tests.harness.containers import run_container, started_at
from tests.harness.procs import LOOPBACK, free_port, wait_for
from tests.harness.prometheus import Prometheus, start_prometheus
from tests.payloads import alert, notification

ONE_HEALTHY = 'count(up{job="self"} == 1) >= 1'
TWO_HEALTHY = 'count(up{job="self"} == 1) >= 2'  # empty: there is one


def prometheus_on(workdir: Path, port: int) -> Prometheus:
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "self", "static_configs": [
                  {"targets": [f"{LOOPBACK}:{port}"]}]}]}
    prom = start_prometheus(workdir, config, [], port=port)
    wait_for(lambda: bool(prom.query(ONE_HEALTHY)), 30, "Prometheus scraping itself")
    return prom


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prom = prometheus_on(tmp_path_factory.mktemp("prom"), free_port())
    yield prom
    prom.stop()


@pytest.fixture
def make_app(app_factory: Any, private_dockerd: Any, tmp_path: Path) -> Any:
    def make(db_url: str, prometheus_url: str, require: list[str],
             mode: str = "auto") -> Any:
        path = tmp_path / "playbooks.yml"
        path.write_text("\n".join([
            "playbooks:",
            "  - name: restart-guarded",
            "    matchers: ['alertname=\"TargetDown\"']",
            '    target: "{{ labels.container }}"',
            "    cooldown: 0s",
            f"    mode: {mode}",
            f"    require: {json.dumps(require)}",
            "    actions:",
            "      - restart: {timeout_s: 5}",
            "      - wait_healthy: {timeout_s: 20, running_for_s: 0.3}",
            ""]))
        app = app_factory(db_url, docker_host=private_dockerd.url, playbooks=path,
                          prometheus_url=prometheus_url, precondition_timeout_s=2)
        app.extensions["autofix"].clock = Clock(datetime.now(UTC))
        return app
    return make


def fire(app: Any, container: str) -> None:
    body = notification([alert({"container": container, "job": "self"},
                               starts_at=datetime.now(UTC))])
    response = app.test_client().post("/webhook/alertmanager", json=body,
                                      headers=webhook_headers())
    assert response.status_code == 200, response.json


def incident(app: Any) -> Incident:
    with app.extensions["autofix"].database.session() as session:
        [found] = session.scalars(select(Incident)).all()
        return found


def skipped_by_precondition(app: Any, container: Any, before: str) -> str:
    """The run skipped with precondition_failed, the container untouched, a human told;
    the guard row's error (what failed and what Prometheus said)."""
    assert started_at(container) == before, "the container was touched"
    [guard] = actions(app, container.name)
    assert (guard.action, guard.outcome, guard.reason) == ("guard", "skipped",
                                                           "precondition_failed")
    [run] = runs(app)
    assert run.status == "skipped" and run.error.startswith("precondition_failed: ")
    assert incident(app).status == "escalated"
    assert incident(app).escalation_reason.startswith("precondition_failed: require ")
    skipped = app.extensions["autofix"].metrics.registry.get_sample_value(
        "autofix_runs_skipped_total", {"reason": "precondition_failed"})
    assert skipped == 1.0
    return str(guard.error)


def test_an_expression_that_returns_nothing_leaves_the_container_untouched(
        db_url: str, make_app: Any, docker_client: Any, prometheus: Prometheus) -> None:
    app = make_app(db_url, prometheus.url, [ONE_HEALTHY, TWO_HEALTHY])
    container = run_container(docker_client)
    before = started_at(container)
    fire(app, container.name)
    drain(app)
    error = skipped_by_precondition(app, container, before)
    assert error == f"require {TWO_HEALTHY!r} does not hold: Prometheus returned an empty vector"
    # Retried after 60 s, so that the container is fixed once the fleet is healthy again.
    due = incident(app).next_attempt_at
    assert due is not None
    assert due - app.extensions["autofix"].clock() == timedelta(seconds=60)


def test_prometheus_unreachable_is_never_a_pass(
        db_url: str, make_app: Any, docker_client: Any) -> None:
    nobody = f"http://{LOOPBACK}:{free_port()}"
    app = make_app(db_url, nobody, [ONE_HEALTHY])
    container = run_container(docker_client)
    before = started_at(container)
    fire(app, container.name)
    drain(app)
    error = skipped_by_precondition(app, container, before)
    assert error.startswith(f"require {ONE_HEALTHY!r}: Prometheus gave no answer, and autofix "
                            f"does not act on an unknown: ConnectionError querying {nobody}")


def test_an_expression_that_returns_a_result_lets_the_restart_happen(
        db_url: str, make_app: Any, docker_client: Any, prometheus: Prometheus) -> None:
    # Templated with the alert's labels, as action params are.
    app = make_app(db_url, prometheus.url, ['count(up{job="{{ labels.job }}"} == 1) >= 1'])
    container = run_container(docker_client)
    before = started_at(container)
    fire(app, container.name)
    drain(app)
    assert started_at(container) != before
    assert [(a.action, a.outcome) for a in actions(app, container.name)] == [
        ("restart", "succeeded"), ("wait_healthy", "succeeded")]
    assert incident(app).next_attempt_at is None


def test_the_retry_acts_once_prometheus_answers_again(
        pg_url: str, make_app: Any, docker_client: Any, tmp_path: Path) -> None:
    port = free_port()
    app = make_app(pg_url, f"http://{LOOPBACK}:{port}", [ONE_HEALTHY])
    clock = app.extensions["autofix"].clock
    container = run_container(docker_client)
    before = started_at(container)
    fire(app, container.name)
    drain(app)
    skipped_by_precondition(app, container, before)
    clock.advance(61)
    queue_due_retries(app.extensions["autofix"])
    drain(app)  # still down: skipped again, and the next attempt waits twice as long
    assert started_at(container) == before
    assert [a.reason for a in actions(app, container.name)] == ["precondition_failed"] * 2
    assert incident(app).next_attempt_at - clock() == timedelta(seconds=120)
    prom = prometheus_on(tmp_path / "prom", port)  # Prometheus is back
    try:
        clock.advance(121)
        assert queue_due_retries(app.extensions["autofix"])
        drain(app)
    finally:
        prom.stop()
    assert started_at(container) != before
    assert [a.action for a in actions(app, container.name)] == [
        "guard", "guard", "restart", "wait_healthy"]


def test_a_template_that_cannot_render_is_a_failed_precondition_not_retried(
        pg_url: str, make_app: Any, docker_client: Any, prometheus: Prometheus) -> None:
    app = make_app(pg_url, prometheus.url, ['up{job="{{ labels.team }}"}'])
    container = run_container(docker_client)
    before = started_at(container)
    fire(app, container.name)
    drain(app)
    error = skipped_by_precondition(app, container, before)
    assert error.startswith("require #1 cannot be rendered for this alert")
    assert "team" in error
    assert incident(app).next_attempt_at is None  # the same labels would fail the same way


def test_observe_mode_shows_the_precondition_that_would_have_stopped_it(
        pg_url: str, make_app: Any, docker_client: Any, prometheus: Prometheus) -> None:
    app = make_app(pg_url, prometheus.url, [TWO_HEALTHY], mode="observe")
    container = run_container(docker_client)
    before = started_at(container)
    fire(app, container.name)
    drain(app)
    skipped_by_precondition(app, container, before)
    assert runs(app)[0].dry_run is True
    assert incident(app).next_attempt_at is None  # a dry run is not retried


def test_no_human_is_asked_to_approve_a_run_whose_precondition_fails(
        pg_url: str, make_app: Any, docker_client: Any, prometheus: Prometheus) -> None:
    app = make_app(pg_url, prometheus.url, [TWO_HEALTHY], mode="approve")
    container = run_container(docker_client)
    before = started_at(container)
    fire(app, container.name)
    drain(app)
    skipped_by_precondition(app, container, before)
    assert runs(app)[0].approval_due_at is None


def test_an_approved_run_checks_again_when_it_acts(
        pg_url: str, make_app: Any, docker_client: Any, tmp_path: Path) -> None:
    port = free_port()
    prom = prometheus_on(tmp_path / "prom", port)
    app = make_app(pg_url, f"http://{LOOPBACK}:{port}", [ONE_HEALTHY], mode="approve")
    container = run_container(docker_client)
    before = started_at(container)
    try:
        fire(app, container.name)
        drain(app)
        [run] = runs(app)
        assert run.status == "awaiting_approval", run.error
    finally:
        prom.stop()  # Prometheus goes away while the human decides
    approved = app.test_client().post(f"/api/v1/runs/{run.id}/approve",
                                      json={"actor": "carol", "comment": "go"},
                                      headers=api_headers())
    assert approved.status_code == 200, approved.json
    drain(app)
    skipped_by_precondition(app, container, before)
    with app.extensions["autofix"].database.session() as session:
        assert session.get(Run, run.id).decision == "approved"


def test_a_manual_run_checks_the_precondition_too(
        pg_url: str, make_app: Any, docker_client: Any, prometheus: Prometheus) -> None:
    container = run_container(docker_client)  # before the app's clock starts
    app = make_app(pg_url, prometheus.url, [TWO_HEALTHY])
    before = started_at(container)
    manual = app.test_client().post(
        "/api/v1/playbooks/restart-guarded/run", headers=api_headers(),
        json={"labels": {"container": container.name, "job": "self"}, "reason": "try",
              "requested_by": "bob"})
    assert manual.status_code == 202, manual.json
    drain(app)
    assert started_at(container) == before
    [guard] = actions(app, container.name)
    assert guard.reason == "precondition_failed"
    found = incident(app)
    # Escalated, then closed as every manual run's incident is; never retried on its own.
    assert found.escalation_reason.startswith("precondition_failed: require ")
    assert found.next_attempt_at is None
