"""docker-compose.yml: valid, complete, healthchecked, no raw Docker socket for the
receiver, secrets and networks as SECURITY.md states them (static checks, as Compose v2
and docker-compose 1.29 each resolve the files), and `make compose-test`: the same file
deployed for real on a private dockerd, once with each (e2e)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.compose_cli import V1, V2, require_compose
from tests.harness.compose_stack import compose_version, container_name
from tests.harness.procs import require_binary
from tests.harness.root_harness import SECRET_GIDS, require_root

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
# What `docker stack deploy` rejects (group_add, depends_on conditions); `docker compose`
# reads it by itself.
COMPOSE_ONLY = REPO / "docker-compose.override.yml"
SERVICES = {"target_app", "receiver", "postgres", "prometheus", "alertmanager", "grafana",
            "docker-proxy", "docker-proxy-ro"}
SOCKET = "/var/run/docker.sock"
# Compose v2 (the Docker CLI plugin; .ci/install-compose-plugin) and docker-compose 1.29.
# Debian 12's docker.io CLI (20.10): its `docker stack deploy` needs `version:`.
DOCKER_20_10 = Path("/usr/bin/docker")


def resolve(command: str, *files: Path) -> subprocess.CompletedProcess[str]:
    argv = [*require_compose(command)]
    for file in files:
        argv += ["-f", str(file)]
    return subprocess.run([*argv, "config"], capture_output=True, text=True, cwd=REPO,
                          timeout=60)


@pytest.fixture(scope="module", params=[V2, V1])
def config(request: pytest.FixtureRequest) -> dict:
    """The config as each Compose itself resolves it (anchors, merges, defaults), from the
    files `docker compose up` reads in the repository."""
    result = resolve(request.param, COMPOSE, COMPOSE_ONLY)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_v2_is_installed() -> None:
    """.ci/install-os-packages installs the plugin (trixie's 2.26.1 on Debian 12)."""
    version = compose_version(require_compose(V2))
    assert version and version.startswith("2."), version


def test_container_names_follow_each_compose_scheme() -> None:
    assert container_name("autofix", "target_app", "1.29.2") == "autofix_target_app_1"
    assert container_name("autofix", "target_app", "2.26.1-4") == "autofix-target_app-1"


def test_with_the_override_each_service_is_one_container_restarting_unless_stopped(
        config: dict) -> None:
    """Compose (v2, and 1.29.2 too) takes deploy.replicas and deploy.restart_policy as the
    containers' scale and restart policy: one each, and no restart_policy that would turn
    `unless-stopped` into `always`."""
    for name, service in config["services"].items():
        assert service["restart"] == "unless-stopped", name
        assert service["deploy"]["replicas"] == 1, name
        assert "restart_policy" not in service["deploy"], name
    assert config["services"]["receiver"]["ports"], "the receiver publishes its port"


def test_without_the_override_compose_v2_does_not_run_the_stack() -> None:
    """Why the README says to pass both files (or none, so that compose reads both):
    docker-compose.yml alone is the Swarm stack, 2 receivers without a port and no
    group_add (no service could read its secrets)."""
    result = resolve(V2, COMPOSE)
    assert result.returncode == 0, result.stderr
    alone = yaml.safe_load(result.stdout)["services"]
    assert alone["receiver"]["deploy"]["replicas"] == 2
    assert "ports" not in alone["receiver"]
    assert not any(s.get("group_add") for s in alone.values())
    readme = (REPO / "README.md").read_text()
    assert "`docker compose -f docker-compose.yml -f docker-compose.override.yml up -d`" \
        in readme


def test_compose_v2_warns_of_nothing_but_the_version_stack_deploy_needs() -> None:
    result = resolve(V2, COMPOSE, COMPOSE_ONLY)
    warnings = [line for line in result.stderr.splitlines() if "level=warning" in line]
    assert all("`version` is obsolete" in w for w in warnings), warnings
    assert len(warnings) <= 1, warnings


def test_version_stays_because_debian_12_stack_deploy_needs_it(tmp_path: Path) -> None:
    """Debian 12's docker.io CLI (20.10) refuses a compose file without `version:` (it
    reads it as 1.0); later CLIs and Compose v2 only warn. The file is parsed before the
    daemon is asked, so a socket that does not exist is enough."""
    if not DOCKER_20_10.exists() or not subprocess.run(
            [str(DOCKER_20_10), "--version"], capture_output=True, text=True,
            check=False).stdout.startswith("Docker version 20.10"):
        pytest.skip("no docker.io 20.10 CLI (Debian 12) here")
    versionless = tmp_path / "docker-compose.yml"
    versionless.write_text("\n".join(line for line in COMPOSE.read_text().splitlines()
                                     if not line.startswith("version:")))

    def deploy(file: Path) -> str:
        out = subprocess.run([str(DOCKER_20_10), "-H", f"unix://{tmp_path}/none.sock", "stack",
                              "deploy", "--orchestrator", "swarm", "-c", str(file), "afc"],
                             capture_output=True, text=True, timeout=60, check=False)
        return out.stdout + out.stderr
    assert "unsupported Compose file version: 1.0" in deploy(versionless)
    assert "Cannot connect to the Docker daemon" in deploy(COMPOSE)


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
@pytest.mark.parametrize("compose", [
    pytest.param(V2, marks=pytest.mark.stack_harness(f"compose {V2}")),
    pytest.param(V1, marks=pytest.mark.stack_harness(f"compose {V1}"))])
def test_make_compose_test_deploys_the_stack_and_proves_the_loop(
        compose: str, request: pytest.FixtureRequest) -> None:
    """`make compose-test [COMPOSE=docker-compose]` (tests/harness/compose_stack.py): root,
    a private dockerd in its own network namespace, every image built locally (once a
    session: the local_images fixture), one hang found by its compose service, remediated
    end to end; with Compose v2 and with 1.29 (both runs, and Swarm's, start together: the
    stack_harnesses fixture)."""
    require_compose(compose)
    require_root("make compose-test")
    request.getfixturevalue("stack_harnesses").check(f"compose {compose}")


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


NOBODY = 65534


def as_nobody(*argv: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                             "--clear-groups", *argv], text=True, **kwargs)


def test_make_secrets_as_a_rootless_docker_user() -> None:
    """`make secrets` without root, for rootless Docker: the script enters the daemon's user
    namespace (a stand-in here: inner root = the user, inner 1-65536 = a subordinate range
    from 200000, as rootlesskit maps them) and the files get the per-secret groups of that
    namespace, 0440. A non-root user without such a daemon is refused in one line."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make the stand-in user namespace and its mappings")
    require_binary("nsenter")
    # Not pytest's tmp_path: its parents are root's, closed to the user.
    with tempfile.TemporaryDirectory(prefix="afc-rootless-") as scratch:
        os.chmod(scratch, 0o755)
        rootless_secrets(Path(scratch) / "run", Path(scratch) / "project")


def rootless_secrets(run: Path, project: Path) -> None:
    for path in (run, project):
        path.mkdir()
        os.chown(path, NOBODY, NOBODY)
    script = str(REPO / "docs" / "compose-secrets.sh")
    refused = as_nobody("env", f"XDG_RUNTIME_DIR={run}", "sh", script, str(project),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert "sudo make secrets" in err and not (project / ".secrets").exists()

    daemon = as_nobody("unshare", "--user", "sleep", "60")
    try:
        deadline = time.monotonic() + 10
        while (os.readlink(f"/proc/{daemon.pid}/ns/user") == os.readlink("/proc/self/ns/user")
               and time.monotonic() < deadline):
            time.sleep(0.05)   # until setpriv has exec'd unshare and it made the namespace
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{daemon.pid}/{name}").write_text(f"0 {NOBODY} 1\n1 200000 65536\n")
        (run / "docker.pid").write_text(f"{daemon.pid}\n")
        made = as_nobody("env", f"XDG_RUNTIME_DIR={run}", "sh", script, str(project),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
        _, err = made.communicate(timeout=60)
        assert made.returncode == 0, err
    finally:
        daemon.kill()
        daemon.wait()
    for name, gid in SECRET_GIDS.items():
        st = (project / ".secrets" / name).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == \
            (NOBODY, 200000 + int(gid) - 1, 0o440), name
