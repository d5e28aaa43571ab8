"""Blast radius on a real dockerd: the host storm guard and action budgets (issue #30)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.notify.channels import build_channels
from receiver.notify.outbox import OutboxSender
from receiver.runtime.runner import Runner
from receiver.store.models import HostStorm, Incident, Run
from tests.conftest import api_headers, webhook_headers
from tests.harness.app_driver import actions, drain, fire_container, incidents
from tests.harness.clock import ShiftedClock
from tests.harness.containers import run_container, started_at
from tests.harness.playbook_yaml import restart_playbook
from tests.harness.slack_stub import POST_MESSAGE, SlackStub, start_slack_stub
from tests.payloads import alert, notification


@pytest.fixture
def stub() -> Any:
    server = start_slack_stub()
    yield server
    server.stop()


def _playbooks(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "playbooks.yml"
    path.write_text(restart_playbook(running_for_s=0.2) + extra)
    return path


def _slack(stub: SlackStub) -> dict[str, Any]:
    return {"slack_bot_token": "xoxb-test", "slack_channel": "#ops",
            "slack_api_url": stub.api_url, "notify_timeout_s": 1.0, "notify_backoff_s": 0.05,
            "notify_poll_s": 0.05}


def _send_all(app: Any) -> None:
    svc = app.extensions["autofix"]
    OutboxSender(svc.database, svc.settings, svc.metrics, build_channels(svc.settings),
                 "test-sender").run_once()


def _restarted(app: Any, name: str) -> bool:
    return any(a.action == "restart" and a.outcome == "succeeded" for a in actions(app, name))


def _guard_reasons(app: Any, name: str) -> list[str | None]:
    return [a.reason for a in actions(app, name) if a.action == "guard"]


def test_host_storm_restarts_five_of_eight_then_one_storm_incident(
        db_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        stub: SlackStub, tmp_path: Path) -> None:
    app = app_factory(db_url, docker_host=private_dockerd.url, playbooks=_playbooks(tmp_path),
                      **_slack(stub))
    clock = app.extensions["autofix"].clock = ShiftedClock()
    containers = [run_container(docker_client) for _ in range(8)]
    before = {c.name: started_at(c) for c in containers}
    starts = clock()
    body = notification([alert({"container": c.name}, starts_at=starts) for c in containers])
    assert app.test_client().post("/webhook/alertmanager", json=body,
                                  headers=webhook_headers()).status_code == 200
    drain(app)

    restarted = [c.name for c in containers if _restarted(app, c.name)]
    held = [c.name for c in containers if _guard_reasons(app, c.name) == ["host_storm"]]
    assert len(restarted) == 5 and len(held) == 3 and not set(restarted) & set(held)
    assert all(started_at(c) == before[c.name] for c in containers if c.name in held)
    storm_incidents = [i for i in incidents(app) if i.alertname == "AutofixHostStorm"]
    assert len(storm_incidents) == 1
    storm = storm_incidents[0]
    assert storm.status == "escalated" and storm.severity == "critical"
    assert storm.labels["host"].startswith("docker:")
    assert set(storm.annotations["skipped"].split(", ")) == set(held)
    assert set(storm.annotations["acted_on"].split(", ")) == set(restarted)
    # The held targets' own incidents are not escalated one by one, nor retried.
    for incident in incidents(app):
        if incident.target in held:
            assert incident.status == "open" and incident.next_attempt_at is None
    with app.extensions["autofix"].database.session() as session:
        [row] = session.scalars(select(HostStorm))
        assert row.incident_id == storm.id and sorted(row.targets["skipped"]) == sorted(held)
    metrics = app.extensions["autofix"].metrics.registry
    assert metrics.get_sample_value("autofix_runs_skipped_total",
                                    {"reason": "host_storm"}) == 3

    # Slack hears of the storm once: one message names it.
    _send_all(app)
    storm_posts = [r for r in stub.requests if r.path == POST_MESSAGE
                   and "AutofixHostStorm" in str(r.json().get("text", ""))]
    assert len(storm_posts) == 1 and "host storm" in storm_posts[0].json()["text"]

    # GET /api/v1/budgets lists the storm in force.
    shown = app.test_client().get("/api/v1/budgets", headers=api_headers()).json
    assert [s["incident_id"] for s in shown["host_storms"]] == [storm.id]

    # A minute later (the injected clock moved 61 s on: no sleep), the host is calm again.
    clock.advance(61)
    ninth = run_container(docker_client)
    fire_container(app.test_client(), ninth.name, starts=clock())
    drain(app)
    assert _restarted(app, ninth.name) and _guard_reasons(app, ninth.name) == []
    assert len([i for i in incidents(app) if i.alertname == "AutofixHostStorm"]) == 1


def test_fleet_budget_holds_across_two_receivers(
        pg_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        tmp_path: Path) -> None:
    budget = "    budget: {actions: 2, per: 10m, scope: fleet}\n"
    playbooks = _playbooks(tmp_path, "")
    playbooks.write_text(playbooks.read_text().replace("    actions:\n", budget + "    actions:\n"))
    first, second = (app_factory(pg_url, docker_host=private_dockerd.url, playbooks=playbooks)
                     for _ in range(2))
    containers = [run_container(docker_client) for _ in range(3)]
    starts = datetime.now(UTC)
    for app, container in zip((first, second, first), containers, strict=True):
        fire_container(app.test_client(), container.name, starts=starts)

    def work(app: Any) -> None:
        runner = Runner(app.extensions["autofix"])
        while runner.run_once() is not None:
            pass

    workers = [threading.Thread(target=work, args=(app,)) for app in (first, second)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)

    restarted = [c.name for c in containers if _restarted(first, c.name)]
    exhausted = [c.name for c in containers
                 if _guard_reasons(first, c.name) == ["budget_exhausted"]]
    assert len(restarted) == 2 and len(exhausted) == 1
    [skip] = [a for a in actions(first, exhausted[0]) if a.action == "guard"]
    assert "2 of 2 actions in 10m (scope fleet) used; next at" in (skip.error or "")
    with first.extensions["autofix"].database.session() as session:
        incident = session.scalars(select(Incident).where(
            Incident.target == exhausted[0])).one()
        assert incident.status == "escalated"
        assert incident.next_attempt_at is not None  # retried once the oldest action ages out
        hosts = {r.host for r in session.scalars(select(Run).where(Run.admitted_at.is_not(None)))}
        assert len(hosts) == 1 and None not in hosts
    shown = second.test_client().get("/api/v1/budgets", headers=api_headers()).json
    [fleet] = [b for b in shown["budgets"] if b["scope"] == "fleet"]
    assert (fleet["key"], fleet["limit"], fleet["used"], fleet["per_s"]) == ("fleet", 2, 2, 600)
    assert fleet["frees_at"] is not None
