"""The operator commands (`autofix incidents|runs|approve|deny|pause|resume|maintenance`)
against a real `autofix serve` and a real private dockerd: a run in mode approve is listed by
GET /api/v1/runs?status=awaiting_approval and by `autofix runs --awaiting`, and
`autofix approve` makes it act. Errors are one line on stderr and exit code 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_TOKEN, WEBHOOK_TOKEN
from tests.harness.containers import run_container, started_at
from tests.harness.http_client import post_json
from tests.harness.playbook_yaml import restart_playbook
from tests.harness.procs import LOOPBACK, free_port, wait_for
from tests.harness.receiver import Receiver, start_receiver
from tests.payloads import alert, notification

REPO = Path(__file__).resolve().parents[1]


def autofix(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFIX_")}
    return subprocess.run([sys.executable, "-m", "receiver.ops.cli", *argv], cwd=REPO,
                          env={**clean, **(env or {})}, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(scope="module")
def receiver(private_dockerd: Any, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Receiver]:
    root = tmp_path_factory.mktemp("ops-cli")
    playbooks = root / "playbooks.yml"
    playbooks.write_text(restart_playbook(mode="approve", approval_timeout="10m",
                                          running_for_s=0.3))
    started = start_receiver(f"sqlite:///{root / 'autofix.db'}", root=root / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_DOCKER_HOST": private_dockerd.url, "AUTOFIX_PLAYBOOKS": str(playbooks)})
    try:
        yield started
    finally:
        started.stop()


def test_a_run_awaiting_approval_is_listed_and_approved(receiver: Receiver,
                                                        private_dockerd: Any) -> None:
    client = private_dockerd.client()
    container = run_container(client)
    before = started_at(container)
    try:
        status, _ = post_json(f"{receiver.url}/webhook/alertmanager", notification(
            [alert({"container": container.name}, starts_at=datetime.now(UTC))]))
        assert status == 200
        wait_for(lambda: api_items(receiver, "/api/v1/runs?status=awaiting_approval"),
                 30, "the run waits for approval")
        [waiting] = api_items(receiver, "/api/v1/runs?status=awaiting_approval")
        assert waiting["target"] == container.name

        env = {"AUTOFIX_URL": receiver.url, "AUTOFIX_API_TOKEN": API_TOKEN}
        listed = autofix("runs", "--awaiting", env=env)
        assert listed.returncode == 0, listed.stderr
        [line] = listed.stdout.splitlines()
        assert line.split()[:2] == [str(waiting["id"]), "awaiting_approval"]
        assert container.name in line and "due " in line
        as_json = json.loads(autofix("runs", "--awaiting", "--json", env=env).stdout)
        assert [run["id"] for run in as_json] == [waiting["id"]]
        incidents = autofix("incidents", env=env)
        assert incidents.returncode == 0 and container.name in incidents.stdout

        approved = autofix("approve", str(waiting["id"]), "--comment", "looks right",
                           "--actor", "carol", env=env)
        assert approved.returncode == 0, approved.stderr
        assert approved.stdout.strip().startswith(f"run {waiting['id']} approved: now ")
        wait_for(lambda: started_at(container) != before, 60, "the approved run restarted it")
        assert autofix("runs", "--awaiting", env=env).stdout == ""

        again = autofix("deny", str(waiting["id"]), env=env)
        assert again.returncode == 1 and again.stdout == ""
        assert again.stderr.startswith("autofix: HTTP 409 from ")
        assert len(again.stderr.splitlines()) == 1
    finally:
        container.remove(force=True)


def api_items(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"{receiver.url}{path}",
                                     headers={"Authorization": f"Bearer {API_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        items: list[dict[str, Any]] = json.loads(response.read())["items"]
    return items


def test_pause_and_resume_with_a_token_file(receiver: Receiver, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(API_TOKEN + "\n")
    common = ("--url", receiver.url, "--token-file", str(token_file))
    paused = autofix("pause", "--reason", "maintenance", "--actor", "alice", *common)
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.startswith("paused since ") and "maintenance" in paused.stdout
    assert json.loads(autofix("pause", "--show", "--json", *common).stdout)["paused"] is True
    resumed = autofix("resume", *common)
    assert resumed.returncode == 0 and resumed.stdout.strip() == (
        "automation is running (not paused)")
    assert autofix("pause", *common).stderr.startswith("autofix: autofix pause needs --reason")


def test_budgets_shows_the_host_storm_guard(receiver: Receiver) -> None:
    env = {"AUTOFIX_URL": receiver.url, "AUTOFIX_API_TOKEN": API_TOKEN}
    shown = autofix("budgets", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["host_storm"]["targets"] == 5 and state["host_storms"] == []
    text = autofix("budgets", env=env)
    assert text.returncode == 0 and "STORM" not in text.stdout


def test_errors_are_one_line_and_exit_1(receiver: Receiver) -> None:
    refused = autofix("runs", "--url", receiver.url, "--token", "wrong-token-0123456789")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip() == (f"autofix: HTTP 401 from {receiver.url}: the token "
                                      "was refused: check --token, --token-file or "
                                      "AUTOFIX_API_TOKEN")
    missing = autofix("incidents", "--url", receiver.url)
    assert missing.returncode == 1 and "no token" in missing.stderr
    dead = f"http://{LOOPBACK}:{free_port()}"
    down = autofix("runs", "--awaiting", "--url", dead, "--token", API_TOKEN)
    assert down.returncode == 1
    assert down.stderr.strip() == f"autofix: cannot reach {dead}: Connection refused"
    bad = autofix("approve", "abc", "--url", receiver.url, "--token", API_TOKEN)
    assert bad.returncode == 1 and "HTTP 400" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1


def test_maintenance_start_list_and_end(receiver: Receiver) -> None:
    common = ("--url", receiver.url, "--token", API_TOKEN)
    started = autofix("maintenance", "start", "--match", 'container=~"shop-.*"',
                      "--match", 'severity="critical"', "--ends-at", "2999-01-01T00:00:00Z",
                      "--reason", "db upgrade", "--actor", "alice", "--json", *common)
    assert started.returncode == 1 and "at most 30 days" in started.stderr
    ends = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    started = autofix("maintenance", "start", "--match", 'container=~"shop-.*"',
                      "--ends-at", ends.isoformat(), "--reason", "db upgrade",
                      "--actor", "alice", "--json", *common)
    assert started.returncode == 0, started.stderr
    window = json.loads(started.stdout)
    assert window["state"] == "active" and window["matchers"] == ['container=~"shop-.*"']
    listed = autofix("maintenance", "list", *common)
    assert listed.returncode == 0 and listed.stdout.split()[:2] == [str(window["id"]),
                                                                     "active"]
    assert 'container=~"shop-.*"' in listed.stdout and "db upgrade" in listed.stdout
    ended = autofix("maintenance", "end", str(window["id"]), "--reason", "done", *common)
    assert ended.returncode == 0 and " ended " in ended.stdout, ended.stderr
    assert autofix("maintenance", "list", *common).stderr.startswith("no maintenance window")
    again = autofix("maintenance", "end", str(window["id"]), *common)
    assert again.returncode == 1 and "HTTP 409" in again.stderr
    assert autofix("maintenance", "start", *common).stderr.startswith(
        "autofix: autofix maintenance start needs --match")


def test_budget_lines_name_each_budget_host_and_storm() -> None:
    from receiver.ops.ops_cli import _budget_lines

    state = {
        "budgets": [{"playbook": "restart", "scope": "fleet", "key": "fleet", "limit": 2,
                     "per_s": 600.0, "used": 2, "frees_at": "2026-12-06T03:10:00+00:00"}],
        "host_storm": {"enabled": True, "targets": 5, "window_s": 60.0, "hosts": [
            {"host": "docker:AB", "targets": 5, "frees_at": "2026-12-06T03:01:00+00:00"}]},
        "host_storms": [{"id": 1, "host": "docker:AB", "started_at": "s", "until": "u",
                         "acted": ["a"], "skipped": ["f", "g"], "incident_id": 9}]}
    assert _budget_lines(state) == [
        "budget  restart  fleet fleet  2/2 per 600s  frees at 2026-12-06T03:10:00+00:00",
        "host    docker:AB  5/5 targets per 60s  frees at 2026-12-06T03:01:00+00:00",
        "STORM   docker:AB  since s until u  incident 9  left as they are: f, g"]
