"""Logs: JSON lines that name the incident, and never a token, through a whole scenario."""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from receiver.telemetry.logs import JsonFormatter
from tests.harness.containers import run_container, started_at
from tests.harness.db import query
from tests.harness.http_client import post_json as _post_json
from tests.harness.playbook_yaml import restart_playbook
from tests.harness.procs import wait_for
from tests.harness.receiver import start_receiver
from tests.harness.slack_stub import POST_MESSAGE, Reply, start_slack_stub
from tests.payloads import alert, notification

WEBHOOK_TOKEN = "whk-logs-7f3a9c1e5b"
API_TOKEN = "api-logs-2d8e4f6a0c"
SLACK_TOKEN = "xoxb-logs-5555-6666-secretbot"
SLACK_HOOK = "/services/TLOGS/BLOGS/hooksecretLogs42"
OUT_HOOK = "/out/hooksecret-logs-99"
SECRETS = [WEBHOOK_TOKEN, API_TOKEN, SLACK_TOKEN, SLACK_HOOK, OUT_HOOK, "hooksecret",
           "secretbot"]

PLAYBOOK = restart_playbook(extra_steps=('notify: {message: "restarted {{ labels.container }}"}',))


def test_formatter_redacts_secrets_anywhere_in_a_line() -> None:
    formatter = JsonFormatter([SLACK_TOKEN])
    record = logging.LogRecord("autofix.x", logging.INFO, __file__, 1, "sending with %s",
                               (SLACK_TOKEN,), None)
    record.headers = {"Authorization": f"Bearer {SLACK_TOKEN}"}
    line = formatter.format(record)
    assert SLACK_TOKEN not in line and json.loads(line)["event"] == "sending with [redacted]"


def post_json(url: str, body: Any, token: str = WEBHOOK_TOKEN) -> tuple[int, Any]:
    return _post_json(url, body, token=token)


def get(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_full_scenario_never_logs_a_token_and_names_the_incident(
        pg_url, private_dockerd, tmp_path: Path) -> None:
    stub = start_slack_stub()
    # Slack rate-limits once and the webhook fails once: errors get logged, then succeed.
    stub.script(POST_MESSAGE, Reply(429, {"ok": False, "error": "ratelimited"},
                                    {"Retry-After": "1"}))
    stub.script(OUT_HOOK, Reply(500))
    playbooks = tmp_path / "playbooks.yml"
    playbooks.write_text(PLAYBOOK)
    receiver = start_receiver(pg_url, workers=2, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_SLACK_BOT_TOKEN": SLACK_TOKEN, "AUTOFIX_SLACK_CHANNEL": "#ops",
        "AUTOFIX_SLACK_API_URL": stub.api_url,
        "AUTOFIX_SLACK_WEBHOOK_URL": f"{stub.url}{SLACK_HOOK}",
        "AUTOFIX_OUTBOUND_WEBHOOK_URL": f"{stub.url}{OUT_HOOK}",
        "AUTOFIX_DOCKER_HOST": private_dockerd.url, "AUTOFIX_PLAYBOOKS": str(playbooks),
        "AUTOFIX_LOG_LEVEL": "DEBUG", "AUTOFIX_NOTIFY_BACKOFF_S": "0.2",
        "AUTOFIX_NOTIFY_POLL_S": "0.2"})
    webhook = f"{receiver.url}/webhook/alertmanager"
    container = run_container(private_dockerd.client())
    before = started_at(container)
    starts = datetime.now(UTC)
    try:
        assert post_json(webhook, {"bad": "token"}, token="wrong-" + WEBHOOK_TOKEN[::-1])[0] \
            == 401
        assert post_json(webhook, notification([alert({"container": container.name},
                                                      starts_at=starts)]))[0] == 200
        wait_for(lambda: query(pg_url, "select status from runs") == [("succeeded",)], 30,
                 "the run")
        assert post_json(webhook, notification([alert(
            {"container": container.name}, status="resolved", starts_at=starts,
            ends_at=starts + timedelta(minutes=2))]))[0] == 200
        assert get(f"{receiver.url}/api/v1/incidents", API_TOKEN) == 200
        assert get(f"{receiver.url}/api/v1/incidents", "nope") == 401
        # started, the evidence, 3 results, a note, resolved: 7 events on each of 3 channels.
        wait_for(lambda: query(pg_url, "select status, count(*) from notification_outbox "
                                       "group by status") == [("sent", 21)], 30, "all sent")
    finally:
        receiver.stop()
        stub.stop()
    assert started_at(container) != before
    # The stub saw the secrets (they were really used), the log never does.
    assert {r.headers.get("Authorization") for r in stub.for_path(POST_MESSAGE)} == {
        f"Bearer {SLACK_TOKEN}"}
    log = receiver.log()
    assert "notification failed; will retry" in log and "run finished" in log
    for secret in SECRETS:
        assert secret not in log, secret
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    about_incidents = [e for e in entries if e.get("logger") == "autofix.notify"]
    assert len(about_incidents) >= 20
    for entry in about_incidents:
        assert entry["incident_id"] and entry["fingerprint"], entry
        assert entry["target"] == container.name, entry
    runs = [e for e in entries if e.get("event") == "run finished"]
    assert [(e["incident_id"] > 0, e["target"]) for e in runs] == [(True, container.name)]
