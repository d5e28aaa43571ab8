"""Everything the receiver stamps reads the injected `services.clock`, so tests move time
on instead of sleeping: the webhook's receipt, the outbox rows and the breakers view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from receiver.store.models import Incident, Notification, Outbox
from tests.conftest import api_headers, webhook_headers
from tests.harness.clock import Clock
from tests.payloads import alert, notification

T = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)  # far from the wall clock


def _aware(moment: datetime | None) -> datetime | None:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def test_the_webhook_and_the_outbox_stamp_with_the_injected_clock(sqlite_url: str,
                                                                   app_factory: Any) -> None:
    app = app_factory(sqlite_url, outbound_webhook_url="http://127.0.0.1:9/x")
    app.extensions["autofix"].clock = Clock(T)
    starts = T - timedelta(minutes=2)
    for status in ("firing", "resolved"):  # the resolve is what notifies here
        body = notification([alert({"container": "web"}, status=status, starts_at=starts,
                                   ends_at=T - timedelta(minutes=1) if status == "resolved"
                                   else None)])
        response = app.test_client().post("/webhook/alertmanager", json=body,
                                          headers=webhook_headers())
        assert response.status_code == 200, response.json
    with app.extensions["autofix"].database.session() as session:
        received = session.scalars(select(Notification.received_at)).all()
        [seen] = session.scalars(select(Incident.last_seen)).all()
        outbox = [(row.created_at, row.next_attempt_at) for row in session.scalars(select(Outbox))]
    assert [_aware(r) for r in received] == [T, T] and _aware(seen) == T
    assert outbox and all(_aware(a) == _aware(b) == T for a, b in outbox)


def test_the_breakers_view_judges_open_periods_on_the_injected_clock(sqlite_url: str,
                                                                      app_factory: Any) -> None:
    from receiver.store.models import Breaker

    app = app_factory(sqlite_url)
    clock = app.extensions["autofix"].clock = Clock(T)
    with app.extensions["autofix"].database.session() as session:
        session.add(Breaker(target="web", state="open", opened_at=T,
                            open_until=T + timedelta(minutes=1), reopen_count=1))

    def state() -> str:
        response = app.test_client().get("/api/v1/breakers", headers=api_headers())
        [item] = response.json["items"]
        return str(item["state"])

    assert state() == "open"
    clock.advance(61)
    assert state() != "open"
