"""docs/examples/fleet-host.compose.yml, what runs on each remote fleet host: valid for
Compose v2 and docker-compose 1.29 (as each resolves it), and brought up for real on a
private dockerd in the layout the guide gives (the socket-proxy/ folder, the certificates
of docs/examples/fleet-certs.sh), with the local haproxy image and host networking (the
private dockerd has no bridge): the receiver's client restarts through it over TLS, the
allow-list refuses, and the read-only proxy admits Prometheus' certificate only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
import yaml

from receiver.executor.docker_api import LazyDockerClient
from tests.harness.busybox import FAST_STOP, ensure_busybox_image
from tests.harness.compose_cli import V1, V2, require_compose
from tests.harness.containers import started_at
from tests.harness.local_images import LOCAL_TAGS, build_haproxy
from tests.harness.procs import LOOPBACK, free_port, wait_for
from tests.harness.tls_certs import FleetCerts, make_fleet_certs

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "fleet-host.compose.yml"
SOCKET = "/var/run/docker.sock"


def _layout(directory: Path, certs: FleetCerts) -> Path:
    """/etc/autofix-proxy as the guide lays it out."""
    directory.mkdir(parents=True)
    shutil.copy(EXAMPLE, directory / "compose.yml")
    shutil.copytree(REPO / "socket-proxy", directory / "socket-proxy")
    shutil.copy(certs.proxy_pem, directory / "proxy.pem")
    shutil.copy(certs.host_ca, directory / "ca.pem")
    return directory / "compose.yml"


@pytest.mark.parametrize("command", [V2, V1])
def test_the_fleet_host_compose_file_is_valid(command: str, tmp_path: Path) -> None:
    compose = _layout(tmp_path / "autofix-proxy", make_fleet_certs(tmp_path / "certs", "b"))
    done = subprocess.run([*require_compose(command), "-f", str(compose), "config"],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "DOCKER_SOCKET": SOCKET})
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) == {"docker-proxy", "docker-proxy-ro"}
    for name, published in (("docker-proxy", 2376), ("docker-proxy-ro", 2377)):
        service = services[name]
        assert [int(port["published"]) for port in service["ports"]] == [published]
        assert service["environment"]["AUTOFIX_PROXY_TLS_BIND"] == ":2376"
        # Plain HTTP only inside the container, for its healthcheck.
        assert service["environment"]["AUTOFIX_PROXY_BIND"] == "127.0.0.1:2375"
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        # v2 answers {source, target}, 1.29 "source:target:mode".
        mounts = {":".join(volume.split(":")[:2]) if isinstance(volume, str) else
                  f"{volume['source']}:{volume['target']}" for volume in service["volumes"]}
        config = "receiver.cfg" if name == "docker-proxy" else "prometheus.cfg"
        assert f"{SOCKET}:{SOCKET}" in mounts
        assert f"{compose.parent}/socket-proxy/{config}:/usr/local/etc/haproxy/haproxy.cfg" \
            in mounts, mounts


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


def test_the_fleet_host_compose_file_runs_both_proxies_over_tls(
        private_dockerd: Any, tmp_path: Path) -> None:
    command = require_compose(V2)
    client = private_dockerd.client()
    build_haproxy(client, lambda _msg: None)
    certs = make_fleet_certs(tmp_path / "certs", "b", "IP:127.0.0.1")
    compose = _layout(tmp_path / "autofix-proxy", certs)
    ports = {name: (free_port(), free_port()) for name in ("docker-proxy", "docker-proxy-ro")}
    # Only what a private dockerd without a bridge needs: the local image, host networking
    # and loopback ports of the test's choosing.
    local = tmp_path / "local.yml"
    local.write_text("services:\n" + "".join(
        f"  {name}:\n    image: {LOCAL_TAGS['haproxy']}\n    network_mode: host\n"
        f"    ports: !reset []\n    environment:\n"
        f"      AUTOFIX_PROXY_BIND: {LOOPBACK}:{plain}\n"
        f"      AUTOFIX_PROXY_TLS_BIND: {LOOPBACK}:{tls}\n"
        for name, (plain, tls) in ports.items()))
    project = f"fleethost{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "DOCKER_HOST": private_dockerd.url,
           "DOCKER_SOCKET": str(private_dockerd.sock)}
    argv = [*command, "-p", project, "-f", str(compose), "-f", str(local)]
    app = None
    try:
        up = subprocess.run([*argv, "up", "-d"], capture_output=True, text=True, timeout=300,
                            env=env, check=False)
        assert up.returncode == 0, up.stderr
        rw_tls, ro_tls = ports["docker-proxy"][1], ports["docker-proxy-ro"][1]
        wait_for(lambda: _accepts(rw_tls) and _accepts(ro_tls), 60.0, "the proxies")

        ensure_busybox_image(client)
        app = client.containers.run("autofix/busybox:test", FAST_STOP, detach=True,
                                    name=f"app-{uuid.uuid4().hex[:8]}", network_mode="host",
                                    labels={"autofix.enable": "true"})
        cert, key = certs.client("autofix-receiver")
        receiver = LazyDockerClient(f"tcp://{LOOPBACK}:{rw_tls}", 10, "Docker",
                                    (str(certs.ca), str(cert), str(key))).get()
        before = started_at(app)
        receiver.containers.get(app.id).restart(timeout=1)
        assert started_at(app) != before
        with pytest.raises(docker.errors.APIError) as refused:
            receiver.images.list()
        assert refused.value.status_code == 403

        with requests.Session() as session:
            session.trust_env = False
            listing = session.get(f"https://{LOOPBACK}:{ro_tls}/v1.41/containers/json",
                                  verify=str(certs.ca), timeout=10,
                                  cert=tuple(map(str, certs.client("autofix-prometheus"))))
            assert listing.status_code == 200
            assert app.id in {c["Id"] for c in listing.json()}
            assert session.get(f"https://{LOOPBACK}:{ro_tls}/_ping", verify=str(certs.ca),
                               timeout=10, cert=(str(cert), str(key))).status_code == 403
    finally:
        if app is not None:
            app.remove(force=True)
        subprocess.run([*argv, "down", "-t", "1"], capture_output=True, text=True, timeout=120,
                       env=env, check=False)


def test_the_fleet_prometheus_jobs_dial_the_read_only_proxy_this_file_publishes() -> None:
    """Each host job of prometheus-fleet.yml reaches docker-proxy-ro (2377, TLS), and the
    guide's fleet section names that proxy, not section 7's prometheus-docker-proxy.cfg
    (plain HTTP on the host's loopback, on the port the allow-list proxy takes here)."""
    compose = yaml.safe_load((REPO / "docs/examples/fleet-host.compose.yml").read_text())
    [published] = compose["services"]["docker-proxy-ro"]["ports"]
    port = published.split(":")[0]
    jobs = yaml.safe_load((REPO / "docs/examples/prometheus-fleet.yml").read_text())
    for job in jobs:
        [sd] = job["docker_sd_configs"]
        assert sd["host"].startswith("https://") and sd["host"].endswith(f":{port}"), job
    guide = (REPO / "docs/deploy.md").read_text()
    fleet = guide[guide.index("## 15. "):]
    fleet = fleet[:fleet.index("\n## ", 1)] if "\n## " in fleet[1:] else fleet
    assert "prometheus-docker-proxy.cfg" not in fleet
    assert "socket-proxy/prometheus.cfg" in fleet
