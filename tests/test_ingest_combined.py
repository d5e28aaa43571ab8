"""On PostgreSQL the webhook writes a one-status notification's row, its incidents and its
group in one statement (store/ingest_store.store_and_upsert). Fed the same notifications, it
leaves the database as the three statements run one by one leave it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.domain.payload import WebhookPayload
from receiver.incidents import filing
from receiver.store.migrate import upgrade
from receiver.store.models import AlertGroup, Incident, Notification, Outbox, Run
from tests.conftest import webhook_headers
from tests.payloads import alert, notification

T0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
PLAYBOOKS = """
playbooks:
  - name: restart-on-down
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    actions:
      - restart: {timeout_s: 5}
  - name: notify-unmatched
    matchers: ['alertname=~".+"']
    target: "{{ labels.alertname }}"
    actions:
      - notify: {}
"""


def _notifications() -> list[dict[str, Any]]:
    down = {"alertname": "TargetDown", "container": "web"}
    load = [{"alertname": "HighLoad", "container": "web", "instance": f"i{n}"}
            for n in range(3)]
    firing = [alert(labels, starts_at=T0) for labels in load]
    resolved = [alert(labels, status="resolved", starts_at=T0,
                      ends_at=T0 + timedelta(minutes=5)) for labels in load]
    return [
        notification(firing),                         # new, notify-only: a group row
        notification(firing),                         # repeats
        notification([alert(down, starts_at=T0)]),    # a run, no group row
        notification(resolved[:2] + firing[2:]),      # mixed: the one-by-one path
        notification(resolved),                       # all resolved
        notification([alert(down, status="resolved", starts_at=T0,
                            ends_at=T0 + timedelta(minutes=1))]),
    ]


def _snapshot(app: Any, responses: list[Any]) -> dict[str, Any]:
    with app.extensions["autofix"].database.session() as session:
        fingerprints = dict(session.execute(select(Incident.id, Incident.fingerprint)).all())
        groups = dict(session.execute(select(AlertGroup.id, AlertGroup.key_hash)).all())
        return {
            "responses": [{k: v for k, v in r.items() if k != "notification_id"}
                          for r in responses],
            "notifications": [(n.group_key, n.status, n.alert_count, n.payload,
                               n.ingest_state, n.ingest_attempts)
                              for n in session.scalars(select(Notification)
                                                       .order_by(Notification.id))],
            "incidents": [(i.fingerprint, i.starts_at, i.ends_at, i.status,
                           i.notification_count, i.playbook, i.target, i.labels,
                           i.closed_at is None, i.close_reason, i.resolved_at is None,
                           i.time_to_resolve_s, i.resolved_unseen, i.first_seen == i.last_seen)
                          for i in session.scalars(select(Incident)
                                                   .order_by(Incident.fingerprint))],
            "groups": [(g.key_hash, g.group_key, g.receiver, g.group_labels, g.external_url,
                        g.firing, g.resolved, g.summary, g.first_seen <= g.last_seen)
                       for g in session.scalars(select(AlertGroup)
                                                            .order_by(AlertGroup.key_hash))],
            "runs": [(r.playbook, r.target, r.status, r.alert_status, r.lane)
                     for r in session.scalars(select(Run).order_by(Run.id))],
            # Which incident's or group's message was queued, by its key.
            "outbox": [(o.kind, o.channel, o.status,
                        fingerprints.get(o.incident_id), groups.get(o.group_id))
                       for o in session.scalars(select(Outbox).order_by(Outbox.id))],
        }


def _replay(url: str, app_factory: Any, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOKS)
    # Slack configured, never reached: no runner sends the queued messages.
    app = app_factory(url, playbooks=path, slack_bot_token="xoxb-test",
                      slack_channel="#ops", slack_api_url="http://127.0.0.1:9/api/")
    client = app.test_client()
    responses = []
    for body in _notifications():
        response = client.post("/webhook/alertmanager", json=body, headers=webhook_headers())
        assert response.status_code == 200, response.json
        responses.append(response.json)
    return _snapshot(app, responses)


def test_one_statement_leaves_what_three_statements_leave(
        postgres: Any, pg_url: str, app_factory: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    combined_calls: list[bool] = []
    real = filing.store_and_upsert

    def counted(*args: Any, **kwargs: Any) -> Any:
        stored = real(*args, **kwargs)
        combined_calls.append(stored is not None)
        return stored

    monkeypatch.setattr(filing, "store_and_upsert", counted)
    combined = _replay(pg_url, app_factory, tmp_path)
    # Every notification but the mixed one took the one statement.
    assert combined_calls == [True, True, True, False, True, True]

    monkeypatch.setattr(filing, "store_and_upsert", lambda *args, **kwargs: None)
    one_by_one_url = postgres.create_database()
    upgrade(one_by_one_url)
    one_by_one = _replay(one_by_one_url, app_factory, tmp_path)

    assert combined == one_by_one
    assert [r["new"] for r in combined["responses"]] == [3, 0, 1, 0, 0, 0]
    assert [r["resolved"] for r in combined["responses"]] == [0, 0, 0, 2, 1, 1]
    # TargetDown has a thread of its own (a restart playbook): no group row for it.
    assert len(combined["groups"]) == 1 and combined["groups"][0][5:7] == (0, 3)
    kinds = [row[0] for row in combined["outbox"]]
    assert "group" in kinds and "resolved" in kinds
    assert [run[:2] for run in combined["runs"]] == [("restart-on-down", "web")]


def test_the_statement_inserts_every_notification_value() -> None:
    from receiver.store import ingest_store

    params = ingest_store._notification_params(
        WebhookPayload.model_validate(notification([alert({"alertname": "A"})])), "{}", T0)
    assert set(params) == {*ingest_store._NOTIFICATION_COLUMNS, "payload_text"}


def test_an_older_state_of_a_group_does_not_overwrite_a_newer_one(
        pg_url: str, app_factory: Any, tmp_path: Path) -> None:
    """The group's upsert inside the one statement keeps its guard: a state older than the
    stored one (a deferred notification filed late) leaves the row and sends nothing."""
    from receiver.notify.groups import group_values
    from receiver.playbooks.ingest import plan_occurrences
    from receiver.store.ingest_store import store_and_upsert

    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOKS)
    app = app_factory(pg_url, playbooks=path)
    svc = app.extensions["autofix"]
    config = svc.config.current
    labels = {"alertname": "HighLoad", "container": "web"}
    stored_ids = []
    for firing, now in ((2, T0 + timedelta(minutes=2)), (1, T0 + timedelta(minutes=1))):
        body = notification([alert({**labels, "instance": f"i{n}"}, starts_at=T0)
                             for n in range(firing)])
        payload = WebhookPayload.model_validate(body)
        occurrences = plan_occurrences(payload, config.playbooks, svc.renderer,
                                       svc.registry.light_actions())
        group = group_values(payload, occurrences, config.playbooks, svc.renderer, now)
        with svc.database.session() as session:
            stored = store_and_upsert(session, payload, "{}", now, occurrences, group)
            assert stored is not None
            stored_ids.append(stored.group_id)
    assert stored_ids[0] is not None and stored_ids[1] is None
    with svc.database.session() as session:
        [group] = session.scalars(select(AlertGroup))
        assert group.firing == 2 and group.last_seen == T0 + timedelta(minutes=2)


def test_overlapping_notifications_of_one_group_never_deadlock(
        pg_url: str, app_factory: Any, tmp_path: Path) -> None:
    """Two senders flush one group at once with overlapping alerts ([a, b] and [b]), as
    an Alertmanager retry overlapping the next flush does. Each statement locks its
    incidents before the group's row, as the separate statements did: a lock order that
    took the group's row between two incidents would deadlock (a 503)."""
    import threading

    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOKS)
    app = app_factory(pg_url, playbooks=path)
    labels = [{"alertname": "HighLoad", "container": "web", "instance": name}
              for name in ("a", "b")]
    bodies = [notification([alert(x, starts_at=T0) for x in labels]),
              notification([alert(labels[1], starts_at=T0)])]
    statuses: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def send(index: int) -> None:
        client = app.test_client()
        start.wait()
        for _ in range(150):
            response = client.post("/webhook/alertmanager", json=bodies[index],
                                   headers=webhook_headers())
            statuses[index].append(response.status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert statuses == [[200] * 150, [200] * 150]
