"""Evidence before action, on a real dockerd, real PostgreSQL and a real Prometheus: what a
hung target printed, its health output and the alert's value are kept (redacted) in the
database, the API and the Slack thread; an OOM kill and an operator's stop are told apart;
a slow Docker log endpoint costs the budget, not the remediation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import select

from receiver.notify.channels import build_channels
from receiver.notify.outbox import OutboxSender
from receiver.store.models import Action, Incident
from tests.conftest import api_headers, webhook_headers
from tests.harness.app_driver import drain, evidence_rows
from tests.harness.containers import run_container, started_at
from tests.harness.docker_delay_proxy import DockerDelayProxy
from tests.harness.playbook_yaml import write_playbooks
from tests.harness.procs import free_port, wait_for
from tests.harness.prometheus import Prometheus, start_prometheus
from tests.harness.slack_stub import SlackStub
from tests.payloads import alert, notification

SECRET = "hunter2hunter2"
TOKEN = "abcdefghijklmnopqrstuv"
DOWN_EXPR = 'up{job="dead"} == 0'
# Prints known lines (two of them secret-shaped) on stdout and stderr, then hangs.
CHATTY_THEN_HANGS = ["sh", "-c", "echo known-line-one; echo known-line-two >&2; "
                     f"echo connecting with password={SECRET}; "
                     f"echo 'Authorization: Bearer {TOKEN}' >&2; "
                     "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
HEALTHCHECK = {"test": ["CMD", "sh", "-c", "echo health-probe-says-ok"],
               "interval": 300_000_000, "start_period": 0, "retries": 3}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Scrapes a port nobody listens on: `up{job="dead"} == 0` holds, as for a hang."""
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "dead", "static_configs": [
                  {"targets": [f"127.0.0.1:{free_port()}"]}]}]}
    prom = start_prometheus(tmp_path_factory.mktemp("prom"), config, [])
    wait_for(lambda: bool(prom.query(DOWN_EXPR)), 30, "the dead target's up == 0")
    yield prom
    prom.stop()


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    stub = SlackStub().start()
    yield stub
    stub.stop()


def fire(client: Any, container: str, expr: str = DOWN_EXPR) -> None:
    body = notification([alert({"container": container}, starts_at=datetime.now(UTC))])
    body["alerts"][0]["generatorURL"] = f"http://prometheus:9090/graph?g0.expr={quote(expr)}"
    response = client.post("/webhook/alertmanager", json=body, headers=webhook_headers())
    assert response.status_code == 200, response.json


def actions(app: Any, target: str) -> list[Action]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(Action).where(Action.target == target)
                                    .order_by(Action.id)))


def send_notifications(app: Any) -> None:
    svc = app.extensions["autofix"]
    OutboxSender(svc.database, svc.settings, svc.metrics, build_channels(svc.settings),
                 "test").run_once()


def test_a_hung_target_is_restarted_with_its_lines_health_and_value_kept(
        pg_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        prometheus: Prometheus, slack: SlackStub, tmp_path: Any) -> None:
    app = app_factory(pg_url, docker_host=private_dockerd.url,
                      playbooks=write_playbooks(tmp_path), prometheus_url=prometheus.url,
                      slack_bot_token="xoxb-test-bot-token-1", slack_channel="#ops",
                      slack_api_url=slack.api_url)
    container = run_container(docker_client, command=CHATTY_THEN_HANGS, healthcheck=HEALTHCHECK)
    wait_for(lambda: (container.reload() or True) and
             (container.attrs["State"].get("Health") or {}).get("Log"), 20, "a health check")
    before = started_at(container)
    fire(app.test_client(), container.name)
    drain(app)
    assert started_at(container) != before, "the hung target was restarted"
    [row] = evidence_rows(app, container.name)
    assert (row.source, row.step, row.classification) == ("implicit", 0, "hung")
    # The database: the lines, redacted.
    assert "known-line-one" in row.logs and "known-line-two" in row.logs
    assert SECRET not in row.logs and TOKEN not in row.logs and "[redacted]" in row.logs
    assert row.logs.split(" ", 1)[0].startswith(str(datetime.now(UTC).year))  # timestamps
    stored = json.dumps(row.details)
    assert SECRET not in stored and TOKEN not in stored
    assert "health-probe-says-ok" in stored
    state = row.details["state"]
    assert state["running"] and state["oom_killed"] is False
    assert row.details["expression"]["expr"] == DOWN_EXPR
    assert [s["value"] for s in row.details["expression"]["series"]] == ["0"]
    assert row.details["stats"]["memory_usage_bytes"] is not None
    assert row.details["cut"] == [] and row.took_s < 3.0
    with app.extensions["autofix"].database.session() as session:
        incident = session.scalars(select(Incident).where(
            Incident.target == container.name)).one()
        assert incident.classification == "hung"
    # The API: the evidence with the incident, the text on its own route.
    api = app.test_client()
    detail = api.get(f"/api/v1/incidents/{incident.id}", headers=api_headers()).json
    assert detail["classification"] == "hung"
    [shown] = detail["evidence"]
    assert shown["state"]["health"]["checks"][-1]["output"].strip() == "health-probe-says-ok"
    assert shown["expression"]["series"][0]["value"] == "0"
    text = api.get(shown["logs_url"], headers=api_headers())
    assert text.status_code == 200 and text.mimetype == "text/plain"
    assert "known-line-one" in text.text and SECRET not in text.text and TOKEN not in text.text
    assert api.get("/api/v1/evidence/999999/logs", headers=api_headers()).status_code == 404
    assert api.get("/api/v1/evidence/x/logs", headers=api_headers()).status_code == 400
    assert api.get(shown["logs_url"]).status_code == 401
    # Slack: the thread gets the state as fields and the log tail, redacted.
    send_notifications(app)
    sent = json.dumps([m.body for m in slack.messages()])
    assert "known-line-one" in sent and "health" in sent.lower()
    assert SECRET not in sent and TOKEN not in sent
    evidence_message = next(m.json() for m in slack.messages()
                            if "evidence captured" in str(m.json().get("text")))
    assert evidence_message.get("thread_ts"), "posted in the incident's thread"


def test_a_container_killed_by_its_memory_limit_is_classified_oom_killed(
        pg_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        tmp_path: Any) -> None:
    app = app_factory(pg_url, docker_host=private_dockerd.url,
                      playbooks=write_playbooks(tmp_path))
    # The shell doubles a string until the kernel's OOM killer ends it.
    grow = ["sh", "-c", "echo growing; x=0123456789; while :; do x=$x$x; done"]
    container = run_container(docker_client, command=grow, mem_limit="16m",
                              memswap_limit="16m")
    wait_for(lambda: (container.reload() or True) and container.status == "exited", 30,
             "the OOM kill")
    assert container.attrs["State"]["OOMKilled"] is True
    fire(app.test_client(), container.name)
    drain(app)
    [row] = evidence_rows(app, container.name)
    assert row.classification == "oom_killed"
    assert row.details["state"]["oom_killed"] is True
    assert "growing" in row.logs


def test_a_container_stopped_by_hand_is_skipped_not_restarted(
        db_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        tmp_path: Any) -> None:
    app = app_factory(db_url, docker_host=private_dockerd.url,
                      playbooks=write_playbooks(tmp_path))
    container = run_container(docker_client)
    container.stop(timeout=5)  # `docker stop`: maintenance
    before = started_at(container)
    fire(app.test_client(), container.name)
    drain(app)
    container.reload()
    assert container.status == "exited" and started_at(container) == before
    [skip] = actions(app, container.name)
    assert (skip.outcome, skip.reason) == ("skipped", "operator_stop")
    assert "stop" in (skip.error or "")
    [row] = evidence_rows(app, container.name)
    assert row.classification == "stopped_by_operator"


def test_a_container_that_died_on_its_own_is_still_restarted(
        db_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        tmp_path: Any) -> None:
    app = app_factory(db_url, docker_host=private_dockerd.url,
                      playbooks=write_playbooks(tmp_path))
    container = run_container(docker_client, command=["sh", "-c", "sleep 1; exit 3"])
    wait_for(lambda: (container.reload() or True) and container.status == "exited", 20,
             "the crash")
    fire(app.test_client(), container.name)
    drain(app)
    first = actions(app, container.name)[0]
    assert (first.action, first.outcome) == ("restart", "succeeded")
    [row] = evidence_rows(app, container.name)
    assert row.classification == "crashed" and row.details["state"]["exit_code"] == 3


def test_operator_skip_can_be_turned_off_per_playbook(
        db_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        tmp_path: Any) -> None:
    playbooks = tmp_path / "fight.yml"
    playbooks.write_text(write_playbooks(tmp_path).read_text().replace(
        "    actions:", "    skip_when: []\n    capture: false\n    actions:"))
    app = app_factory(db_url, docker_host=private_dockerd.url, playbooks=playbooks)
    container = run_container(docker_client)
    container.stop(timeout=5)
    fire(app.test_client(), container.name)
    drain(app)
    assert actions(app, container.name)[0].action == "restart"
    assert evidence_rows(app, container.name) == []  # capture: false


def test_a_slow_log_endpoint_costs_the_budget_not_the_restart(
        pg_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        tmp_path: Any) -> None:
    proxy = DockerDelayProxy(private_dockerd.sock, delay_s=8.0, slow="/logs").start()
    try:
        app = app_factory(pg_url, docker_host=proxy.url, playbooks=write_playbooks(tmp_path),
                          evidence_budget_s=1.0)
        container = run_container(docker_client, command=CHATTY_THEN_HANGS)
        before = started_at(container)
        fire(app.test_client(), container.name)
        started = time.monotonic()
        drain(app)
        took = time.monotonic() - started
        assert proxy.delayed, "the capture asked for the logs"
        assert started_at(container) != before, "restarted all the same"
        [row] = evidence_rows(app, container.name)
        assert row.details["cut"] == ["logs"] and row.logs == ""
        assert 0.9 <= row.took_s < 2.0, row.took_s
        assert row.details["state"]["running"] is True  # what arrived in time is kept
        assert took < 8.0, f"the run waited for the slow logs ({took:.1f}s)"
    finally:
        proxy.stop()
