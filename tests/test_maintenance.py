"""Maintenance windows (#30): while one is in force, runs matching it skip `maintenance`
(recorded, not escalated); alerts are still recorded; its end queues the held runs again.

In-process tests use the in-memory executor and an injected clock (SQLite and PostgreSQL);
the last test drives a receiver against opted-in busybox containers on a real dockerd.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from receiver.engine.guards import window_holds
from receiver.incidents.maintenance import end_lapsed_windows
from receiver.store.models import Action, AuditEntry, Incident
from receiver.telemetry.metrics import SKIP_REASONS_SHOWN
from tests.conftest import api_headers
from tests.harness.app_driver import actions, drain, fire_container, runs
from tests.harness.clock import T0
from tests.harness.containers import run_container, started_at
from tests.harness.memory_app import fire, make_app
from tests.harness.playbook_yaml import write_playbooks

HOUR = timedelta(hours=1)


def window(matchers: list[str], start: Any = None, end: Any = None, **extra: Any
           ) -> dict[str, Any]:
    body = {"matchers": matchers, "ends_at": (end or T0 + HOUR).isoformat(),
            "actor": "alice", "reason": "db upgrade", **extra}
    if start is not None:
        body["starts_at"] = start.isoformat()
    return body


def create(client: Any, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/maintenance", json=body, headers=api_headers())


def guard_reasons(app: Any) -> list[str | None]:
    with app.extensions["autofix"].database.session() as session:
        return [a.reason for a in session.scalars(
            select(Action).where(Action.action == "guard").order_by(Action.id))]


def audit(app: Any) -> list[str]:
    with app.extensions["autofix"].database.session() as session:
        return [e.verb for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_a_window_holds_matching_runs_and_its_end_queues_them_again(
        db_url, app_factory, tmp_path) -> None:
    app, executor, clock = make_app(app_factory, db_url, tmp_path)
    executor.add("shop-web")
    executor.add("blog")
    client = app.test_client()
    created = create(client, window(['container=~"shop-.*"']))
    assert created.status_code == 201, created.json
    held = created.json
    assert held["state"] == "active" and held["created_by"].startswith("alice")
    assert held["matchers"] == ['container=~"shop-.*"'] and held["ended_at"] is None

    fire(client, {"container": "shop-web"})
    fire(client, {"container": "blog"})
    drain(app)
    assert executor.restarts("shop-web") == 0 and executor.restarts("blog") == 1
    [skip] = [a for a in actions(app, "shop-web") if a.action == "guard"]
    assert (skip.outcome, skip.reason) == ("skipped", "maintenance")
    for said in (f"maintenance window {held['id']}", "alice", "db upgrade",
                 held["ends_at"]):
        assert said in (skip.error or ""), skip.error
    with app.extensions["autofix"].database.session() as session:
        incident = session.scalars(select(Incident).where(
            Incident.target == "shop-web")).one()
        assert incident.status == "open" and incident.next_attempt_at is None  # no retry
    assert b'autofix_runs_skipped_total{reason="maintenance"} 1.0' in client.get(
        "/metrics").data

    listed = client.get("/api/v1/maintenance", headers=api_headers()).json["items"]
    assert [w["id"] for w in listed] == [held["id"]]
    ended = client.post(f"/api/v1/maintenance/{held['id']}/end",
                        json={"actor": "bob", "reason": "done early"}, headers=api_headers())
    assert ended.status_code == 200, ended.json
    assert ended.json["state"] == "ended" and ended.json["ended_by"].startswith("bob")
    again = client.post(f"/api/v1/maintenance/{held['id']}/end", json={"actor": "bob"},
                        headers=api_headers())
    assert again.status_code == 409 and "over already" in again.json["message"]
    assert client.get("/api/v1/maintenance", headers=api_headers()).json["items"] == []
    assert [w["state"] for w in client.get("/api/v1/maintenance?ended=true",
                                           headers=api_headers()).json["items"]] == ["ended"]
    drain(app)  # the alert still fires: the held run was queued again, once
    assert executor.restarts("shop-web") == 1
    clock.advance(60)
    drain(app)
    assert executor.restarts("shop-web") == 1
    assert audit(app) == ["maintenance_start", "maintenance_end", "maintenance_requeue"]


def test_a_window_over_the_canonical_name_holds_an_alert_naming_the_id(
        db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    container = executor.add("shop-db")
    client = app.test_client()
    assert create(client, window(['target="shop-db"'])).status_code == 201
    fire(client, {"container": container.id[:12]})
    drain(app)
    assert executor.restarts("shop-db") == 0
    assert guard_reasons(app) == ["maintenance"]
    assert [r.target for r in runs(app)] == ["shop-db"]  # canonical once resolved


def test_a_scheduled_window_holds_only_from_its_start_and_lapses_by_itself(
        db_url, app_factory, tmp_path) -> None:
    app, executor, clock = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    client = app.test_client()
    body = window(['container="web"'], start=T0 + HOUR, end=T0 + 2 * HOUR)
    created = create(client, body)
    assert created.status_code == 201 and created.json["state"] == "scheduled"
    clock.advance(HOUR.total_seconds())
    fire(client, {"container": "web"}, starts=clock.now - timedelta(minutes=1))
    drain(app)
    assert executor.restarts("web") == 0 and guard_reasons(app) == ["maintenance"]
    clock.advance(HOUR.total_seconds())
    assert end_lapsed_windows(app.extensions["autofix"]) != []
    assert end_lapsed_windows(app.extensions["autofix"]) == []  # once
    drain(app)
    assert executor.restarts("web") == 1
    [over] = client.get("/api/v1/maintenance?ended=true", headers=api_headers()).json["items"]
    assert over["ended_by"] == "ends_at" and over["state"] == "ended"


def test_a_manual_run_inside_a_window_is_409_but_a_dry_run_goes_on(
        db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    executor.add("web")
    client = app.test_client()
    create(client, window(['container="web"']))
    path = "/api/v1/playbooks/restart-on-down/run"
    response = client.post(path, headers=api_headers(),
                           json={"labels": {"container": "web"}, "reason": "try"})
    assert response.status_code == 409 and response.json["reason"] == "maintenance"
    assert "manual run inside a maintenance window is held too" in response.json["message"]
    dry = client.post(path, headers=api_headers(),
                      json={"labels": {"container": "web"}, "reason": "see", "dry_run": True})
    assert dry.status_code == 202, dry.json
    drain(app)
    assert executor.restarts("web") == 0


def test_an_alert_inside_a_window_is_still_recorded_and_notified(
        db_url, app_factory, tmp_path) -> None:
    app, _, _ = make_app(app_factory, db_url, tmp_path,
                         outbound_webhook_url="http://127.0.0.1:9/hook")
    client = app.test_client()
    create(client, window(['alertname="DiskFull"']))
    fire(client, {"alertname": "DiskFull"})  # notify-unmatched: told in the group message
    drain(app)
    with app.extensions["autofix"].database.session() as session:
        [incident] = session.scalars(select(Incident))
        assert incident.alertname == "DiskFull"
    assert guard_reasons(app) == []


@pytest.mark.parametrize("body, said", [
    (window([]), "at least one matcher"),
    (window(['container=="web"']), "single ="),
    (window(['container=~"("']), "invalid regex"),
    (window(['container!="web"']), "hold everything"),
    (window(['container=~".*"']), "hold everything"),
    (window(['container="web"'], end=T0 - timedelta(seconds=1)), "in the past"),
    (window(['container="web"'], start=T0 + 2 * HOUR), "after starts_at"),
    (window(['container="web"'], end=T0 + timedelta(days=31)), "at most 30 days"),
    ({**window(['container="web"']), "ends_at": "2026-11-30T05:00:00"}, "timezone"),
    ({k: v for k, v in window(['container="web"']).items() if k != "actor"}, "actor"),
    (window(['container="web"'], reason="  "), "reason"),
    (window(["x"] * 21), "matchers"),
])
def test_bad_windows_are_422_with_a_clear_message(db_url, app_factory, tmp_path,
                                                  body, said) -> None:
    app, _, _ = make_app(app_factory, db_url, tmp_path)
    response = create(app.test_client(), body)
    assert response.status_code == 422, response.json
    assert said in response.json["message"], response.json["message"]
    assert audit(app) == []


def test_ending_an_unknown_window_is_404_and_a_bad_id_400(sqlite_url, app_factory,
                                                         tmp_path) -> None:
    app, _, _ = make_app(app_factory, sqlite_url, tmp_path)
    client = app.test_client()
    body = {"actor": "bob"}
    assert client.post("/api/v1/maintenance/7/end", json=body,
                       headers=api_headers()).status_code == 404
    assert client.post("/api/v1/maintenance/x/end", json=body,
                       headers=api_headers()).status_code == 400


def test_window_matching_is_alertmanager_matching_over_labels_and_target() -> None:
    labels = {"alertname": "TargetDown", "container": "4f2a"}
    assert window_holds(['target="shop-db"'], labels, ["4f2a", "shop-db"])
    assert window_holds(['container="4f2a"', 'alertname="TargetDown"'], labels, [])
    assert not window_holds(['container="4f2a"', 'severity="page"'], labels, ["shop-db"])
    assert not window_holds(['target=~"shop-.*"'], labels, ["blog"])


def test_maintenance_is_a_skip_reason_shown_from_start() -> None:
    assert "maintenance" in SKIP_REASONS_SHOWN


def test_a_window_holds_a_real_container_until_it_ends(
        pg_url: str, app_factory: Any, private_dockerd: Any, tmp_path: Any) -> None:
    from tests.harness.busybox import ensure_busybox_image
    docker = private_dockerd.client()
    ensure_busybox_image(docker)
    app = app_factory(pg_url, docker_host=private_dockerd.url,
                      playbooks=write_playbooks(tmp_path))
    client = app.test_client()
    held, other = run_container(docker), run_container(docker)
    try:
        now = app.extensions["autofix"].clock()
        created = client.post("/api/v1/maintenance", headers=api_headers(), json={
            "matchers": [f'container="{held.name}"'], "ends_at": (now + HOUR).isoformat(),
            "actor": "alice", "reason": "kernel patch"})
        assert created.status_code == 201, created.json
        before = started_at(held)
        fire_container(client, held.name)
        drain(app)
        assert started_at(held) == before, "held by the window: never restarted"
        [skip] = actions(app, held.name)
        assert (skip.action, skip.outcome, skip.reason) == ("guard", "skipped", "maintenance")
        with app.extensions["autofix"].database.session() as session:
            [incident] = session.scalars(select(Incident).where(Incident.target == held.name))
            assert incident.status == "open"  # recorded, not escalated
        ended = client.post(f"/api/v1/maintenance/{created.json['id']}/end",
                            json={"actor": "alice", "reason": "patched"},
                            headers=api_headers())
        assert ended.status_code == 200, ended.json
        fire_container(client, other.name)  # a window over one container holds no other
        drain(app)
        assert started_at(held) != before, "acted on once the window ended"
        assert [(a.action, a.outcome) for a in actions(app, held.name)][1:] == [
            ("restart", "succeeded"), ("wait_healthy", "succeeded")]
        assert actions(app, other.name)[0].outcome == "succeeded"
    finally:
        for container in (held, other):
            container.remove(force=True)


def test_migration_0011_adds_and_removes_the_table_and_retention_prunes_old_windows(
        db_url: str, app_factory: Any, tmp_path: Any) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from receiver.store.engine import Database
    from receiver.store.migrate import alembic_config, prune

    app, _, clock = make_app(app_factory, db_url, tmp_path)
    client = app.test_client()
    assert create(client, window(['container="web"'])).status_code == 201
    clock.advance(40 * 24 * 3600)
    assert create(client, window(['container="db"'], end=clock.now + HOUR)).status_code == 201
    pruned = prune(app.extensions["autofix"].database, timedelta(days=30), now=clock.now)
    assert pruned["maintenance_windows"] == 1
    assert [w["matchers"] for w in client.get("/api/v1/maintenance?ended=true",
                                              headers=api_headers()).json["items"]] == [
        ['container="db"']]
    app.extensions["autofix"].database.dispose()
    database = Database(db_url)
    try:
        command.downgrade(alembic_config(db_url), "0010")
        assert "maintenance_windows" not in inspect(database.engine).get_table_names()
        command.upgrade(alembic_config(db_url), "head")
        assert "maintenance_windows" in inspect(database.engine).get_table_names()
    finally:
        database.dispose()


def test_a_run_held_by_two_overlapping_windows_is_queued_when_the_last_ends(
        db_url, app_factory, tmp_path) -> None:
    """Window A holds the run; B (created later, for the same container) still holds it
    when A ends; when B ends the run must go, though it was skipped before B started."""
    app, executor, clock = make_app(app_factory, db_url, tmp_path)
    executor.add("shop-db")
    client = app.test_client()
    first = create(client, window(['container=~"shop-.*"'])).json
    fire(client, {"container": "shop-db"})
    drain(app)
    assert guard_reasons(app) == ["maintenance"]
    clock.advance(600)
    second = create(client, window(['container="shop-db"'], end=T0 + 2 * HOUR)).json
    client.post(f"/api/v1/maintenance/{first['id']}/end", json={"actor": "bob"},
                headers=api_headers())
    drain(app)
    assert executor.restarts("shop-db") == 0  # the second window still holds it
    client.post(f"/api/v1/maintenance/{second['id']}/end", json={"actor": "bob"},
                headers=api_headers())
    drain(app)
    assert executor.restarts("shop-db") == 1


def test_a_skip_recorded_just_after_a_window_ended_is_swept_up(
        db_url, app_factory, tmp_path) -> None:
    """A run that read the windows just before an end records its skip just after the end
    queued the held runs: the heartbeat's sweep of windows ended lately queues it."""
    app, executor, clock = make_app(app_factory, db_url, tmp_path)
    executor.add("shop-db")
    client = app.test_client()
    held = create(client, window(['container="shop-db"'])).json
    client.post(f"/api/v1/maintenance/{held['id']}/end", json={"actor": "bob"},
                headers=api_headers())
    # The late skip: as a run that loaded before the end would have recorded it.
    from receiver.engine.execution import RunInfo, record_skip
    from receiver.engine.guards import GuardStop

    fire(client, {"container": "shop-db"})
    services = app.extensions["autofix"]
    with services.database.session() as session:
        from receiver.store.models import Run

        run = session.scalars(select(Run)).one()
        incident = session.get(Incident, run.incident_id)
        record_skip(session, services, RunInfo.of(run, incident),
                    GuardStop("maintenance", f"maintenance window {held['id']}"))
    assert end_lapsed_windows(services) != []  # swept: queued again
    assert end_lapsed_windows(services) == []  # once
    drain(app)
    assert executor.restarts("shop-db") == 1
    clock.advance(180)
    assert end_lapsed_windows(services) == []  # long after the end: nothing to sweep


TWO_RESTARTS = """
playbooks:
  - name: twice
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
    actions:
      - restart: {timeout_s: 5}
      - restart: {timeout_s: 5}
"""


def test_a_window_that_begins_between_two_steps_stops_the_second(
        db_url, app_factory, tmp_path) -> None:
    """The kill switch stops a run between its steps; a maintenance window over the run
    that begins while it runs does too (the second restart is not started)."""
    app, executor, _ = make_app(app_factory, db_url, tmp_path, TWO_RESTARTS)
    executor.add("shop-db")
    client = app.test_client()
    opened: list[int] = []

    def open_window(_container: Any) -> None:
        if not opened:
            opened.append(create(client, window(['container="shop-db"'])).json["id"])

    executor.on_restart = open_window
    fire(client, {"container": "shop-db"})
    drain(app)
    assert executor.restarts("shop-db") == 1 and opened
    steps = [(a.step, a.outcome, a.reason) for a in actions(app, "shop-db")
             if a.action == "restart"]
    assert steps == [(0, "succeeded", None), (1, "skipped", "maintenance")], steps
    [run] = runs(app)
    assert run.status == "skipped" and f"maintenance window {opened[0]}" in (run.error or "")
    assert run.reason == "maintenance"  # not "paused": the run says what held it
