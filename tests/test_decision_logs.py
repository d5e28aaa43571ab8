"""Every decision is one JSON log line with its ids, and gunicorn's own lines are the same
JSON; an alert whose target cannot be rendered is escalated, never left open in silence."""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.domain.errors import DatabaseUnavailable
from receiver.notify import Event
from receiver.runtime.runner import Runner
from receiver.store.models import Incident
from receiver.telemetry.logs import JsonFormatter
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, api_headers
from tests.harness.app_driver import drain
from tests.harness.memory_app import NOTIFY_AND_RESTART, fire, make_app
from tests.harness.procs import wait_for
from tests.harness.receiver import start_receiver


class Recorder:
    """A notifier that keeps the events it was given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, session: Any, event: Event) -> None:
        self.events.append(event)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger's output, formatted as `autofix serve` formats it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter([]))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def entries(stream: io.StringIO, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [entry for entry in lines if entry["event"] == event]


def test_an_alert_without_a_target_is_escalated_and_notified(
        db_url, app_factory, tmp_path, json_log) -> None:
    recorder = Recorder()
    app, executor, _ = make_app(app_factory, db_url, tmp_path, notifier=recorder)
    executor.add("web")
    client = app.test_client()
    fire(client, {"alertname": "TargetDown"})  # no container label: no target
    drain(app)
    with app.extensions["autofix"].database.session() as session:
        incident = session.scalars(select(Incident)).one()
        status, reason = incident.status, incident.escalation_reason
    assert status == "escalated"
    assert "invalid_target" in reason and "container" in reason
    escalated = [e for e in recorder.events if e.kind == "escalated"]
    assert [e.incident_id for e in escalated] == [incident.id]
    [line] = entries(json_log, "run skipped by a guard")
    assert line["level"] == "warning" and line["reason"] == "invalid_target"
    assert line["incident_id"] == incident.id and line["run_id"] > 0 and line["escalated"]
    assert executor.restarts("web") == 0


def test_each_decision_is_one_json_line_with_ids(db_url, app_factory, tmp_path,
                                                 json_log) -> None:
    app, executor, clock = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    client = app.test_client()
    for _ in range(4):  # max_actions 3: the fourth opens the breaker
        clock.advance(1)
        fire(client, {"alertname": "TargetDown", "container": "web"},
             starts=clock.now - timedelta(seconds=0.5))
        drain(app)
    [opened] = entries(json_log, "breaker opened")
    assert opened["level"] == "warning" and opened["target"] == "web"
    assert opened["incident_id"] > 0 and opened["run_id"] > 0
    stops = entries(json_log, "run skipped by a guard")
    assert [s["reason"] for s in stops] == ["breaker_open"]
    assert stops[0]["incident_id"] == opened["incident_id"]

    reset = client.post("/api/v1/breakers/web/reset", headers=api_headers(),
                        json={"actor": "bob", "reason": "fixed"})
    assert reset.status_code == 200
    [line] = entries(json_log, "breaker reset")
    assert (line["target"], line["actor"]) == ("web", "bob")

    manual = client.post("/api/v1/playbooks/restart-on-down/run", headers=api_headers(),
                         json={"labels": {"container": "web"}, "reason": "try",
                               "requested_by": "bob"})
    assert manual.status_code == 202, manual.json
    [line] = entries(json_log, "manual run requested")
    assert line["incident_id"] == manual.json["incident_id"]
    assert line["run_id"] == manual.json["run_id"] and line["target"] == "web"

    reload = client.post("/-/reload", headers=api_headers())
    assert reload.status_code == 200
    [line] = entries(json_log, "playbooks reloaded")
    assert line["config_version"] == reload.json["version"] and line["sha256"]


def test_database_unavailable_and_back_are_logged_once_each(
        sqlite_url, app_factory, tmp_path, json_log, monkeypatch) -> None:
    app, _, _ = make_app(app_factory, sqlite_url, tmp_path, NOTIFY_AND_RESTART,
                         run_lease_s=0.3)
    services = app.extensions["autofix"]
    database = services.database
    real_session = database.session
    down = threading.Event()

    def session(operation: str = "query") -> Any:
        if down.is_set():
            raise DatabaseUnavailable(f"database unavailable during {operation}")
        return real_session(operation)

    monkeypatch.setattr(database, "session", session)
    runner = Runner(services)
    runner._periodic.start()
    try:
        down.set()
        wait_for(lambda: entries(json_log, "database unavailable"), 10, "outage logged")
        down.clear()
        wait_for(lambda: entries(json_log, "database back"), 10, "recovery logged")
    finally:
        runner._periodic.stop(5)
    [lost] = entries(json_log, "database unavailable")
    [back] = entries(json_log, "database back")
    assert lost["level"] == "error" and lost["worker"] == back["worker"] == runner.worker


def test_gunicorn_lines_are_json_and_each_instance_has_its_own_control_socket(
        sqlite_url, tmp_path: Path) -> None:
    receiver = start_receiver(sqlite_url, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_ACCESS_LOG": "true"})
    try:
        with urllib.request.urlopen(f"{receiver.url}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        control = tmp_path / "r" / "metrics" / "gunicorn.ctl"
        assert control.exists()
    finally:
        receiver.stop()
    assert 'autofix_build_info{version="' in metrics
    lines = [line for line in receiver.log().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line, gunicorn's included
    loggers = {entry["logger"] for entry in parsed}
    assert {"gunicorn.error", "gunicorn.access"} <= loggers, loggers
    access = [e for e in parsed if e["logger"] == "gunicorn.access" and e["path"] == "/metrics"]
    assert access and access[0]["status"] == 200 and access[0]["method"] == "GET"
    assert any("Booting worker" in e["event"] for e in parsed if e["logger"] == "gunicorn.error")


def test_serve_removes_the_metrics_directory_it_created(sqlite_url, tmp_path: Path) -> None:
    import re

    receiver = start_receiver(sqlite_url, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN})
    receiver.stop()
    # With PROMETHEUS_MULTIPROC_DIR given, the directory is the operator's: it stays.
    assert (tmp_path / "r" / "metrics").is_dir()
    own = start_receiver(sqlite_url, root=tmp_path / "own", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": ""})  # unset: autofix makes (and owns) one
    try:
        found = re.search(r"Control socket listening at (\S+)/gunicorn\.ctl", own.log())
        assert found, own.log()
        created = Path(found.group(1))
        assert created.is_dir() and created.name.startswith("autofix-metrics-")
    finally:
        own.stop()
    assert not created.exists()
