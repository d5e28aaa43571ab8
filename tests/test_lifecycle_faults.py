"""Runs are never silently stuck (issue #13), with the real components: a PostgreSQL blip
during a 20 s restart on a real dockerd, SIGKILL of one gunicorn worker, and a recorded
Alertmanager sequence (fire, repeat, resolve within a second) replayed 50 times against
four workers.

Each test prints one "FIGURES:" line.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.runtime.runner import Runner
from receiver.store.migrate import upgrade
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, webhook_headers
from tests.harness.busybox import SLOW_STOP
from tests.harness.containers import run_container, started_at
from tests.harness.db import query
from tests.harness.http_client import post_json
from tests.harness.playbook_yaml import restart_playbook
from tests.harness.postgres import start_postgres
from tests.harness.procs import wait_for
from tests.harness.receiver import start_receiver
from tests.payloads import alert, notification

pytestmark = pytest.mark.slow

TERMINAL = ("succeeded", "failed", "skipped", "interrupted")


def _slow_restart_playbooks(tmp_path: Path, restart_timeout_s: float) -> Path:
    path = tmp_path / f"playbooks-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(restart_playbook(restart_timeout_s=restart_timeout_s, wait_timeout_s=20,
                                     running_for_s=0.5))
    return path


def test_database_blip_during_a_restart_records_the_outcome_once(
        app_factory, private_dockerd, tmp_path, caplog) -> None:
    """PostgreSQL gone for 25 s during a 20 s restart: the restart's outcome is written when
    the database is back (once), the run ends, and the outage is logged."""
    server = start_postgres()
    url = server.create_database()
    upgrade(url)
    client = private_dockerd.client()
    container = run_container(client, command=SLOW_STOP)  # ignores SIGTERM: 20 s restart
    before = started_at(container)
    app = app_factory(url, docker_host=private_dockerd.url,
                      playbooks=_slow_restart_playbooks(tmp_path, 20))
    runner = Runner(app.extensions["autofix"])
    runner.start()
    caplog.set_level(logging.WARNING)
    try:
        body = notification([alert({"container": container.name},
                                   starts_at=datetime.now(UTC))])
        response = app.test_client().post("/webhook/alertmanager", json=body,
                                          headers=webhook_headers())
        assert response.status_code == 200
        wait_for(lambda: query(url, "select count(*) from runs where status='running' and "
                                    "admitted_at is not null")[0][0] == 1, 20, "admitted")
        time.sleep(1.0)  # docker restart is under way (it takes 20 s)
        server.stop(mode="immediate")
        outage_started = time.monotonic()
        time.sleep(25)
        server.start()
        wait_for(lambda: query(url, "select status from runs")[0][0] in TERMINAL, 60,
                 "run terminal")
        settled_s = time.monotonic() - outage_started
        [(status, error)] = query(url, "select status, error from runs")
        steps = query(url, "select step, action, outcome from actions order by step")
    finally:
        runner.stop(10)
        server.stop()
    messages = [r.getMessage() for r in caplog.records]
    print(f"\nFIGURES: outage=25s restart=20s settled_after={settled_s:.1f}s "
          f"run={status} actions={steps}")
    assert status == "succeeded", error
    assert steps == [(0, "restart", "succeeded"), (1, "wait_healthy", "succeeded")]
    assert settled_s < 60
    assert started_at(container) != before
    assert "database unavailable; retrying the write" in messages
    assert "database back; write done" in messages


def test_sigkill_of_one_worker_ends_its_run_at_once(pg_url, private_dockerd, tmp_path) -> None:
    """The master sees the child die and reconciles its run then, not after the lease; the
    step under way gets an `interrupted` Action row."""
    client = private_dockerd.client()
    container = run_container(client, command=SLOW_STOP)
    receiver = start_receiver(pg_url, workers=2, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_DOCKER_HOST": private_dockerd.url,
        "AUTOFIX_RUN_LEASE_S": "300",  # so that only the master's reaction can explain it
        "AUTOFIX_PLAYBOOKS": str(_slow_restart_playbooks(tmp_path, 20))})
    try:
        body = notification([alert({"container": container.name},
                                   starts_at=datetime.now(UTC))])
        assert post_json(f"{receiver.url}/webhook/alertmanager", body)[0] == 200
        wait_for(lambda: query(pg_url, "select count(*) from runs where status='running' "
                                       "and current_step = 0")[0][0] == 1, 20, "restarting")
        [(worker,)] = query(pg_url, "select worker from runs")
        pid = int(worker.rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: query(pg_url, "select status from runs")[0][0] == "interrupted", 60,
                 "run reconciled")
        reconciled_s = time.monotonic() - killed
        [(error,)] = query(pg_url, "select error from runs")
        steps = query(pg_url, "select step, action, outcome, reason from actions")
        incident = query(pg_url, "select status from incidents")
        # The master replaced the worker; the service still answers.
        assert post_json(f"{receiver.url}/webhook/alertmanager", notification(
            [alert({"container": "other"})]))[0] == 200
    finally:
        receiver.stop()
    print(f"\nFIGURES: sigkill worker pid={pid} reconciled_after={reconciled_s:.2f}s "
          f"lease=300s actions={steps}")
    assert reconciled_s < 60
    assert worker in error and "not resumed" in error
    assert steps == [(0, "restart", "interrupted", "worker_stopped")]
    assert incident == [("escalated",)]


REPLAYS = 50


def test_fifty_fire_repeat_resolve_replays_leave_nothing_open(
        pg_url, private_dockerd, tmp_path) -> None:
    """A recorded Alertmanager sequence, fast: a group fires, repeats and resolves within a
    second, 50 times at once against 4 workers on PostgreSQL. Each targets its own real
    container, so runs are admitted, restart and mark the incident while resolves land."""
    client = private_dockerd.client()
    with ThreadPoolExecutor(8) as pool:
        containers = list(pool.map(lambda _: run_container(client), range(REPLAYS)))
    playbooks = tmp_path / "playbooks.yml"
    playbooks.write_text(restart_playbook(wait_timeout_s=2, running_for_s=0.3))
    receiver = start_receiver(pg_url, workers=4, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_DOCKER_HOST": private_dockerd.url, "AUTOFIX_PLAYBOOKS": str(playbooks),
        # 50 containers of one host acted on within a second is a host storm, which the
        # guard rightly stops (tests/test_blast_radius_docker.py); here it would hide the
        # lifecycle races this test is about.
        "AUTOFIX_HOST_STORM_TARGETS": "0"})
    webhook = f"{receiver.url}/webhook/alertmanager"

    def replay(index: int) -> list[int]:
        starts = datetime.now(UTC)
        labels = {"container": containers[index].name}
        firing = notification([alert(labels, starts_at=starts)])
        resolved = notification([alert(labels, status="resolved", starts_at=starts,
                                        ends_at=datetime.now(UTC))])
        codes = [post_json(webhook, firing)[0], post_json(webhook, firing)[0]]
        time.sleep(0.15 * index)  # resolves land across the 4-at-a-time runs' lifetimes
        codes.append(post_json(webhook, resolved)[0])
        return codes

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(REPLAYS) as pool:
            codes = [c for result in pool.map(replay, range(REPLAYS)) for c in result]
        elapsed = time.monotonic() - started
        wait_for(lambda: query(pg_url, "select count(*) from runs where status not in "
                                       "('succeeded','failed','skipped','interrupted')")[0][0]
                 == 0, 120, "every run terminal")
        broken = query(pg_url, "select id, status from incidents where resolved_at is not null "
                               "and status <> 'resolved'")
        statuses = dict(query(pg_url, "select status, count(*) from incidents group by status"))
        runs = dict(query(pg_url, "select status, count(*) from runs group by status"))
        restarts = query(pg_url, "select count(*) from actions where action = 'restart'")[0][0]
    finally:
        receiver.stop()
    print(f"\nFIGURES: replays={REPLAYS} posts={len(codes)} in {elapsed:.2f}s "
          f"restarts={restarts} incidents={statuses} runs={runs} "
          f"resolved_but_not_terminal={len(broken)}")
    assert codes == [200] * (3 * REPLAYS)
    assert restarts > 0, "no run got as far as acting: the race was not exercised"
    assert statuses == {"resolved": REPLAYS}, statuses
    assert broken == []
