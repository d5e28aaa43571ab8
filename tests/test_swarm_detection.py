"""Swarm detection, live: the shipped prometheus.yml and alert rules (addresses and
intervals overridden, tests/harness/overrides.py) against a real single-node Swarm.

Prometheus discovers an opted-in task through the `swarm-tasks` job with the labels the
Docker API gives it, a hung task fires SwarmTaskDown (and not TargetDown), and neither an
unlabelled service nor a plain container turns up in that job. Both docker_sd jobs ask the
Swarm's daemon here, so the split between them is tested on the same containers.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker.types import Healthcheck

from tests.harness import overrides
from tests.harness.busybox import FAST_STOP, ensure_busybox_image
from tests.harness.images import ensure_target_app_image
from tests.harness.procs import LOOPBACK, free_port, wait_for
from tests.harness.prometheus import Prometheus, start_prometheus
from tests.harness.stack import TargetContainer
from tests.harness.swarm import Swarm

pytestmark = pytest.mark.slow

TIMEOUT_S = 120.0  # two slow shared cores: discovery, a task start or an alert may lag


@pytest.fixture
def prometheus(tmp_path: Path, swarm: Swarm) -> Iterator[Prometheus]:
    rules = tmp_path / "alert_rules.yml"
    rules.write_text(yaml.safe_dump(overrides.rules(), sort_keys=False))
    # Nothing listens on these: the self-monitoring jobs are simply down.
    unused = [f"{LOOPBACK}:{free_port()}" for _ in range(3)]
    config = overrides.prometheus_config(swarm.url, *unused, swarm_url=swarm.url)
    prom = start_prometheus(tmp_path / "prometheus", config, [rules])
    try:
        yield prom
    finally:
        prom.stop()


def _run_service(swarm: Swarm) -> tuple[str, int]:
    """A target_app service that opts in to scraping on a free port (container labels)."""
    name, port = f"web-{uuid.uuid4().hex[:6]}", free_port()
    swarm.client.services.create(
        ensure_target_app_image(swarm.dockerd), name=name, networks=["host"],
        container_labels={"autofix.scrape": "true", "autofix.scrape.port": str(port)},
        env=[f"TARGET_APP_BIND={LOOPBACK}:{port}"],
        # No health check: Swarm would replace the hung task by itself after ~15s, and
        # this test is about Prometheus seeing the hang, not about that race.
        healthcheck=Healthcheck(test=["NONE"]))
    swarm.wait_running(name, timeout_s=TIMEOUT_S)
    return name, port


def _run_unlabelled_service(swarm: Swarm) -> str:
    """A service with no autofix label anywhere (service, container or image)."""
    name = f"quiet-{uuid.uuid4().hex[:6]}"
    swarm.client.services.create(ensure_busybox_image(swarm.client), FAST_STOP, name=name,
                                 networks=["host"])
    swarm.wait_running(name, timeout_s=TIMEOUT_S)
    return name


def _task_container(swarm: Swarm, service: str) -> tuple[dict[str, Any], Any]:
    [task] = swarm.wait_running(service)
    return task, swarm.client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])


def _wait(prom: Prometheus, check: Any, what: str) -> None:
    try:
        wait_for(check, TIMEOUT_S, what, interval=0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\ntargets: {prom.targets()}\nalerts: {prom.alerts()}"
                             f"\n{prom.proc.log_tail()}") from None


def test_swarm_task_is_discovered_and_its_hang_fires_swarm_task_down_only(
        swarm: Swarm, prometheus: Prometheus) -> None:
    client = swarm.client
    image = ensure_target_app_image(swarm.dockerd)
    plain_port = free_port()
    plain = client.containers.run(
        image, name=f"plain-{uuid.uuid4().hex[:6]}", network_mode="host", detach=True,
        labels={"autofix.scrape": "true", "autofix.scrape.port": str(plain_port)},
        environment={"TARGET_APP_BIND": f"{LOOPBACK}:{plain_port}"})
    try:
        unlabelled = _run_unlabelled_service(swarm)
        service, port = _run_service(swarm)
        task, container = _task_container(swarm, service)
        expected = {"job": "swarm-tasks", "instance": f"{LOOPBACK}:{port}",
                    "service": service, "task": task["ID"], "node": task["NodeID"],
                    "container": container.name}
        assert container.name == f"{service}.{task['Slot']}.{task['ID']}"

        def task_up() -> bool:
            return bool(prometheus.query(f'up{{job="swarm-tasks", service="{service}"}} == 1'))

        def plain_up() -> bool:
            return bool(prometheus.query(f'up{{job="containers", container="{plain.name}"}}'
                                         " == 1"))

        _wait(prometheus, task_up, f"{service} scraped by swarm-tasks")
        _wait(prometheus, plain_up, f"{plain.name} scraped by containers")
        [series] = prometheus.query(f'up{{service="{service}"}}')
        assert {k: v for k, v in series["metric"].items() if k != "__name__"} == expected

        # One container, one job: the task only in swarm-tasks, the plain container only
        # in containers, the unlabelled service nowhere (both were listed before the
        # labelled task's first scrape: every refresh lists all containers at once).
        jobs = {t["labels"].get("container"): t["labels"]["job"]
                for t in prometheus.targets()}
        assert jobs[container.name] == "swarm-tasks"
        assert jobs[plain.name] == "containers"
        assert not [c for c in jobs if c and c.startswith(unlabelled)]
        assert len([t for t in prometheus.targets()
                    if t["labels"].get("container") == container.name]) == 1

        TargetContainer(container.name, port, container).fault("hang")

        def firing() -> bool:
            return any(a["labels"].get("alertname") == "SwarmTaskDown"
                       and a["state"] == "firing" and a["labels"].get("task") == task["ID"]
                       for a in prometheus.alerts())

        _wait(prometheus, firing, "SwarmTaskDown firing")
        [alert] = [a for a in prometheus.alerts()
                   if a["labels"].get("container") == container.name]
        assert alert["labels"] == {**expected, "alertname": "SwarmTaskDown",
                                   "severity": "critical"}
        assert not prometheus.query(f'ALERTS{{container="{container.name}", '
                                    'alertname!="SwarmTaskDown"}')
    finally:
        plain.remove(force=True)


def _sd_metric(prom: Prometheus, line_start: str) -> float:
    with urllib.request.urlopen(f"{prom.url}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(line_start))


def test_dockerswarm_sd_makes_no_target_of_a_host_network_task(tmp_path: Path,
                                                               swarm: Swarm) -> None:
    """Why `swarm-tasks` uses docker_sd: role `tasks` builds targets from a task's network
    addresses and host-mode ports, and a `host`-network task has neither. If a Prometheus
    upgrade makes this fail, dockerswarm_sd can replace docker_sd there."""
    service, _ = _run_service(swarm)
    sd = {"host": swarm.url, "refresh_interval": "1s"}
    prom = start_prometheus(tmp_path, {"scrape_configs": [
        {"job_name": "probe-tasks", "dockerswarm_sd_configs": [{**sd, "role": "tasks"}]},
        # The control: same daemon, same mechanism, one target (the node, 127.0.0.1).
        {"job_name": "probe-nodes", "dockerswarm_sd_configs": [{**sd, "role": "nodes"}]},
    ]}, [])
    refreshes = 'prometheus_sd_refresh_duration_seconds_count{mechanism="dockerswarm"}'
    try:
        _wait(prom, lambda: any(t["labels"]["job"] == "probe-nodes" for t in prom.targets()),
              "the node discovered")
        # Target groups reach the scrape manager on a 5s tick: let both roles refresh
        # well past one more tick (counted in refreshes, not slept).
        seen = _sd_metric(prom, refreshes)
        _wait(prom, lambda: _sd_metric(prom, refreshes) >= seen + 16, "more refreshes")
        assert _sd_metric(prom, "prometheus_sd_refresh_failures_total") == 0
        assert swarm.wait_running(service)
        assert _sd_metric(prom, 'prometheus_sd_discovered_targets{config="probe-tasks"') == 0
        assert not [t for t in prom.targets() if t["labels"]["job"] == "probe-tasks"]
    finally:
        prom.stop()
