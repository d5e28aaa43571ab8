"""Alert storms (issue #17): lanes and priority at claim time, notify-only alerts without
runs, and one message per Alertmanager notification group, updated in place.

Timings (the restart after a storm, acknowledgement of 10,000 alerts) are measured in
bench/storm.py, not here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.notify.channels import build_channels
from receiver.notify.outbox import OutboxSender
from receiver.runtime.runner import claim_next
from receiver.store.models import Incident, Outbox, Run
from tests.conftest import webhook_headers
from tests.harness.memory_executor import MemoryExecutor
from tests.harness.slack_stub import POST_MESSAGE, UPDATE, SlackStub
from tests.payloads import alert, notification

STARTS = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)

LANES = """
playbooks:
  - name: restart-urgent
    matchers: ['alertname="Urgent"']
    target: "{{ labels.container }}"
    priority: 10
    cooldown: 0s
    actions: [{restart: {timeout_s: 1}}]
  - name: restart-on-down
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
    actions: [{restart: {timeout_s: 1}}]
  - name: tell-and-escalate
    matchers: ['alertname=~".+"']
    target: "{{ labels.alertname }}"
    actions: [{notify: {}}, {escalate: {reason: "look"}}]
"""

NOTIFY_ONLY = """
playbooks:
  - name: restart-on-down
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
    actions: [{restart: {timeout_s: 1}}]
  - name: notify-unmatched
    matchers: ['alertname=~".+"']
    target: "{{ labels.get('container') or labels.alertname }}"
    actions: [{notify: {message: "seen {{ labels.container }}"}}]
"""


def storm(count: int, status: str = "firing", offset: int = 0) -> dict[str, Any]:
    alerts = [alert({"alertname": "DiskFilling", "container": f"c{i}", "severity": "warning"},
                    status=status, starts_at=STARTS,
                    ends_at=STARTS + timedelta(minutes=5) if status == "resolved" else None)
              for i in range(offset, offset + count)]
    body = notification(alerts)
    body["groupLabels"] = {"alertname": "DiskFilling"}
    body["groupKey"] = '{}:{alertname="DiskFilling"}'
    body["status"] = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return body


def post(app: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = app.test_client().post("/webhook/alertmanager", json=body,
                                      headers=webhook_headers())
    assert response.status_code == 200, response.json
    return dict(response.json)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "playbooks.yml"
    path.write_text(text)
    return path


@pytest.fixture
def stub():
    server = SlackStub().start()
    yield server
    server.stop()


def test_act_runs_go_first_by_priority_and_light_runs_skip_the_cap(db_url, app_factory,
                                                                    tmp_path) -> None:
    executor = MemoryExecutor()
    for name in ("web", "api"):
        executor.add(name)
    app = app_factory(db_url, playbooks=write(tmp_path, LANES), executor=executor,
                      max_concurrent_runs=1)
    post(app, storm(200))  # 200 light runs, queued first
    post(app, notification([alert({"container": "web"}, starts_at=STARTS)]))
    post(app, notification([alert({"alertname": "Urgent", "container": "api"},
                                  starts_at=STARTS)]))
    services = app.extensions["autofix"]
    with services.database.session() as session:
        lanes = {(r.playbook, r.lane, r.priority) for r in session.scalars(select(Run))}
    assert lanes == {("tell-and-escalate", "light", 0), ("restart-on-down", "act", 0),
                     ("restart-urgent", "act", 10)}

    def playbook_of(run_id: int | None) -> str | None:
        with services.database.session() as session:
            run = session.get(Run, run_id) if run_id else None
            return run.playbook if run else None

    # Priority first, although queued last; then the older act run is held by the cap
    # (1 act run running), while light runs still flow.
    assert playbook_of(claim_next(services, "w")) == "restart-urgent"
    assert playbook_of(claim_next(services, "w")) == "tell-and-escalate"
    assert claim_next(services, "w", light=False) is None  # the act-only thread waits
    with services.database.session() as session:
        urgent = session.scalars(select(Run).where(Run.playbook == "restart-urgent")).one()
        urgent.status = "succeeded"  # test shortcut: end it without running it
    assert playbook_of(claim_next(services, "w", light=False)) == "restart-on-down"


def test_a_notify_only_storm_is_one_group_message_updated_in_place(
        db_url, app_factory, tmp_path, stub) -> None:
    # Filed before answering (no deferral, test_deferred_ingest.py covers it): this test
    # reads the webhook's counts.
    app = app_factory(db_url, playbooks=write(tmp_path, NOTIFY_ONLY),
                      slack_bot_token="xoxb-test-1234-abcdefghijkl", slack_channel="#ops",
                      slack_api_url=f"{stub.url}/api/", notify_backoff_s=0.05,
                      ingest_defer_alerts=0)
    first = post(app, storm(2000))
    assert first["new"] == 2000 and first["runs_queued"] == 0
    services = app.extensions["autofix"]
    with services.database.session() as session:
        statuses = {i.status for i in session.scalars(select(Incident))}
        rows = list(session.scalars(select(Outbox)))
    assert statuses == {"closed"}
    assert [(r.kind, r.incident_id is None) for r in rows] == [("group", True)]
    sender = OutboxSender(services.database, services.settings, services.metrics,
                          build_channels(services.settings), "test")
    assert sender.run_once() == 1
    # The group grows and partly resolves: the next notifications update the same message;
    # a second one arriving before the first update was sent adds nothing.
    post(app, {**storm(2100), "alerts": storm(2100)["alerts"][:1800]
               + storm(300, "resolved")["alerts"]})
    post(app, storm(2100))
    assert sender.run_once() == 1
    posted = stub.for_path(POST_MESSAGE)
    updated = stub.for_path(UPDATE)
    assert len(posted) == 1 and len(updated) == 1
    assert updated[0].json()["ts"] == posted[0].ts
    text = posted[0].json()["text"]
    assert "2000 firing" in text and "alertname=DiskFilling" in text
    sample = "\n".join(b["text"]["text"] for b in posted[0].json()["blocks"]
                       if b["type"] == "section")
    assert "seen c0" in sample and "… and 1990 more" in sample
    assert "2100 firing" in updated[0].json()["text"]
    # Resolving notify-only incidents sends no message of their own.
    post(app, storm(2100, "resolved"))
    assert sender.run_once() == 1
    assert len(stub.for_path(POST_MESSAGE)) == 1
    assert ":large_green_circle: resolved" in stub.for_path(UPDATE)[-1].json()["text"]


def test_a_remediated_alert_keeps_its_own_thread_and_makes_no_group_message(
        db_url, app_factory, tmp_path, stub) -> None:
    executor = MemoryExecutor()
    executor.add("web")
    app = app_factory(db_url, playbooks=write(tmp_path, NOTIFY_ONLY), executor=executor,
                      slack_bot_token="xoxb-test-1234-abcdefghijkl", slack_channel="#ops",
                      slack_api_url=f"{stub.url}/api/",
                      outbound_webhook_url=f"{stub.url}/out/hook-secret-4242")
    post(app, notification([alert({"container": "web"}, starts_at=STARTS)]))
    with app.extensions["autofix"].database.session() as session:
        assert [r.group_id for r in session.scalars(select(Outbox))] == []  # no event yet
    post(app, storm(3))
    services = app.extensions["autofix"]
    with services.database.session() as session:
        kinds = sorted((r.channel, r.kind) for r in session.scalars(select(Outbox)))
    assert kinds == [("slack", "group"), ("webhook", "group")]
    sender = OutboxSender(services.database, services.settings, services.metrics,
                          build_channels(services.settings), "test")
    assert sender.run_once() == 2
    [hook] = stub.for_path("/out/hook-secret-4242")
    body = hook.json()
    assert body["event"] == "group" and body["group"]["firing"] == 3
    assert body["group"]["top_alertnames"] == [["DiskFilling", 3]]


def test_a_group_update_racing_a_sender_is_never_lost(pg_url, app_factory, tmp_path,
                                                        stub) -> None:
    """A notification that finds the group's message still waiting adds no row, so that row
    must not go out with the state from before this notification commits."""
    from receiver.notify.groups import emit_group

    app = app_factory(pg_url, playbooks=write(tmp_path, NOTIFY_ONLY),
                      slack_bot_token="xoxb-test-1234-abcdefghijkl", slack_channel="#ops",
                      slack_api_url=f"{stub.url}/api/")
    post(app, storm(3))
    services = app.extensions["autofix"]
    sender = OutboxSender(services.database, services.settings, services.metrics,
                          build_channels(services.settings), "test")
    with services.database.session() as session:
        [row] = session.scalars(select(Outbox)).all()
        group_id = row.group_id
    assert group_id is not None
    with services.database.session() as ingest:  # a newer notification, not yet committed
        assert emit_group(ingest, group_id, ["slack"], datetime.now(UTC)) == 0
        assert sender.run_once() == 0  # the waiting row is held until the new state commits
    assert sender.run_once() == 1
