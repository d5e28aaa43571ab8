"""/readyz per backend and autofix_backend_up: a real private dockerd behind a loopback
proxy that is stopped (connection refused) or holds /_ping (a hung daemon)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from receiver.telemetry.metrics import Metrics
from receiver.telemetry.readiness import Readiness
from tests.harness.docker_delay_proxy import DockerDelayProxy
from tests.harness.dockerd import start_dockerd
from tests.harness.memory_executor import MemoryExecutor
from tests.harness.procs import wait_for


def _backend_up(client, backend: str, host: str | None = None) -> str:
    host = host if host is not None else ("local" if backend == "docker" else "")
    text = client.get("/metrics").get_data(as_text=True)
    return next(line.split()[-1] for line in text.splitlines()
                if line.startswith(f'autofix_backend_up{{backend="{backend}",host="{host}"}}'))


def test_ready_with_every_backend_reachable(app_factory, sqlite_url) -> None:
    client = app_factory(sqlite_url, executor=MemoryExecutor()).test_client()
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["backends"] == {"database": {"status": "ok", "error": None},
                                         "docker": {"status": "ok", "error": None}}
    assert _backend_up(client, "docker") == "1.0"


def test_an_unreachable_docker_endpoint_is_503_naming_docker(app_factory, sqlite_url,
                                                              tmp_path: Path) -> None:
    app = app_factory(sqlite_url, docker_host=f"unix://{tmp_path}/dead.sock")
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["unreachable"] == ["docker"]
    assert response.json["database"] == "ok"
    assert "Docker" in response.json["backends"]["docker"]["error"]
    assert _backend_up(client, "docker") == "0.0"
    assert _backend_up(client, "database") == "1.0"


def test_readyz_follows_a_real_daemon_stopping(app_factory, sqlite_url, tmp_path: Path) -> None:
    """A daemon of its own (the session's must stay up), started and stopped here."""
    daemon = start_dockerd(tmp_path / "dockerd")
    try:
        app = app_factory(sqlite_url, docker_host=daemon.url)
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        assert _backend_up(client, "docker") == "1.0"
    finally:
        daemon.stop()
    app.extensions["autofix"].readiness.expire()
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json["unreachable"] == ["docker"]
    assert _backend_up(client, "docker") == "0.0"


def test_a_hung_daemon_is_503_within_the_probe_timeout(app_factory, sqlite_url,
                                                       private_dockerd) -> None:
    proxy = DockerDelayProxy(private_dockerd.sock, delay_s=6, slow="/_ping").start()
    try:
        client = app_factory(sqlite_url, docker_host=proxy.url).test_client()
        started = time.monotonic()
        response = client.get("/readyz")
        took = time.monotonic() - started
        assert response.status_code == 503
        assert "no answer within 2 s" in response.json["backends"]["docker"]["error"]
        assert took < 5.5  # the probe gave up; the daemon would have answered after 6 s
    finally:
        proxy.stop()


def test_answers_are_kept_and_a_hung_probe_is_not_doubled() -> None:
    now = [0.0]
    calls: list[str] = []
    release = threading.Event()

    def hangs() -> None:
        calls.append("hangs")
        release.wait(5)

    metrics = Metrics()
    readiness = Readiness({"fast": lambda: calls.append("fast") and None, "slow": hangs},
                          metrics, timeout_s=0.2, cache_s=5, clock=lambda: now[0])
    first = readiness.check()
    assert [(s.name, s.up) for s in first] == [("fast", True), ("slow", False)]
    assert first[1].error == "no answer within 0.2 s"
    readiness.check()
    assert calls == ["fast", "hangs"]  # both kept for cache_s
    now[0] = 10.0
    readiness.check(wait=False)
    assert calls == ["fast", "hangs", "fast"]  # the hung probe is still the one in flight
    release.set()
    wait_for(lambda: metrics.registry.get_sample_value(
        "autofix_backend_up", {"backend": "slow", "host": ""}) == 0.0, 5,
        "the late answer recorded")
    [_, slow] = readiness.check()
    assert not slow.up and "over the 0.2 s timeout" in (slow.error or "")


def test_the_swarm_backend_needs_a_manager(app_factory, sqlite_url, swarm_daemon,
                                           private_dockerd) -> None:
    manager = app_factory(sqlite_url, docker_host=swarm_daemon.url, swarm_enabled=True,
                          swarm_host=swarm_daemon.url).test_client().get("/readyz")
    assert manager.status_code == 200, manager.json
    assert set(manager.json["backends"]) == {"database", "docker", "swarm"}
    not_a_manager = app_factory(sqlite_url, docker_host=private_dockerd.url,
                                swarm_enabled=True, swarm_host=private_dockerd.url)
    response = not_a_manager.test_client().get("/readyz")
    assert response.status_code == 503 and response.json["unreachable"] == ["swarm"]
    assert response.json["backends"]["swarm"]["error"] == (
        "the Docker endpoint is not a Swarm manager")
