"""Large notifications (issue #17): acknowledged once stored, their alerts filed right after.

Above AUTOFIX_INGEST_DEFER_ALERTS the webhook answers 202 with the notification stored as
received (pending); a worker's drainer (receiver/incidents/filing.py) files its alerts exactly
as the webhook files a small one. The acknowledgement time is measured in bench/storm.py.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update

from receiver.incidents import filing
from receiver.incidents.filing import LEASE_S, MAX_ATTEMPTS, drain_one, pending_count
from receiver.store.migrate import prune
from receiver.store.models import AlertGroup, Incident, Notification, Run
from tests.conftest import webhook_headers
from tests.harness.db import query
from tests.harness.procs import wait_for
from tests.harness.receiver import start_receiver
from tests.harness.receiver_env import receiver_env
from tests.payloads import alert, notification

STARTS = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
PLAYBOOKS = """
playbooks:
  - name: restart-on-down
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    actions: [{restart: {}}]
  - name: notify-unmatched
    matchers: ['alertname=~".+"']
    target: "{{ labels.get('container') or labels.alertname }}"
    actions: [{notify: {message: "seen {{ labels.container }}"}}]
"""


def storm(count: int, status: str = "firing", down: int = 0) -> dict[str, Any]:
    """`count` DiskFilling alerts (notify-only) and `down` TargetDown ones (a restart)."""
    alerts = [alert({"alertname": "DiskFilling" if i >= down else "TargetDown",
                     "container": f"c{i}"}, status=status, starts_at=STARTS,
                    ends_at=STARTS + timedelta(minutes=5) if status == "resolved" else None)
              for i in range(count)]
    body = notification(alerts)
    body["groupLabels"] = {"alertname": "DiskFilling"}
    body["groupKey"] = '{}:{alertname="DiskFilling"}'
    return body


def deferred_app(app_factory: Any, url: str, tmp_path: Path, limit: int = 10) -> Any:
    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOKS)
    return app_factory(url, playbooks=path, ingest_defer_alerts=limit)


def post(app: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = app.test_client().post("/webhook/alertmanager", json=body,
                                      headers=webhook_headers())
    return response.status_code, dict(response.json or {})


def rows(app: Any, *columns: Any) -> list[tuple[Any, ...]]:
    with app.extensions["autofix"].database.session() as session:
        return [tuple(r) for r in session.execute(select(*columns))]


def test_a_large_notification_is_acknowledged_then_filed_as_the_webhook_would(
        db_url, app_factory, tmp_path) -> None:
    app = deferred_app(app_factory, db_url, tmp_path)
    services = app.extensions["autofix"]
    # Exported at 0 from the start, so AutofixDeferredFilingFailed's increase() sees the
    # very first failure.
    assert services.metrics.registry.get_sample_value(
        "autofix_deferred_notifications_total", {"outcome": "failed"}) == 0
    status, body = post(app, storm(25, down=2))
    assert status == 202, body
    assert body["status"] == "accepted" and body["alerts"] == 25
    # Stored as received, nothing filed yet: the acknowledgement is the stored row.
    [(state, stored)] = rows(app, Notification.ingest_state, Notification.payload)
    assert state == "pending" and len(stored["alerts"]) == 25
    assert rows(app, func.count(Incident.id)) == [(0,)]

    notification_id = drain_one(services)
    assert notification_id == body["notification_id"]
    assert drain_one(services) is None
    [(state, received_at)] = rows(app, Notification.ingest_state, Notification.received_at)
    assert state == "filed"
    incidents = rows(app, Incident.container, Incident.status, Incident.playbook,
                     Incident.first_seen, Incident.notification_count)
    assert len(incidents) == 25
    # What the webhook does with a small notification: notify-only alerts closed at once,
    # the two TargetDown alerts queued to restart, one group message for the rest.
    assert {(c, s, p) for c, s, p, _, _ in incidents if p == "restart-on-down"} == {
        ("c0", "open", "restart-on-down"), ("c1", "open", "restart-on-down")}
    assert {s for _, s, p, _, _ in incidents if p == "notify-unmatched"} == {"closed"}
    assert {first for *_, first, _ in incidents} == {received_at}
    assert sorted(rows(app, Run.target, Run.status)) == [("c0", "queued"), ("c1", "queued")]
    assert rows(app, AlertGroup.firing) == [(25,)]

    # The same group again, then its resolution: duplicates counted, resolved once.
    assert post(app, storm(25, down=2))[0] == 202
    assert drain_one(services) is not None
    assert {n for *_, n in rows(app, Incident.container, Incident.notification_count)} == {2}
    assert len(rows(app, Run.id)) == 2  # a duplicate queues nothing
    assert post(app, storm(25, "resolved", down=2))[0] == 202
    assert drain_one(services) is not None
    assert {s for (s,) in rows(app, Incident.status)} == {"resolved"}
    # Resolved by this notification, as of its receipt; no playbook acts on `resolved`.
    resolving = max(r for (r,) in rows(app, Notification.received_at))
    assert {r for (r,) in rows(app, Incident.resolved_at)} == {resolving}
    assert len(rows(app, Run.id)) == 2
    assert rows(app, AlertGroup.firing, AlertGroup.resolved) == [(0, 25)]
    registry = services.metrics.registry
    assert registry.get_sample_value("autofix_deferred_notifications_total",
                                     {"outcome": "received"}) == 3
    assert registry.get_sample_value("autofix_deferred_notifications_total",
                                     {"outcome": "filed"}) == 3
    assert registry.get_sample_value("autofix_alert_duplicates_total") == 25
    # At or under the limit, the webhook files before answering, as always.
    status, body = post(app, storm(10, down=2))
    assert status == 200 and body["duplicates"] == 10


def test_a_notification_that_cannot_be_filed_is_failed_with_its_reason_and_kept(
        db_url, app_factory, tmp_path) -> None:
    app = deferred_app(app_factory, db_url, tmp_path)
    services = app.extensions["autofix"]
    with services.database.session() as session:
        # What no webhook would store; a bug or a hand edit must not block the queue.
        session.execute(insert(Notification).values(
            received_at=datetime.now(UTC), group_key="g", receiver="autofix", status="firing",
            alert_count=1, truncated_alerts=0, external_url="", ingest_state="pending",
            payload={"version": "4", "alerts": "not a list"}))
    assert post(app, storm(20))[0] == 202
    first, second = drain_one(services), drain_one(services)
    assert first is not None and second is not None and first < second
    states = dict(rows(app, Notification.id, Notification.ingest_state))
    assert states == {first: "failed", second: "filed"}
    errors = dict(rows(app, Notification.id, Notification.ingest_error))
    assert errors[second] is None and "alerts" in errors[first], errors
    assert rows(app, func.count(Incident.id)) == [(20,)]
    assert services.metrics.registry.get_sample_value(
        "autofix_deferred_notifications_total", {"outcome": "failed"}) == 1
    # A drainer giving up on one that another drainer filed meanwhile changes nothing, and
    # counts nothing: the failed count pages someone.
    filing._give_up(services, second, ValueError("outlived its lease"))
    assert dict(rows(app, Notification.id, Notification.ingest_state))[second] == "filed"
    assert services.metrics.registry.get_sample_value(
        "autofix_deferred_notifications_total", {"outcome": "failed"}) == 1

    # Retention never deletes an acknowledged notification still waiting to be filed.
    assert post(app, storm(15))[0] == 202
    prune(services.database, timedelta(0))
    assert rows(app, Notification.ingest_state) == [("pending",)]


def test_a_filing_that_never_ends_is_retried_after_its_lease_then_failed(
        db_url, app_factory, tmp_path) -> None:
    """A drainer killed mid-filing (out of memory on a huge body, say) leaves its claim:
    another drainer takes the notification after the lease, and after MAX_ATTEMPTS
    attempts it is failed instead of killing workers forever. The one behind it is filed
    meanwhile."""
    app = deferred_app(app_factory, db_url, tmp_path)
    services = app.extensions["autofix"]
    assert post(app, storm(20))[0] == 202
    assert post(app, storm(30))[0] == 202
    first, second = (i for (i,) in sorted(rows(app, Notification.id)))

    def claim(notification_id: int, attempts: int, age_s: float) -> None:
        with services.database.session() as session:
            session.execute(update(Notification).where(Notification.id == notification_id)
                            .values(ingest_attempts=attempts, ingest_claimed_at=datetime.now(
                                UTC) - timedelta(seconds=age_s)))

    claim(first, 1, 5)  # a live drainer holds it: the next one is taken instead
    assert drain_one(services) == second
    assert drain_one(services) is None
    claim(first, 1, LEASE_S + 5)  # that drainer died: tried again, and filed
    assert drain_one(services) == first
    assert rows(app, func.count(Incident.id)) == [(30,)]

    assert post(app, storm(12))[0] == 202
    [third] = [i for (i, s) in rows(app, Notification.id, Notification.ingest_state)
               if s == "pending"]
    claim(third, MAX_ATTEMPTS, LEASE_S + 5)  # every attempt died
    assert drain_one(services) == third
    [(state, error)] = [(s, e) for (i, s, e) in rows(
        app, Notification.id, Notification.ingest_state, Notification.ingest_error)
        if i == third]
    assert state == "failed" and f"after {MAX_ATTEMPTS} attempts" in error


def test_two_drainers_file_every_notification_once(db_url, app_factory, tmp_path) -> None:
    """Two workers (two apps on one database) drain four notifications of the same 30
    alerts at once: every alert counted four times, none filed twice."""
    apps = [deferred_app(app_factory, db_url, tmp_path) for _ in range(2)]
    for _ in range(4):
        assert post(apps[0], storm(30))[0] == 202
    errors: list[BaseException] = []

    def drain(services: Any) -> None:
        try:
            while True:
                with services.database.session() as session:
                    if pending_count(session) == 0:
                        return
                drain_one(services)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(a.extensions["autofix"],)) for a in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert {s for (s,) in rows(apps[0], Notification.ingest_state)} == {"filed"}
    counts = rows(apps[0], Incident.notification_count)
    assert len(counts) == 30 and {n for (n,) in counts} == {4}


def test_an_acknowledged_notification_is_filed_by_the_next_receiver(pg_url, app_factory,
                                                                    tmp_path) -> None:
    """Acknowledged by a receiver that stopped before filing it (here: one that has no
    drainer), then filed by `autofix serve`'s own drainer thread, in a gunicorn worker."""
    app = deferred_app(app_factory, pg_url, tmp_path, limit=5)
    assert post(app, storm(40))[0] == 202
    playbooks = tmp_path / "playbooks.yml"
    receiver = start_receiver(pg_url, workers=2, root=tmp_path / "r", env=receiver_env(
        playbooks, AUTOFIX_INGEST_DEFER_ALERTS="5"))
    try:
        wait_for(lambda: query(pg_url, "select count(*) from incidents")[0][0] == 40, 30,
                 "the pending notification filed")
        # And one it acknowledges itself, over HTTP.
        status, _ = post_http(receiver.url, storm(60))
        assert status == 202
        wait_for(lambda: query(pg_url, "select count(*) from incidents")[0][0] == 60, 30,
                 "its own notification filed")
    finally:
        receiver.stop()
    assert query(pg_url, "select ingest_state, count(*) from notifications "
                         "group by ingest_state") == [("filed", 2)]
    assert query(pg_url, "select max(notification_count) from incidents") == [(2,)]


def post_http(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{url}/webhook/alertmanager", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **webhook_headers()})
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status), json.loads(response.read())
