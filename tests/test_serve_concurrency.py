"""`autofix serve --workers 4` on PostgreSQL: duplicates, one run per target, SIGKILL, outage."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from tests.conftest import API_TOKEN, WEBHOOK_TOKEN
from tests.harness.busybox import SLOW_STOP
from tests.harness.containers import run_container, started_at
from tests.harness.db import query
from tests.harness.http_client import post_json
from tests.harness.playbook_yaml import write_playbooks
from tests.harness.procs import wait_for
from tests.harness.receiver import start_receiver
from tests.payloads import alert, notification


def env(private_dockerd, playbooks) -> dict[str, str]:
    return {"AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
            "AUTOFIX_DOCKER_HOST": private_dockerd.url, "AUTOFIX_PLAYBOOKS": str(playbooks)}


def test_fifty_identical_posts_make_one_incident(pg_url, private_dockerd, tmp_path) -> None:
    receiver = start_receiver(pg_url, workers=4, root=tmp_path / "r",
                              env=env(private_dockerd, write_playbooks(tmp_path)))
    try:
        body = notification([alert({"container": "nonexistent-web"})])
        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(lambda _: post_json(
                f"{receiver.url}/webhook/alertmanager", body), range(50)))
    finally:
        receiver.stop()
    assert [status for status, _ in results] == [200] * 50
    assert sum(r["new"] for _, r in results) == 1
    assert query(pg_url, "select count(*), max(notification_count) from incidents") == [(1, 50)]
    assert query(pg_url, "select count(*) from runs")[0][0] == 1
    assert query(pg_url, "select count(*) from notifications")[0][0] == 50


def test_twenty_alerts_for_one_container_run_one_at_a_time(
        pg_url, private_dockerd, tmp_path) -> None:
    client = private_dockerd.client()
    container = run_container(client)
    playbooks = write_playbooks(tmp_path, cooldown="10m")
    receiver = start_receiver(pg_url, workers=4, root=tmp_path / "r",
                              env=env(private_dockerd, playbooks))
    webhook = f"{receiver.url}/webhook/alertmanager"

    def wave(tag: str) -> None:
        now = datetime.now(UTC)
        bodies = [notification([alert({"container": container.name, "instance": f"{tag}{i}"},
                                      starts_at=now)]) for i in range(20)]
        with ThreadPoolExecutor(20) as pool:
            statuses = [s for s, _ in pool.map(lambda b: post_json(webhook, b), bodies)]
        assert statuses == [200] * 20
        wait_for(lambda: query(pg_url, "select count(*) from runs where status in "
                                       "('queued', 'running')")[0][0] == 0, 60, "runs done")

    try:
        wave("a")  # 20 alerts at once: one restart; the rest see it already happened
        time.sleep(0.1)
        wave("b")  # 20 more, begun after that restart: the cooldown stops every one
    finally:
        receiver.stop()
    restarts = query(pg_url, "select started_at, finished_at from actions "
                             "where action = 'restart' order by started_at")
    outcomes = query(pg_url, "select status, count(*) from runs group by status")
    assert len(restarts) == 1, outcomes
    assert dict(outcomes) == {"succeeded": 1, "skipped": 39}
    reasons = dict(query(pg_url, "select reason, count(*) from actions where outcome='skipped' "
                                 "group by reason"))
    assert reasons == {"already_recovered": 19, "cooldown": 20}
    # No two runs for the container overlapped in time.
    spans = query(pg_url, "select started_at, finished_at from runs order by started_at")
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start


def test_sigkill_mid_restart_leaves_no_run_running(pg_url, private_dockerd, tmp_path) -> None:
    client = private_dockerd.client()
    container = run_container(client, command=SLOW_STOP)  # ignores SIGTERM: restart takes 5 s
    before = started_at(container)
    playbooks = write_playbooks(tmp_path)
    receiver = start_receiver(pg_url, workers=2, root=tmp_path / "r",
                              env=env(private_dockerd, playbooks))
    body = notification([alert({"container": container.name}, starts_at=datetime.now(UTC))])
    assert post_json(f"{receiver.url}/webhook/alertmanager", body)[0] == 200
    # Admitted and at step 0: the evidence capture before admission is over, and
    # current_step is written just before the step's Docker call.
    wait_for(lambda: query(pg_url, "select count(*) from runs where status='running' and "
                                   "admitted_at is not null and current_step = 0")[0][0]
             == 1, 20, "restart started")
    time.sleep(1.0)  # inside docker restart's stop timeout
    receiver.kill()
    assert query(pg_url, "select status from runs") == [("running",)]
    receiver = start_receiver(pg_url, workers=2, root=tmp_path / "r2",
                              env=env(private_dockerd, playbooks))
    try:
        [(status, error)] = query(pg_url, "select status, error from runs")
        assert status == "interrupted" and "not resumed" in error
        assert query(pg_url, "select status from incidents") == [("escalated",)]
        # The breaker still counts the interrupted run's admission.
        assert query(pg_url, "select state, last_admitted_at is not null from breakers") == [
            ("closed", True)]
    finally:
        receiver.stop()
    wait_for(lambda: started_at(container) != before, 15, "docker finished the restart")


def test_database_outage_answers_503_fast_then_recovers(tmp_path) -> None:
    from receiver.store.migrate import upgrade
    from tests.harness.postgres import start_postgres

    server = start_postgres()
    url = server.create_database()
    upgrade(url)
    receiver = start_receiver(url, workers=2, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_DOCKER_HOST": "unix:///nonexistent.sock"})
    webhook = f"{receiver.url}/webhook/alertmanager"
    try:
        first = notification([alert({"container": "a"})])
        assert post_json(webhook, first)[0] == 200
        server.stop(mode="immediate")
        during = notification([alert({"container": "b"}, starts_at=datetime.now(UTC))])
        started = time.monotonic()
        status, body = post_json(webhook, during)
        elapsed = time.monotonic() - started
        print(f"\nwebhook during outage: {status} in {elapsed:.2f}s")
        assert status == 503 and body["error"] == "database_unavailable"
        assert elapsed < 2.0
        server.start()
        wait_for(lambda: post_json(webhook, during)[0] == 200, 30, "recovery")
        assert post_json(webhook, during)[0] == 200  # a retry after success: still one
        counts = query(url, "select container, count(*), sum(notification_count) "
                            "from incidents group by container order by container")
        assert [(c, n) for c, n, _ in counts] == [("a", 1), ("b", 1)]
    finally:
        receiver.stop()
        server.stop()
