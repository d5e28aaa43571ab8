"""docker-compose.yml: valid, complete, healthchecked, and no raw Docker socket for the
receiver. Validation only - nothing is started."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.harness.procs import require_binary

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
SERVICES = {"target_app", "receiver", "postgres", "prometheus", "alertmanager", "grafana",
            "docker-proxy", "docker-proxy-ro"}
SOCKET = "/var/run/docker.sock"


@pytest.fixture(scope="module")
def config() -> dict:
    """The config as docker-compose itself resolves it (anchors, merges, defaults)."""
    result = subprocess.run([require_binary("docker-compose"), "-f", str(COMPOSE), "config"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_every_service_is_present(config: dict) -> None:
    assert set(config["services"]) == SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck(config: dict, name: str) -> None:
    check = config["services"][name].get("healthcheck", {})
    assert check.get("test") and not check.get("disable"), name


def test_only_socket_proxies_mount_the_docker_socket(config: dict) -> None:
    for name, service in config["services"].items():
        mounts = [str(v.get("source", v) if isinstance(v, dict) else v)
                  for v in service.get("volumes", [])]
        has_socket = any(SOCKET in m for m in mounts)
        assert has_socket == name.startswith("docker-proxy"), name
    assert config["services"]["receiver"]["environment"]["DOCKER_HOST"] == "tcp://docker-proxy:2375"


def test_receiver_proxy_is_minimal(config: dict) -> None:
    env = config["services"]["docker-proxy"]["environment"]
    assert env["CONTAINERS"] == "1" and env["POST"] == "1"
    assert all(env.get(k, "0") == "0" for k in ("EXEC", "IMAGES", "VOLUMES", "NETWORKS"))
    assert config["services"]["docker-proxy-ro"]["environment"]["POST"] == "0"


def test_depends_on_uses_health_conditions(config: dict) -> None:
    receiver = config["services"]["receiver"]["depends_on"]
    assert receiver["postgres"]["condition"] == "service_healthy"
    grafana = config["services"]["grafana"]["depends_on"]
    assert grafana["prometheus"]["condition"] == "service_healthy"


def test_no_plaintext_secrets() -> None:
    text = COMPOSE.read_text()
    assert not re.search(r"(PASSWORD|TOKEN|SECRET)[A-Z_]*:\s*(?!/run/secrets/)\S", text), \
        "secrets must come from /run/secrets files"
    assert "_FILE: /run/secrets/" in text
