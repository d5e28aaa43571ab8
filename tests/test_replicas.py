"""Receiver replicas are safe (issue #18): two `autofix serve` on distinct host names share
PostgreSQL behind an Alertmanager HA pair, each member delivering to its own replica.

One occurrence gives one incident, one run and one restart, whichever replica runs it; and
when the replica holding a run dies whole (SIGKILL of its process group, so no gunicorn
master is left to reconcile), the other one reconciles the run once its heartbeat is older
than the lease. Each test prints one "FIGURES:" line.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_TOKEN, WEBHOOK_TOKEN
from tests.harness.alertmanager import Alertmanager, am_alert, start_alertmanager, webhook_config
from tests.harness.busybox import SLOW_STOP
from tests.harness.containers import run_container, started_at
from tests.harness.db import query
from tests.harness.delay_proxy import DelayProxy
from tests.harness.http_client import post_json
from tests.harness.playbook_yaml import restart_playbook
from tests.harness.procs import require_binary, wait_for
from tests.harness.receiver import Receiver, start_receiver

pytestmark = pytest.mark.slow

HOSTS = ("replica-a", "replica-b")
LEASE_S = 6.0  # AUTOFIX_RUN_LEASE_S (shipped 30 s): an interval, shortened for the test
TERMINAL = ("succeeded", "failed", "skipped", "interrupted")


def uts_hostname(pid: int) -> str:
    """The host name the process `pid` sees (read inside its UTS namespace)."""
    nsenter = require_binary("nsenter")
    return subprocess.run([nsenter, "-t", str(pid), "--uts", "hostname"], check=True,
                          capture_output=True, text=True, timeout=30).stdout.strip()


def start_replicas(pg_url: str, dockerd_url: str, tmp_path: Path,
                   playbooks: str) -> dict[str, Receiver]:
    path = tmp_path / "playbooks.yml"
    path.write_text(playbooks)
    env = {"AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
           "AUTOFIX_DOCKER_HOST": dockerd_url, "AUTOFIX_PLAYBOOKS": str(path),
           "AUTOFIX_RUN_LEASE_S": str(LEASE_S)}
    replicas: dict[str, Receiver] = {}
    try:
        for host in HOSTS:
            replicas[host] = start_receiver(pg_url, workers=2, env=env, root=tmp_path / host,
                                            hostname=host)
    except BaseException:
        for replica in replicas.values():
            replica.stop()
        raise
    # Distinct host names, proven from inside each replica, not just asked for.
    seen = {host: uts_hostname(replica.process.pid) for host, replica in replicas.items()
            if replica.process is not None}
    assert seen == {host: host for host in HOSTS}, seen
    return replicas


@pytest.fixture
def ha_pair(tmp_path) -> Iterator[Any]:
    """`connect(replicas)`: AM-1 delivers to replica A, AM-2 to replica B, as a load
    balancer would spread them. peer_timeout 0 and a 3 s hold on both paths: each member
    sends before it can see the other's notification log, so both replicas get the same
    group at the same moment."""
    made: list[Any] = []

    def connect(replicas: dict[str, Receiver]) -> tuple[Alertmanager, Alertmanager]:
        members: list[Alertmanager] = []
        for index, host in enumerate(HOSTS):
            proxy = DelayProxy(replicas[host].url, delay_s=3.0).start()
            made.append(proxy)
            config = webhook_config(f"{proxy.url}/webhook/alertmanager", WEBHOOK_TOKEN,
                                    group_wait="1s", group_interval="2s")
            peers = [f"127.0.0.1:{members[0].cluster_port}"] if members else []
            member = start_alertmanager(config, root=tmp_path / f"am{index + 1}",
                                        cluster=True, peers=peers, peer_timeout="0s")
            made.append(member)
            members.append(member)
        first, second = members
        wait_for(lambda: first.metric("alertmanager_cluster_members") == 2
                 and second.metric("alertmanager_cluster_members") == 2, 30, "cluster formed")
        return first, second

    yield connect
    for thing in reversed(made):
        thing.stop()


def fire_at_both(members: tuple[Alertmanager, Alertmanager], container: Any) -> datetime:
    """The same alert to both members, as Prometheus sends to an HA pair."""
    # After the container started, or the guard rightly calls it already_recovered.
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    for member in members:
        member.push([am_alert(container.name, starts=starts)])
    return starts


def start_events(container: Any, since: datetime) -> int:
    """How many times dockerd started the container after `since` (its event log; the API
    takes whole seconds, so the nanosecond stamps decide)."""
    events = container.client.api.events(since=since - timedelta(seconds=2),
                                         until=datetime.now(UTC) + timedelta(seconds=1),
                                         filters={"container": container.id, "event": "start"},
                                         decode=True)
    after_ns = int(since.timestamp() * 1e9)
    return sum(1 for event in events if event["timeNano"] > after_ns)


def stop_all(replicas: dict[str, Receiver]) -> None:
    for replica in replicas.values():
        replica.stop()


def test_both_alertmanagers_deliver_to_both_replicas_and_the_container_restarts_once(
        pg_url, private_dockerd, tmp_path, ha_pair) -> None:
    container = run_container(private_dockerd.client())
    before = started_at(container)
    since = datetime.now(UTC)
    replicas = start_replicas(pg_url, private_dockerd.url, tmp_path,
                              restart_playbook(wait_timeout_s=20, running_for_s=0.5))
    try:
        members = ha_pair(replicas)
        fire_at_both(members, container)
        wait_for(lambda: all(m.metric("alertmanager_notifications_total") >= 1
                             for m in members), 60, "both members delivered")
        wait_for(lambda: query(pg_url, "select count(*) from notifications")[0][0] >= 2, 60,
                 "both deliveries stored")
        wait_for(lambda: query(pg_url, "select count(*) from runs where status in "
                                       f"{TERMINAL}")[0][0] >= 1, 60, "the run ended")
        sent = [m.metric("alertmanager_notifications_total") for m in members]
    finally:
        stop_all(replicas)
    incidents = query(pg_url, "select id, notification_count, status from incidents")
    runs = query(pg_url, "select status, worker from runs")
    restarts = query(pg_url, "select outcome from actions where action = 'restart'")
    starts = start_events(container, since)
    print(f"\nFIGURES: replicas={HOSTS} am1_sent={sent[0]:.0f} am2_sent={sent[1]:.0f} "
          f"incidents={incidents} runs={runs} restart_actions={restarts} "
          f"docker_start_events={starts}")
    assert len(incidents) == 1 and incidents[0][1] >= 2, incidents  # both deliveries, one row
    [(status, worker)] = runs
    assert status == "succeeded" and worker.split(":")[0] in HOSTS, runs
    assert restarts == [("succeeded",)]
    assert started_at(container) != before
    assert starts == 1, f"dockerd started the container {starts} times"


def test_the_other_replica_reconciles_a_dead_replicas_run_after_the_lease(
        pg_url, private_dockerd, tmp_path, ha_pair) -> None:
    container = run_container(private_dockerd.client(), command=SLOW_STOP)
    since = datetime.now(UTC)
    # SLOW_STOP ignores SIGTERM: the restart takes its whole 20 s stop timeout.
    replicas = start_replicas(pg_url, private_dockerd.url, tmp_path,
                              restart_playbook(restart_timeout_s=20, wait_timeout_s=20,
                                               running_for_s=0.5))
    try:
        members = ha_pair(replicas)
        fire_at_both(members, container)
        wait_for(lambda: query(pg_url, "select count(*) from runs where status = 'running' "
                                       "and current_step = 0 and admitted_at is not null"
                                       )[0][0] == 1, 60, "restart under way")
        [(run_id, worker)] = query(pg_url, "select id, worker from runs")
        holder = worker.split(":")[0]
        survivor = next(host for host in HOSTS if host != holder)
        replicas[holder].kill()  # master and workers: nothing on that host reconciles
        killed = time.monotonic()
        wait_for(lambda: query(pg_url, "select status from runs where id = :id",
                               id=run_id)[0][0] != "running", LEASE_S + 90, "reconciled")
        reconciled_s = time.monotonic() - killed
        # An Alertmanager retry of a delivery, late, to the survivor: the same occurrence.
        [(late,)] = query(pg_url, "select payload from notifications order by id limit 1")
        assert post_json(f"{replicas[survivor].url}/webhook/alertmanager", late)[0] == 200
        survivor_log = replicas[survivor].log()
    finally:
        stop_all(replicas)
    [(status, error, heartbeat, finished)] = query(
        pg_url, "select status, error, heartbeat_at, finished_at from runs")
    actions = query(pg_url, "select step, action, outcome, reason from actions")
    [(incident_status, next_attempt, count)] = query(
        pg_url, "select status, next_attempt_at, notification_count from incidents")
    starts_seen = start_events(container, since)
    print(f"\nFIGURES: holder={worker} survivor={survivor} lease={LEASE_S:g}s "
          f"reconciled_after_kill={reconciled_s:.1f}s "
          f"heartbeat_to_reconcile={(finished - heartbeat).total_seconds():.1f}s "
          f"actions={actions} docker_start_events={starts_seen}")
    assert status == "interrupted" and worker in error and "not resumed" in error
    # The survivor waited for the lease, and it was the survivor (its log says so).
    assert (finished - heartbeat).total_seconds() >= LEASE_S
    assert "reconciled interrupted run" in survivor_log
    assert actions == [(0, "restart", "interrupted", "worker_stopped")]
    assert incident_status == "escalated" and next_attempt is None  # a human decides
    assert count >= 2  # the late duplicate joined the same incident: no second run
    # The survivor did not restart it again: at most the dead replica's own restart,
    # which dockerd finishes on its own.
    assert starts_seen <= 1
