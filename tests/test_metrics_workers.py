"""`autofix serve --workers 4` on PostgreSQL: /metrics adds up across every worker."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.conftest import API_TOKEN, WEBHOOK_TOKEN
from tests.harness.containers import run_container, started_at
from tests.harness.db import query
from tests.harness.http_client import post_json
from tests.harness.metrics import scrape, value
from tests.harness.playbook_yaml import restart_playbook
from tests.harness.procs import wait_for
from tests.harness.receiver import start_receiver
from tests.harness.slack_stub import start_slack_stub
from tests.payloads import alert, notification

PLAYBOOK = restart_playbook("restart-once", max_actions=1, open_for="10m")
HOOK = "/hooks/metrics-test-0123456789"


def own_group(i: int, one_alert: dict[str, Any]) -> dict[str, Any]:
    return {**notification([one_alert]), "groupLabels": {"instance": f"i{i}"},
            "groupKey": f'{{}}:{{instance="i{i}"}}'}


def last_group_states(stub: Any) -> dict[str, str]:
    """instance -> "firing" or "resolved", from the last group event sent for it."""
    states = {}
    for recorded in stub.for_path(HOOK):
        body = recorded.body
        if isinstance(body, dict) and body.get("event") == "group":
            group = body["group"]
            states[group["labels"]["instance"]] = "firing" if group["firing"] else "resolved"
    return states


def test_counters_and_gauges_add_up_across_four_workers(
        pg_url, private_dockerd, tmp_path: Path) -> None:
    stub = start_slack_stub()
    playbooks = tmp_path / "playbooks.yml"
    playbooks.write_text(PLAYBOOK)
    receiver = start_receiver(pg_url, workers=4, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_DOCKER_HOST": private_dockerd.url, "AUTOFIX_PLAYBOOKS": str(playbooks),
        "AUTOFIX_OUTBOUND_WEBHOOK_URL": f"{stub.url}{HOOK}", "AUTOFIX_NOTIFY_POLL_S": "0.2"})
    webhook = f"{receiver.url}/webhook/alertmanager"
    try:
        # 100 notifications over plain concurrent HTTP: 60 alerts fire, then 40 of them resolve.
        starts = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
        # Each alert is its own Alertmanager group, so each group's message tells its state.
        firing = [own_group(i, alert({"alertname": "Noise", "instance": f"i{i}"},
                                     starts_at=starts)) for i in range(60)]
        resolved = [own_group(i, alert({"alertname": "Noise", "instance": f"i{i}"},
                                       status="resolved", starts_at=starts,
                                       ends_at=starts.replace(minute=3))) for i in range(40)]
        for wave in (firing, resolved):
            with ThreadPoolExecutor(50) as pool:
                statuses = [s for s, _ in pool.map(lambda b: post_json(webhook, b), wave)]
            assert statuses == [200] * len(wave)
        pids = {re.sub(r"\D", "", p.name) for p in (tmp_path / "r" / "metrics").glob(
            "counter_*.db")}
        assert len(pids) >= 2, pids  # the posts really were spread over workers

        # Group messages are coalesced while one waits, so a group that fired and resolved
        # quickly may be told once: 60 to 100 sends, and each group's last one is its state.
        wait_for(lambda: last_group_states(stub) == {
            f"i{i}": ("resolved" if i < 40 else "firing") for i in range(60)}, 60,
            "every group's message tells its final state")
        wait_for(lambda: query(pg_url, "select count(*) from notification_outbox "
                                       "where status = 'pending'")[0][0] == 0, 30, "outbox sent")
        noise_sends = len(stub.for_path(HOOK))
        assert 60 <= noise_sends <= 100, noise_sends
        assert value(scrape(receiver.url), "autofix_notification_sends_total",
                     channel="webhook", outcome="sent") == noise_sends
        wait_for(lambda: value(scrape(receiver.url), "autofix_open_incidents") == 20, 20,
                 "heartbeat publishes open incidents")
        samples = scrape(receiver.url)
        assert value(samples, "autofix_notifications_received_total", status="firing") == 60
        assert value(samples, "autofix_notifications_received_total", status="resolved") == 40
        assert value(samples, "autofix_alerts_received_total", status="firing") == 60
        assert value(samples, "autofix_alerts_received_total", status="resolved") == 40
        assert value(samples, "autofix_alert_duplicates_total") == 0
        assert value(samples, "autofix_webhook_request_duration_seconds_count",
                     code="200") == 100
        assert value(samples, "autofix_notification_sends_total", channel="webhook",
                     outcome="retried") is None

        # A breaker with max_actions=1: one restart, then the next occurrence opens it.
        client = private_dockerd.client()
        container = run_container(client)
        before = started_at(container)
        first = notification([alert({"container": container.name},
                                    starts_at=datetime.now(UTC))])
        assert post_json(webhook, first)[0] == 200
        wait_for(lambda: query(pg_url, "select count(*) from runs where status='succeeded'")
                 [0][0] == 1, 30, "the restart")
        assert started_at(container) != before
        wait_for(lambda: value(scrape(receiver.url), "autofix_breaker_state",
                               target=container.name) == 0, 20, "breaker closed")
        second = notification([alert({"container": container.name},
                                     starts_at=datetime.now(UTC))])
        assert post_json(webhook, second)[0] == 200
        wait_for(lambda: query(pg_url, "select count(*) from runs where status='skipped'")
                 [0][0] == 1, 30, "the breaker stops the second run")
        wait_for(lambda: value(scrape(receiver.url), "autofix_breaker_state",
                               target=container.name) == 2, 20, "breaker open")
        # 60 noise alerts (40 resolved) + the remediated one + the escalated one.
        wait_for(lambda: value(scrape(receiver.url), "autofix_open_incidents") == 22, 20,
                 "open incidents")
        # resolutions, then started + evidence + 2 results for the first, breaker_opened +
        # escalated + the evidence seen before the breaker stopped it.
        wait_for(lambda: value(scrape(receiver.url), "autofix_notification_sends_total",
                               channel="webhook", outcome="sent") == noise_sends + 7, 30,
                 "7 more sends")
        samples = scrape(receiver.url)
        assert value(samples, "autofix_actions_total", playbook="restart-once",
                     action="restart", outcome="succeeded") == 1
        assert value(samples, "autofix_actions_total", playbook="restart-once",
                     action="guard", outcome="skipped:breaker_open") == 1
        assert value(samples, "autofix_alerts_received_total", status="firing") == 62
        kinds = [json.loads(json.dumps(r.body))["event"]
                 for r in stub.for_path(HOOK)[noise_sends:]]
        assert sorted(kinds) == sorted(["playbook_started", "evidence", "action_result",
                                        "action_result", "breaker_opened", "escalated",
                                        "evidence"])
    finally:
        receiver.stop()
        stub.stop()
    assert query(pg_url, "select status, count(*) from notification_outbox group by status") \
        == [("sent", noise_sends + 7)]
