"""The target_app image, built offline on a private dockerd: Docker's HEALTHCHECK goes
healthy, /metrics answers, and the shipped prometheus.yml discovers it via docker_sd."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Registers the session fixtures `dockerd` and `target_app_image` (pytest uses the fixture
# name, not the alias) until tests/conftest.py re-exports tests.conftest_stack.
from tests.conftest_stack import dockerd as _dockerd_fixture  # noqa: F401
from tests.conftest_stack import target_app_image as _target_app_image_fixture  # noqa: F401
from tests.harness.dockerd import Dockerd
from tests.harness.procs import LOOPBACK, free_port, http_ok, wait_for
from tests.harness.prometheus import REPO, load_shipped_config, start_prometheus

pytestmark = pytest.mark.slow

RULES = REPO / "rules" / "alert_rules.yml"


@pytest.fixture
def running_app(dockerd: Dockerd, target_app_image: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    name = f"shop-{uuid.uuid4().hex[:6]}"
    client = dockerd.client()
    container = client.containers.run(
        target_app_image, name=name, detach=True, network_mode="host",
        environment={"TARGET_APP_BIND": f"{LOOPBACK}:{port}"},
        # The container label overrides the image's default port 8000.
        labels={"autofix.scrape.port": str(port), "com.docker.compose.service": "shop"},
    )
    try:
        yield name, port
    finally:
        container.remove(force=True)


def test_image_becomes_healthy_and_serves_metrics(dockerd: Dockerd,
                                                  running_app: tuple[str, int]) -> None:
    name, port = running_app
    container = dockerd.client().containers.get(name)

    def healthy() -> bool:
        container.reload()
        state = container.attrs["State"]
        assert state["Status"] == "running", container.logs()[-2000:]
        return state.get("Health", {}).get("Status") == "healthy"

    wait_for(healthy, 40, f"{name} healthy", interval=0.5)
    assert http_ok(f"http://{LOOPBACK}:{port}/metrics")
    labels = container.image.labels
    assert labels["autofix.scrape"] == "true"


def test_shipped_prometheus_config_discovers_the_container(
        tmp_path: Path, dockerd: Dockerd, running_app: tuple[str, int]) -> None:
    name, port = running_app
    config = copy.deepcopy(load_shipped_config())
    # Override only what must differ on a test host: intervals, and addresses.
    config["global"].update(scrape_interval="1s", scrape_timeout="800ms",
                            evaluation_interval="1s")
    config["alerting"] = {"alertmanagers": []}
    for job in config["scrape_configs"]:
        for sd in job.get("docker_sd_configs", []):
            sd.update(host=dockerd.url, refresh_interval="1s")
    config["scrape_configs"] = [
        job for job in config["scrape_configs"] if job["job_name"] == "containers"]
    prom = start_prometheus(tmp_path, config, [RULES])
    try:
        def discovered() -> bool:
            return bool(prom.query(f'up{{job="containers", container="{name}"}} == 1'))

        try:
            wait_for(discovered, 40, f"{name} scraped by docker_sd", interval=0.5)
        except TimeoutError as exc:
            detail = f"targets: {prom.targets()}\n{prom.proc.log_tail()}"
            raise AssertionError(f"{exc}\n{detail}") from None
        [series] = prom.query(f'up{{container="{name}"}}')
        assert series["metric"]["service"] == "shop"
        assert series["metric"]["instance"] == f"127.0.0.1:{port}"
    finally:
        prom.stop()
