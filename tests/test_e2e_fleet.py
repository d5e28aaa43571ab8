"""The live loop on a fleet (#32): two Docker hosts, `a` the session's private dockerd (a
unix socket) and `b` a dockerd of its own over tcp:// with TLS client certificates; a
real Prometheus with one docker_sd job per host, docs/examples/prometheus-fleet.yml itself
(addresses and certificate paths substituted, tests/harness/overrides.py), the shipped
rules, the shipped Alertmanager config, and `autofix serve` with AUTOFIX_DOCKER_HOSTS
naming both. target_app runs as `app` on both hosts (host network, its own port each); a
hang on b restarts b's `app` only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import pytest

from receiver.store.migrate import upgrade
from tests.harness.dockerd import Dockerd
from tests.harness.e2e_scenarios import (
    assert_restarted_and_notified,
    incidents_since_fault,
    run_scenario,
)
from tests.harness.fleet_hosts import copy_image, start_tls_host, unix_host
from tests.harness.postgres import Postgres
from tests.harness.stack import Stack, start_stack
from tests.harness.tls_certs import make_docker_certs

pytestmark = pytest.mark.e2e

NAME = "app"  # the same container name on both hosts


@pytest.fixture
def fleet(postgres: Postgres, dockerd: Dockerd, target_app_image: str,
          tmp_path: Path) -> Iterator[Stack]:
    certs = make_docker_certs(tmp_path / "certs")
    host_b = start_tls_host("b", tmp_path / "dockerd-b", certs)
    try:
        copy_image(dockerd, host_b.dockerd, target_app_image)
        with contextlib.suppress(docker.errors.NotFound):  # a crashed earlier run's
            dockerd.client().containers.get(NAME).remove(force=True)
        url = postgres.create_database()
        upgrade(url)
        stack = start_stack(tmp_path / "stack", dockerd, target_app_image, url,
                            hosts=[unix_host("a", dockerd, certs), host_b])
        try:
            yield stack
        finally:
            stack.stop()
    finally:
        host_b.dockerd.remove_all_containers()
        host_b.dockerd.stop()


def test_a_hang_on_host_b_restarts_only_bs_app(fleet: Stack) -> None:
    on_a = fleet.run_target(host="a", name=NAME)
    on_b = fleet.run_target(host="b", name=NAME)
    # One target per host, each labelled with its host, both job="containers".
    scraped = fleet.prometheus.query(f'up{{job="containers", container="{NAME}"}}')
    assert sorted(r["metric"]["host"] for r in scraped) == ["a", "b"]
    started_a = on_a.state()["StartedAt"]

    timeline = run_scenario(fleet, on_b, "TargetDown", "hang")
    assert_restarted_and_notified(fleet, on_b, "TargetDown", timeline)

    [incident] = incidents_since_fault(fleet, on_b, "TargetDown", timeline)
    assert incident.labels["host"] == "b"
    runs = fleet.sql("select target, docker_host, status from runs where incident_id = :i",
                     i=incident.id)
    assert [tuple(run) for run in runs] == [(f"b/{NAME}", "b", "succeeded")]
    assert {a.docker_host for a in fleet.actions(on_b.key)} == {"b"}
    # Host a: never alerted, never touched.
    assert on_a.state()["StartedAt"] == started_a
    assert fleet.actions(on_a.key) == []
    # Only a's `app`: the session's dockerd may hold other tests' exited opted-in
    # containers, which this Prometheus discovers and autofix rightly restarts.
    assert fleet.sql("select count(*) from runs where target = :t", t=f"a/{NAME}")[0][0] == 0
    assert fleet.up(NAME, "a") == 1.0
