"""docker-compose.yml under Swarm: `docker stack config` accepts it as it is (static), and
`make stack-test` deploys it with `docker stack deploy` on a single-node swarm inside a
private namespace until every service converges (e2e)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.harness.procs import require_binary
from tests.harness.root_harness import SECRET_GIDS, require_root
from tests.harness.swarm_stack import stack_config as load_stack_config

REPO = Path(__file__).resolve().parents[1]
# The uid each service's image runs as: Swarm writes its secrets owned by that uid.
SERVICE_UIDS = {"target_app": "0", "receiver": "10001", "postgres": "999",
                "alertmanager": "65534", "grafana": "472"}


@pytest.fixture(scope="module")
def stack_config() -> dict:
    """The file as `docker stack deploy` loads it (the docker CLI's own schema; no daemon)."""
    docker = require_binary("docker")

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([docker, *argv], capture_output=True, text=True, cwd=REPO,
                              timeout=60, env={**os.environ, "DOCKER_HOST": "unix:///nonexistent"})

    return load_stack_config(cli, REPO / "docker-compose.yml")


def test_stack_deploy_accepts_the_compose_file(stack_config: dict) -> None:
    assert set(stack_config["services"]) == {"target_app", "receiver", "postgres",
                                              "prometheus", "alertmanager", "grafana",
                                              "docker-proxy", "docker-proxy-ro"}


def test_receiver_runs_two_replicas_and_the_rest_one(stack_config: dict) -> None:
    for name, service in stack_config["services"].items():
        deploy = service["deploy"]
        assert deploy["replicas"] == (2 if name == "receiver" else 1), name
        # Swarm's default (any, 5s): a restart_policy would also become the compose
        # containers' restart policy (`always`), replacing `restart: unless-stopped`.
        assert "restart_policy" not in deploy, name
        assert deploy["update_config"]["parallelism"] == 1, name
        # A new receiver starts before an old one stops; one PostgreSQL volume cannot.
        assert deploy["update_config"]["order"] == (
            "start-first" if name == "receiver" else "stop-first"), name


def test_swarm_secrets_are_owned_by_the_reader_with_the_secrets_group(stack_config: dict
                                                                      ) -> None:
    for name, service in stack_config["services"].items():
        for secret in service.get("secrets", []):
            assert secret["uid"] == SERVICE_UIDS[name], (name, secret)
            assert secret["gid"] == SECRET_GIDS[secret["source"]], (name, secret)
            assert secret["mode"] == 0o440, (name, secret)


def test_target_app_opts_in_as_a_service_and_as_a_container(stack_config: dict) -> None:
    target = stack_config["services"]["target_app"]
    assert target["deploy"]["labels"]["autofix.enable"] == "true"   # the Swarm backend
    assert target["labels"]["autofix.enable"] == "true"             # containers, docker_sd


def test_compose_only_keys_live_in_the_override(stack_config: dict) -> None:
    """What the docker CLI's schema rejects is in docker-compose.override.yml, with the
    127.0.0.1-only ports (Swarm would publish them on every interface) and one receiver
    under compose (two would both publish 127.0.0.1:8080)."""
    override = yaml.safe_load((REPO / "docker-compose.override.yml").read_text())
    for name, service in override["services"].items():
        assert set(service) <= {"group_add", "depends_on", "deploy", "ports"}, name
        assert all(p.startswith("127.0.0.1:") for p in service.get("ports", [])), name
    assert override["services"]["receiver"]["deploy"] == {"replicas": 1}
    assert not any(s.get("ports") for s in stack_config["services"].values())


def test_stack_local_override_swaps_images_drops_grafana_and_uses_dns_round_robin() -> None:
    override = yaml.safe_load((REPO / "tests/harness/docker-stack.local.yml").read_text())
    compose_local = yaml.safe_load((REPO / "tests/harness/docker-compose.local.yml").read_text())
    services = override["services"]
    assert services.pop("grafana") == {"deploy": {"replicas": 0}}
    for name, service in services.items():
        assert service.pop("deploy") == {"endpoint_mode": "dnsrr"}, name
    assert {n: s for n, s in services.items() if s} == compose_local["services"]


def test_the_guides_swarm_commands_are_the_ones_stack_test_runs() -> None:
    """docs/deploy.md section 12 lists what a user types; tests/harness/swarm_stack.py runs
    the same commands (plus a -c file for the local images)."""
    from tests.harness import swarm_stack

    guide = (REPO / "docs/deploy.md").read_text()
    section = guide[guide.index("## 12. Docker Swarm"):]
    for argv in (swarm_stack.SWARM_INIT, (*swarm_stack.STACK_DEPLOY, swarm_stack.STACK),
                 swarm_stack.STACK_RM):
        assert "docker " + " ".join(argv) in section, argv
    assert "sh docs/compose-secrets.sh" in section


@pytest.mark.e2e
@pytest.mark.timeout(1500)
@pytest.mark.stack_harness("swarm stack")
def test_make_stack_test_deploys_the_stack_on_swarm_and_converges(
        request: pytest.FixtureRequest) -> None:
    """`make stack-test` (tests/harness/swarm_stack.py): root, a private dockerd in its own
    network namespace (the session's local images loaded into it), a single-node swarm,
    `docker stack deploy`, 2 receivers. Started with the compose runs (stack_harnesses)."""
    require_root("make stack-test")
    request.getfixturevalue("stack_harnesses").check("swarm stack")
