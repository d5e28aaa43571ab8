"""The real Alertmanager 0.25 delivers to a real `autofix serve`: one incident per occurrence."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import API_TOKEN, WEBHOOK_TOKEN
from tests.harness.alertmanager import am_alert, start_alertmanager, webhook_config
from tests.harness.db import query as rows
from tests.harness.procs import wait_for
from tests.harness.receiver import start_receiver


@pytest.fixture
def stack(pg_url: str, tmp_path):
    receiver = start_receiver(pg_url, workers=2, root=tmp_path / "receiver", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_DOCKER_HOST": "unix:///nonexistent.sock"})
    managers = []

    def alertmanager(**kwargs: Any):
        token_file = tmp_path / "webhook_token"
        token_file.write_text(WEBHOOK_TOKEN)
        config = webhook_config(f"{receiver.url}/webhook/alertmanager", None,
                                token_file=token_file, **kwargs)
        manager = start_alertmanager(config, root=tmp_path / f"am{len(managers)}")
        managers.append(manager)
        return manager

    yield pg_url, alertmanager
    for manager in managers:
        manager.stop()
    receiver.stop()


def test_first_repeat_growth_and_resolution(stack) -> None:
    url, alertmanager = stack
    am = alertmanager(group_by=["alertname"], repeat_interval="3s", group_interval="1s")
    starts = datetime.now(UTC) - timedelta(seconds=5)
    am.push([am_alert("web-1", starts=starts)])

    # First notification: one incident.
    wait_for(lambda: rows(url, "select count(*) from incidents")[0][0] == 1, 20, "first")
    # The repeat after repeat_interval bumps the count on the same incident.
    wait_for(lambda: rows(url, "select notification_count from incidents")[0][0] >= 2, 30,
             "repeat")
    # The group gains a second alert: a second incident, the first counted again.
    am.push([am_alert("web-1", starts=starts), am_alert("web-2", starts=starts)])
    wait_for(lambda: rows(url, "select count(*) from incidents")[0][0] == 2, 20, "growth")
    # Resolution: Alertmanager sends resolved for web-1; its incident closes once.
    am.push([am_alert("web-1", starts=starts, ends=datetime.now(UTC) - timedelta(seconds=1))])
    wait_for(lambda: rows(url, "select status from incidents where container='web-1'")[0][0]
             == "resolved", 30, "resolution")
    time.sleep(4)  # let further group repeats arrive: they must not create anything
    by_container = {r[0]: r for r in rows(url, "select container, status, notification_count, "
                                               "resolved_at, time_to_resolve_s from incidents")}
    assert set(by_container) == {"web-1", "web-2"}
    assert by_container["web-1"][1] == "resolved" and by_container["web-1"][3] is not None
    assert by_container["web-1"][4] >= 4
    assert by_container["web-2"][1] != "resolved"  # escalated: no dockerd in this test
    counts = rows(url, "select count(*), count(distinct (fingerprint, starts_at)) from incidents")
    assert counts[0][0] == counts[0][1] == 2
    sent = am.metric("alertmanager_notifications_total")
    received = rows(url, "select count(*) from notifications")[0][0]
    print(f"\nalertmanager notifications_total={sent:.0f}, receiver stored={received}")
    assert received >= 4 and am.metric("alertmanager_notifications_failed_total") == 0


def test_truncated_group_is_recorded(stack) -> None:
    url, alertmanager = stack
    am = alertmanager(group_by=["alertname"], max_alerts=1)
    starts = datetime.now(UTC) - timedelta(seconds=5)
    am.push([am_alert(f"c{i}", alertname="HighCPU", starts=starts) for i in range(3)])
    # On a loaded machine group_wait may flush before Alertmanager has taken all three in;
    # the next flush then carries the whole group, truncated.
    wait_for(lambda: rows(url, "select count(*) from notifications where alert_count = 1 "
                               "and truncated_alerts = 2")[0][0] >= 1, 20, "truncated notify")
    assert rows(url, "select max(alert_count) from notifications")[0][0] == 1
    # One incident per alert the truncated notifications carried: one flush or two.
    assert 1 <= rows(url, "select count(*) from incidents")[0][0] <= 2
