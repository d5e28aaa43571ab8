"""A remote fleet host's Docker API behind the project's own proxies over TLS (#32), end to
end: the certificates made by docs/examples/fleet-certs.sh (the guide's commands), real
HAProxy running socket-proxy/receiver.cfg and prometheus.cfg with a required client
certificate, a real private dockerd behind them, the receiver's DockerExecutor reaching
them through AUTOFIX_DOCKER_HOSTS, and a real Prometheus 2.42 docker_sd through the
read-only one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
import yaml
from sqlalchemy import select

from receiver.executor.docker_api import LazyDockerClient
from receiver.store.models import Action
from tests.harness.app_driver import drain
from tests.harness.busybox import FAST_STOP, ensure_busybox_image
from tests.harness.containers import started_at
from tests.harness.memory_app import fire
from tests.harness.playbook_yaml import RESTART_ONLY as PLAYBOOK
from tests.harness.procs import require_binary, wait_for
from tests.harness.prometheus import start_prometheus
from tests.harness.socket_proxy import SocketProxy, proxy_config, start_socket_proxy
from tests.harness.tls_certs import FleetCerts, make_docker_certs, make_fleet_certs

REPO = Path(__file__).resolve().parents[1]


class Fleet:
    def __init__(self, certs: FleetCerts, rw: SocketProxy, ro: SocketProxy) -> None:
        self.certs, self.rw, self.ro = certs, rw, ro

    def client(self, proxy: SocketProxy, who: str = "autofix-receiver") -> docker.DockerClient:
        """A docker SDK client as the receiver builds one (REQUESTS_CA_BUNDLE ignored)."""
        cert, key = self.certs.client(who)
        return LazyDockerClient(proxy.tls_docker_host, 10, "Docker",
                                (str(self.certs.ca), str(cert), str(key))).get()


@pytest.fixture
def fleet(private_dockerd: Any, tmp_path: Path) -> Iterator[Fleet]:
    certs = make_fleet_certs(tmp_path / "certs", "b", "IP:127.0.0.1")
    tls = (certs.proxy_pem, certs.host_ca)
    rw = start_socket_proxy("receiver.cfg", private_dockerd.sock, tmp_path, tls=tls)
    try:
        ro = start_socket_proxy("prometheus.cfg", private_dockerd.sock, tmp_path, tls=tls)
    except BaseException:
        rw.stop()
        raise
    yield Fleet(certs, rw, ro)
    ro.stop()
    rw.stop()


def _run(client: Any, name: str, labels: dict[str, str]) -> Any:
    ensure_busybox_image(client)
    return client.containers.run("autofix/busybox:test", FAST_STOP, name=name,
                                 network_mode="host", detach=True, labels=labels)


def _backend_up(web: Any, host: str) -> str:
    text = web.get("/metrics").get_data(as_text=True)
    return next(line.split()[-1] for line in text.splitlines()
                if line.startswith(f'autofix_backend_up{{backend="docker",host="{host}"}}'))


def test_receiver_restarts_through_the_tls_proxy_and_refuses_a_server_of_another_ca(
        fleet: Fleet, private_dockerd: Any, pg_url: str, app_factory: Any,
        tmp_path: Path) -> None:
    other = make_docker_certs(tmp_path / "other-ca")
    hosts = {"b": {"url": fleet.rw.tls_docker_host, "timeout_s": 10,
                   "tls": fleet.certs.tls_spec()},
             # The same proxy, but the receiver trusts another CA: it must refuse the server.
             "c": {"url": fleet.rw.tls_docker_host, "timeout_s": 10,
                   "tls": {**fleet.certs.tls_spec(), "ca": str(other.ca)}}}
    playbooks = tmp_path / "playbooks.yml"
    playbooks.write_text(PLAYBOOK)
    name = f"app-{uuid.uuid4().hex[:8]}"
    app_container = _run(private_dockerd.client(), name, {"autofix.enable": "true"})
    try:
        app = app_factory(pg_url, playbooks=playbooks, docker_hosts=json.dumps(hosts),
                          recovery_lookback_s=0)
        web, database = app.test_client(), app.extensions["autofix"].database
        before = started_at(app_container)
        fire(web, {"alertname": "TargetDown", "container": name, "host": "b"},
             starts=datetime.now(UTC))
        drain(app)
        assert started_at(app_container) != before  # restarted through TLS and the allow-list
        with database.session() as session:
            rows = [(row.target, row.action, row.outcome)
                    for row in session.scalars(select(Action).order_by(Action.id))]
        assert rows == [(f"b/{name}", "restart", "succeeded")]
        assert any("/restart" in line and " 204 " in line  # dockerd: restarted, no content
               for line in fleet.rw.log().splitlines())

        ready = web.get("/readyz")
        assert ready.status_code == 200, ready.json  # b answers
        assert ready.json["unreachable"] == ["docker/c"]
        assert ready.json["backends"]["docker/b"]["status"] == "ok"
        refused = ready.json["backends"]["docker/c"]
        assert refused["status"] == "unreachable"
        reason = json.dumps(refused)
        assert "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason
        assert "Traceback" not in reason
        assert (_backend_up(web, "b"), _backend_up(web, "c")) == ("1.0", "0.0")
    finally:
        app_container.remove(force=True)


def test_a_server_certificate_of_the_fleets_ca_naming_another_address_is_refused(
        private_dockerd: Any, tmp_path: Path) -> None:
    """The guide: a server certificate naming another address is refused. Host d's
    certificate (same CA) names 127.0.0.2; its proxy answering on 127.0.0.1 is not trusted
    as the host dialled there, by the receiver nor by Prometheus' client."""
    from receiver.executor import ExecutorError

    certs = make_fleet_certs(tmp_path / "certs", "d", "IP:127.0.0.2")
    proxy = start_socket_proxy("receiver.cfg", private_dockerd.sock, tmp_path,
                               tls=(certs.proxy_pem, certs.host_ca))
    try:
        cert, key = certs.client("autofix-receiver")
        with pytest.raises(ExecutorError) as refused:
            LazyDockerClient(proxy.tls_docker_host, 10, "Docker",
                             (str(certs.ca), str(cert), str(key))).get()
        assert re.search(r"IP address mismatch|doesn't match|CERTIFICATE_VERIFY_FAILED",
                         str(refused.value)), refused.value
        with pytest.raises(requests.exceptions.SSLError):
            _get(f"{proxy.tls_url}/_ping", certs.ca, (cert, key))
        assert "/_ping" not in proxy.log()
    finally:
        proxy.stop()


def test_with_tls_on_plain_http_still_answers_on_autofix_proxy_bind(fleet: Fleet) -> None:
    """AUTOFIX_PROXY_TLS_BIND adds a TLS listener; the plain one stays where
    AUTOFIX_PROXY_BIND puts it (the healthcheck's), serving the allow-list to whoever
    reaches it: the guide says to keep it on loopback, as fleet-host.compose.yml does."""
    assert requests.get(f"http://127.0.0.1:{fleet.rw.port}/_ping", timeout=10).text == "OK"
    guide = (REPO / "docs" / "deploy.md").read_text()
    assert "unless `AUTOFIX_PROXY_TLS_BIND` is set" not in guide
    assert "(`127.0.0.1:2375`) when `AUTOFIX_PROXY_TLS_BIND` is set" in guide


@pytest.mark.parametrize("cfg_name", ["receiver.cfg", "prometheus.cfg"])
def test_with_tls_on_and_no_plain_bind_given_the_plain_listener_is_loopback_only(
        cfg_name: str, fleet: Fleet, private_dockerd: Any, tmp_path: Path) -> None:
    """A forgotten AUTOFIX_PROXY_BIND never leaves a certificate-less allow-list on the
    network: with TLS on, the plain default is 127.0.0.1:2375 (without TLS it stays :2375,
    as docker-compose.yml runs it). Real HAProxy, in a network namespace of its own so
    port 2375 is free."""
    require_binary("unshare")
    cfg = tmp_path / cfg_name
    cfg.write_text(proxy_config(cfg_name, private_dockerd.sock))
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("AUTOFIX_PROXY_")}

    def listeners(**tls: str) -> set[str]:
        script = (f"ip link set lo up; haproxy -f {cfg} & sleep 2; "
                  "ss -ltnH | awk '{print $4}'; kill $!")
        out = subprocess.run(["unshare", "--net", "sh", "-c", script], env={**env, **tls},
                             capture_output=True, text=True, timeout=60, check=True).stdout
        return set(out.split())

    tls = {"AUTOFIX_PROXY_TLS_BIND": ":2376", "AUTOFIX_PROXY_TLS_CERT": str(fleet.certs.proxy_pem),
           "AUTOFIX_PROXY_TLS_CA": str(fleet.certs.host_ca)}
    assert listeners(**tls) == {"127.0.0.1:2375", "0.0.0.0:2376"}
    assert listeners() == {"0.0.0.0:2375"}


def test_the_allow_list_still_refuses_over_tls(fleet: Fleet, private_dockerd: Any) -> None:
    client = fleet.client(fleet.rw)
    bystander = _run(private_dockerd.client(), f"bystander-{uuid.uuid4().hex[:8]}", {})
    try:
        assert client.ping()
        with pytest.raises(docker.errors.APIError) as listing:
            client.images.list()
        assert listing.value.status_code == 403
        # Not opted in: the proxy's own opt-in check refuses the restart.
        with pytest.raises(docker.errors.APIError) as restart:
            client.containers.get(bystander.id).restart(timeout=1)
        assert restart.value.status_code == 403
        with pytest.raises(docker.errors.APIError) as create:
            client.containers.create("autofix/busybox:test", ["true"], privileged=True)
        assert create.value.status_code == 403
        # The read-only proxy lists, and refuses the receiver's calls even over TLS.
        ro = fleet.client(fleet.ro, "autofix-prometheus")
        assert any(c["Id"] == bystander.id for c in ro.api.containers())
        with pytest.raises(docker.errors.APIError) as inspect:
            ro.containers.get(bystander.id)
        assert inspect.value.status_code == 403
    finally:
        bystander.remove(force=True)


def _get(url: str, ca: Path, cert: tuple[Path, Path] | None) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False  # REQUESTS_CA_BUNDLE would replace `verify`
        return session.get(url, verify=str(ca), timeout=10,
                           cert=None if cert is None else (str(cert[0]), str(cert[1])))


def test_each_proxy_lets_in_only_its_own_client(fleet: Fleet) -> None:
    """Both certificates come from the fleet's CA; each proxy admits one name (CN)."""
    receiver, prometheus = (fleet.certs.client(who)
                            for who in ("autofix-receiver", "autofix-prometheus"))
    ca = fleet.certs.ca
    assert _get(f"{fleet.rw.tls_url}/_ping", ca, receiver).status_code == 200
    assert _get(f"{fleet.rw.tls_url}/_ping", ca, prometheus).status_code == 403
    assert _get(f"{fleet.ro.tls_url}/_ping", ca, prometheus).status_code == 200
    assert _get(f"{fleet.ro.tls_url}/_ping", ca, receiver).status_code == 403


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate"])
def test_a_client_without_the_fleets_certificate_is_refused_at_the_handshake(
        fleet: Fleet, tmp_path: Path, who: str) -> None:
    cert: tuple[Path, Path] | None = None
    if who != "no certificate":
        other = make_docker_certs(tmp_path / "other-ca")
        cert = (other.client_cert, other.client_key)
    for proxy in (fleet.rw, fleet.ro):
        with pytest.raises(requests.exceptions.ConnectionError) as refused:
            _get(f"{proxy.tls_url}/_ping", fleet.certs.ca, cert)
        # Refused in the handshake (HAProxy says so), never an HTTP answer.
        assert re.search(r"SSL handshake failure|during SSL handshake|SSL client certificate "
                         r"not trusted", proxy.log()), (refused.value, proxy.log())
        assert "/_ping" not in proxy.log()
    # Plain HTTP on the TLS port is not served either.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(fleet.rw.tls_url.replace("https://", "http://") + "/_ping", timeout=10)


def test_prometheus_docker_sd_discovers_the_hosts_opted_in_containers_over_tls(
        fleet: Fleet, private_dockerd: Any, tmp_path: Path) -> None:
    # The guide's fleet job for edge-2, its docker_sd entry pointed at this proxy.
    jobs = yaml.safe_load((REPO / "docs/examples/prometheus-fleet.yml").read_text())
    sd = [dict(jobs[1]["docker_sd_configs"][0])]
    cert, key = fleet.certs.client("autofix-prometheus")
    assert sd[0]["host"] == "https://10.0.0.12:2377"
    sd[0].update(host=fleet.ro.tls_url, host_networking_host="127.0.0.1",
                 tls_config={"ca_file": str(fleet.certs.ca), "cert_file": str(cert),
                             "key_file": str(key)})
    sd[0]["refresh_interval"] = "1s"
    config = {"global": {"scrape_interval": "2s"},
              "scrape_configs": [{"job_name": "containers", "scrape_interval": "2s",
                                  "scrape_timeout": "1500ms", "docker_sd_configs": sd,
                                  "relabel_configs": [
                                      {"source_labels": ["__meta_docker_container_name"],
                                       "regex": "/?(.+)", "target_label": "container"}]}]}
    client = private_dockerd.client()
    name = f"scraped-{uuid.uuid4().hex[:8]}"
    scraped = _run(client, name, {"autofix.scrape": "true", "autofix.enable": "true"})
    unlabelled = _run(client, f"quiet-{uuid.uuid4().hex[:8]}", {})
    prom = start_prometheus(tmp_path / "prometheus", config, [])
    try:
        def discovered() -> set[str]:
            return {t["labels"].get("container", "") for t in prom.targets()}

        wait_for(lambda: name in discovered(), 30.0, "docker_sd through the TLS proxy")
        assert unlabelled.name not in discovered()
        assert any("/containers/json" in line and " 200 " in line
                   for line in fleet.ro.log().splitlines())
    finally:
        prom.stop()
        scraped.remove(force=True)
        unlabelled.remove(force=True)
