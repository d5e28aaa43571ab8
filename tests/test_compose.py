"""docker-compose.yml: valid, complete, healthchecked, no raw Docker socket for the
receiver, secrets and networks as SECURITY.md states them (static checks), and
`make compose-test`: the same file deployed for real on a private dockerd (e2e)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness.procs import require_binary

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
# What `docker stack deploy` rejects (group_add, depends_on conditions); `docker compose`
# reads it by itself.
COMPOSE_ONLY = REPO / "docker-compose.override.yml"
SERVICES = {"target_app", "receiver", "postgres", "prometheus", "alertmanager", "grafana",
            "docker-proxy", "docker-proxy-ro"}
SOCKET = "/var/run/docker.sock"


@pytest.fixture(scope="module")
def config() -> dict:
    """The config as docker-compose itself resolves it (anchors, merges, defaults)."""
    result = subprocess.run([require_binary("docker-compose"), "-f", str(COMPOSE),
                             "-f", str(COMPOSE_ONLY), "config"],
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


def test_receiver_proxy_is_the_projects_haproxy(config: dict) -> None:
    for name, cfg in (("docker-proxy", "receiver.cfg"), ("docker-proxy-ro", "prometheus.cfg")):
        proxy = config["services"][name]
        assert proxy["image"].startswith("haproxy:")
        # docker-compose 1.29 renders volumes as "source:target[:mode]" strings
        mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}"
                  for v in proxy["volumes"]]
        assert any(m.startswith(f"{REPO / 'socket-proxy' / cfg}:"
                                "/usr/local/etc/haproxy/haproxy.cfg") for m in mounts), mounts
        assert proxy["cap_drop"] == ["ALL"] and proxy["read_only"] is True


# Mirrors docs/compose-secrets.sh and the table at the end of docker-compose.yml.
SECRET_GIDS = {"postgres_password": "61001", "autofix_db_password": "61002",
               "autofix_database_url": "61003", "autofix_webhook_token": "61004",
               "autofix_api_token": "61005", "grafana_admin_password": "61006",
               "grafana_db_password": "61007", "target_app_fault_token": "61008"}


def test_each_service_adds_exactly_the_groups_of_its_secrets(config: dict) -> None:
    assert set(config["secrets"]) == set(SECRET_GIDS)
    script = (REPO / "docs" / "compose-secrets.sh").read_text()
    for name, gid in SECRET_GIDS.items():
        assert re.search(rf"^make_secret {name} {gid}\b", script, re.M), name
    for name, service in config["services"].items():
        wanted = sorted(SECRET_GIDS[s if isinstance(s, str) else s["source"]]
                        for s in service.get("secrets", []))
        assert sorted(str(g) for g in service.get("group_add", [])) == wanted, name
    # The entrypoint would switch users (and drop the groups) if started as root.
    assert config["services"]["postgres"]["user"] == "999:999"


def test_networks_keep_target_app_away_from_everything_but_prometheus(config: dict) -> None:
    services, networks = config["services"], config["networks"]
    members = {net: sorted(n for n, s in services.items() if net in (s.get("networks") or {}))
               for net in networks}
    assert list(services["target_app"]["networks"]) == ["targets"]
    assert members["targets"] == ["prometheus", "target_app"]
    for net in ("monitoring", "db", "docker-api", "docker-api-ro"):
        assert networks[net].get("internal") is True, net
    assert "target_app" not in members["edge"]
    assert members["db"] == ["grafana", "postgres", "receiver"]
    # Prometheus shares a network with the targets: no lifecycle API for them to call.
    assert not any("enable-lifecycle" in arg for arg in services["prometheus"]["command"])
    assert not any("enable-admin-api" in arg for arg in services["prometheus"]["command"])


def test_receiver_queries_prometheus_by_its_service_name(config: dict) -> None:
    env = config["services"]["receiver"]["environment"]
    assert env["AUTOFIX_PROMETHEUS_URL"] == "http://prometheus:9090"


def test_local_override_only_swaps_images() -> None:
    override = yaml.safe_load((REPO / "tests/harness/docker-compose.local.yml").read_text())
    assert set(override) == {"services"}
    for name, service in override["services"].items():
        assert set(service) == {"image"}, name
        assert name in SERVICES


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_make_compose_test_deploys_the_stack_and_proves_the_loop() -> None:
    """`make compose-test` (tests/harness/compose_stack.py): root, a private dockerd in its
    own network namespace, every image built locally, one hang remediated end to end."""
    run_root_harness("tests.harness.compose_stack", "make compose-test",
                     ("dockerd", "docker-compose", "haproxy", "unshare"), timeout_s=840)


def run_root_harness(module: str, title: str, tools: tuple[str, ...], timeout_s: float
                     ) -> None:
    """`python -m module` (it needs root), failing with its PASS/FAIL summary."""
    if os.geteuid() != 0:
        if os.environ.get("AUTOFIX_REQUIRE_COMPONENTS") == "1":
            pytest.fail(f"{title} needs root")
        pytest.skip(f"{title} needs root")
    for tool in tools:
        require_binary(tool)
    result = subprocess.run([sys.executable, "-m", module], cwd=REPO, capture_output=True,
                            text=True, timeout=timeout_s, check=False)
    report = result.stdout[result.stdout.find(f"== {title} =="):]
    assert result.returncode == 0, (report or result.stdout[-6000:]) + result.stderr[-3000:]


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
