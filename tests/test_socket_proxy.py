"""The Docker API proxies' rules (socket-proxy/receiver.cfg and prometheus.cfg), call by
call, through HAProxy to a real private dockerd: every allowed call reaches the daemon and
works, every refused one is a 403 and changes nothing. Among the refused: the start that
rewrote a container (issue 26, finding 6: `POST /v1.23/containers/victim/start` with
`{"Binds": [...], "Privileged": true}`), any start with a body, API versions below 1.24,
unversioned paths, exec bodies other than the docker SDK's exec_run (privileged, as root,
with an environment), and any change to a container that is not opted in (one holding the
Docker socket, as the proxies do: an exec there would be the whole API). The receiver's own
executor still does everything it does through the receiver's proxy."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from receiver.executor.base import EvidenceLimits, ExecutorError
from receiver.executor.docker_executor import DockerExecutor
from tests.harness.busybox import FAST_STOP, TAG, ensure_busybox_image
from tests.harness.procs import LOOPBACK, wait_for
from tests.harness.prometheus import start_prometheus
from tests.harness.socket_proxy import SocketProxy, start_socket_proxy

PROBE = "afp-probe"     # running, labelled: the allowed calls act on it
VICTIM = "afp-victim"   # created, never started: the refused calls aim at it
CONTROL = "afp-control"  # the attack sent straight to dockerd, proving it is one
HOLDER = "afp-holder"   # running, not opted in, holds the Docker socket (as the proxies do)
LABELS = {"autofix.enable": "true"}
V = "/v1.41"            # bookworm's dockerd 20.10: its newest API version
ATTACK = {"Binds": ["/etc:/host-etc:ro"], "Privileged": True}
# What the docker SDK's exec_run(cmd) sends to exec create, byte for byte (json.dumps of a
# dict in this order); the executor test below shows the SDK's own body is let through.
SDK_EXEC = ('{{"Container": "{c}", "User": "", "Privileged": false, "Tty": false, '
            '"AttachStdin": false, "AttachStdout": true, "AttachStderr": true, '
            '"Cmd": {cmd}}}')


def sdk_exec_body(container: str, cmd: list[str]) -> str:
    return SDK_EXEC.format(c=container, cmd=json.dumps(cmd))


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def client(private_dockerd: Any) -> docker.DockerClient:
    client = private_dockerd.client()
    ensure_busybox_image(client)
    return client


@pytest.fixture(scope="module")
def containers(client: docker.DockerClient, private_dockerd: Any
               ) -> Iterator[dict[str, Any]]:
    made = {
        PROBE: client.containers.run(TAG, FAST_STOP, name=PROBE, labels=LABELS, detach=True),
        VICTIM: client.containers.create(TAG, FAST_STOP, name=VICTIM, labels=LABELS),
        CONTROL: client.containers.create(TAG, FAST_STOP, name=CONTROL),
        HOLDER: client.containers.run(TAG, FAST_STOP, name=HOLDER, detach=True, volumes={
            str(private_dockerd.sock): {"bind": "/var/run/docker.sock", "mode": "rw"}}),
    }
    yield made
    for container in made.values():
        container.remove(force=True)


def running_proxy(cfg_name: str, dockerd: Any, workdir: Path) -> Iterator[SocketProxy]:
    proxy = start_socket_proxy(cfg_name, dockerd.sock, workdir)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def receiver_proxy(private_dockerd: Any, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[SocketProxy]:
    yield from running_proxy("receiver.cfg", private_dockerd, tmp_path_factory.mktemp("proxy"))


@pytest.fixture(scope="module")
def readonly_proxy(private_dockerd: Any, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[SocketProxy]:
    yield from running_proxy("prometheus.cfg", private_dockerd, tmp_path_factory.mktemp("ro"))


# ----------------------------------------------------------------------------- requests

def call(port: int, method: str, path: str, body: Any = None) -> int:
    """The status of one request (a dict body is sent as JSON, a str as it is)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=30)
    try:
        data = json.dumps(body) if isinstance(body, dict | list) else body
        sent = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=sent)
        return conn.getresponse().status  # not the body: logs and events may stream
    finally:
        conn.close()


def raw(port: int, request: bytes) -> bytes:
    """Bytes on the wire, for what http.client will not send; the first answer's bytes."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(request)
        try:
            return sock.recv(200)
        except ConnectionResetError:
            return b""


def status_of(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode(errors="replace")


def host_config(client: docker.DockerClient, name: str) -> dict[str, Any]:
    attrs = client.api.inspect_container(name)
    return {"Binds": attrs["HostConfig"].get("Binds"),
            "Privileged": attrs["HostConfig"].get("Privileged"),
            "Status": attrs["State"]["Status"]}


UNCHANGED = {"Binds": None, "Privileged": False, "Status": "created"}


# ----------------------------------------------------------------------------- receiver.cfg

def receiver_allowed(probe_id: str) -> list[tuple[str, str, Any, int]]:
    """(method, path, body, dockerd's answer), in order (stop before start). A call that
    changes a container names it by id, as the docker SDK does."""
    c, i = PROBE, probe_id
    return [
        ("GET", "/_ping", None, 200), ("HEAD", "/_ping", None, 200),
        ("GET", "/version", None, 200), ("GET", f"{V}/_ping", None, 200),
        ("GET", "/v1.24/version", None, 200),          # the minimum version
        ("GET", f"{V}/info", None, 200),               # the events follower's daemon id
        ("GET", f"{V}/containers/{c}/json", None, 200),
        ("GET", f"/v1.24/containers/{probe_id}/json", None, 200),
        ("GET", f"{V}/containers/no-such-container/json", None, 404),
        ("GET", f"{V}/containers/json?all=1", None, 200),  # the dependents' list
        ("HEAD", "/v1.24/containers/json", None, 404),  # through; dockerd has no HEAD
        ("POST", f"{V}/containers/{i}/stop?t=1", None, 204),
        ("POST", f"{V}/containers/{i}/start", None, 204),
        ("POST", f"{V}/containers/{i}/restart?t=1", None, 204),
        ("POST", f"/v1.24/containers/{i}/kill?signal=SIGKILL", None, 204),
        ("POST", f"{V}/containers/{i}/start", None, 204),
        ("GET", f"{V}/containers/{c}/logs?stdout=1&stderr=1&tail=5", None, 200),
        ("GET", f"{V}/containers/{c}/stats?stream=0&one-shot=1", None, 200),
        ("GET", f"{V}/events?since=1&until=2", None, 200),
        ("POST", f"{V}/containers/{i}/exec", sdk_exec_body(probe_id, ["true"]), 201),
    ]


def receiver_refused(ids: dict[str, str]) -> list[tuple[str, str, Any]]:
    """(method, path, body) of calls the proxy must refuse; ids by container name."""
    c, v, i, h = PROBE, VICTIM, ids[PROBE], ids[HOLDER]
    exec_path = f"{V}/containers/{i}/exec"
    sdk = sdk_exec_body(i, ["id"])
    return [
        # a container that is not opted in, such as one holding the Docker socket
        ("POST", f"{V}/containers/{h}/exec", sdk_exec_body(h, ["id"])),
        ("POST", f"{V}/containers/{h}/restart", None),
        ("POST", f"{V}/containers/{h}/kill", None),
        ("POST", f"{V}/containers/{h}/stop", None),
        # a container named, or an id prefix, where a change needs the full id
        ("POST", f"{V}/containers/{c}/restart", None),
        ("POST", f"{V}/containers/{i[:12]}/restart", None),
        ("POST", f"{V}/containers/{c}/exec", sdk),
        # finding 6: a start that carries a configuration, at any version, and old versions
        ("POST", f"/v1.23/containers/{ids[VICTIM]}/start", ATTACK),
        ("POST", f"{V}/containers/{ids[VICTIM]}/start", ATTACK),
        ("POST", f"/v1.23/containers/{v}/start", ATTACK),
        ("POST", f"/v1.12/containers/{v}/start", ATTACK),
        ("POST", f"{V}/containers/{v}/start", ATTACK),
        ("POST", f"/containers/{v}/start", ATTACK),
        ("POST", f"{V}/containers/{v}/start", {}),
        ("POST", f"{V}/containers/{v}/restart", {"HostConfig": ATTACK}),
        ("POST", f"{V}/containers/{v}/kill", "signal=SIGKILL"),
        ("POST", f"/v1.23/containers/{v}/start", None),
        ("POST", f"/v1.12/containers/{v}/start", None),
        ("POST", f"/containers/{v}/start", None),
        ("POST", f"/containers/{v}/restart", None),
        ("GET", f"/v1.23/containers/{c}/json", None),
        ("GET", f"/v1.12/containers/{c}/json", None),
        ("GET", f"/containers/{c}/json", None),
        ("GET", f"/v1.100/containers/{c}/json", None),
        ("GET", f"/v2.0/containers/{c}/json", None),
        ("GET", "/v1.12/version", None),
        ("GET", "/v1.23/_ping", None),
        ("GET", "/events", None),
        ("GET", f"{V}/containers/{c}/json", "{}"),          # a body on a read
        ("GET", "/version", "{}"),
        # exec create: only the SDK's exec_run body, nothing else
        ("POST", exec_path, sdk.replace('"Privileged": false', '"Privileged": true')),
        ("POST", exec_path, sdk.replace('"User": ""', '"User": "root"')),
        ("POST", exec_path, sdk.replace('"Cmd"', '"privileged": true, "Cmd"')),
        ("POST", exec_path, sdk[:-1] + ', "Privileged": true}'),
        ("POST", exec_path, sdk[:-1] + ', "Env": ["A=b"]}'),
        ("POST", exec_path, sdk[:-1] + ', "WorkingDir": "/"}'),
        ("POST", exec_path, sdk[:-1] + ', "detachKeys": "ctrl-p", "User": "0"}'),
        ("POST", exec_path, sdk.replace('"AttachStdin": false', '"AttachStdin": true')),
        ("POST", exec_path, sdk.replace('"Tty": false', '"Tty": true')),
        ("POST", exec_path, sdk.replace('["id"]', '["id", "x\\", "Privileged": true]')),
        ("POST", exec_path, sdk + " "),
        ("POST", exec_path, {"Cmd": ["id"], "Privileged": True, "User": "0"}),
        ("POST", exec_path, {"Cmd": ["id"]}),
        ("POST", exec_path, None),
        ("POST", f"/containers/{i}/exec", sdk),
        ("POST", f"{V}/exec/{'0' * 64}/start", '{"Tty": true, "Detach": false}'),
        ("POST", f"{V}/exec/{'0' * 64}/start", '{"Tty": false, "Detach": false, "x": 1}'),
        # everything else the compose table refuses
        ("POST", f"{V}/containers/create?name=afp-evil",
         {"Image": "autofix/busybox:test", "HostConfig": ATTACK}),
        ("POST", "/v1.23/containers/create", {"Image": "autofix/busybox:test"}),
        ("PUT", f"{V}/containers/{v}/archive?path=/tmp", None),
        ("GET", f"{V}/containers/{c}/archive?path=/etc", None),
        ("POST", f"{V}/containers/{v}/update", {"Memory": 0}),
        ("DELETE", f"{V}/containers/{v}?force=1", None),
        ("POST", f"{V}/containers/{v}/rename?name=afp-renamed", None),
        ("POST", f"{V}/containers/{c}/pause", None),
        ("POST", f"{V}/containers/{c}/attach?stream=1&stdout=1", None),
        ("GET", f"{V}/containers/{c}/export", None),
        ("GET", f"{V}/containers/{c}/top", None),
        ("POST", f"{V}/containers/json", None),             # the list: read only
        ("POST", f"{V}/containers/json?all=1", None),
        ("GET", f"{V}/containers/json", "{}"),              # nor with a body
        ("GET", "/containers/json", None),
        ("GET", "/v1.23/containers/json", None),
        ("POST", f"{V}/exec/{'0' * 64}/resize?h=1&w=1", None),
        ("GET", f"{V}/images/json", None),
        ("GET", f"{V}/volumes", None),
        ("POST", f"{V}/build", None),
        ("GET", f"{V}/networks", None),
        ("GET", "/info", None),
        ("POST", f"{V}/info", None),
        ("POST", f"{V}/swarm/init", {}),
        ("POST", f"{V}/containers/{c}/logs", None),
        ("GET", f"{V}/containers/{c}/../../images/json", None),
        ("GET", f"{V}/containers/%2e%2e/images/json", None),
        ("POST", f"{V}/containers/create/../create", {"Image": "x"}),
        ("POST", f"{V}//containers/{v}/start", None),
        ("POST", f"/V1.41/containers/{v}/start", None),
    ]


def test_receiver_proxy_refuses_the_privileged_start_and_every_call_it_does_not_need(
        client: docker.DockerClient, containers: dict[str, Any],
        receiver_proxy: SocketProxy) -> None:
    probe_id = containers[PROBE].id
    port = receiver_proxy.port
    holder_started = client.api.inspect_container(HOLDER)["State"]["StartedAt"]
    answered = [(m, p, call(port, m, p, b)) for m, p, b, _ in receiver_allowed(probe_id)]
    assert answered == [(m, p, want) for m, p, _, want in receiver_allowed(probe_id)]
    ids = {name: container.id for name, container in containers.items()}
    refused = [(m, p, call(port, m, p, b)) for m, p, b in receiver_refused(ids)]
    assert [row for row in refused if row[2] != 403] == []
    # The attack changed nothing: the victim was never started nor reconfigured, and no
    # container was made, renamed or removed.
    assert host_config(client, VICTIM) == UNCHANGED
    names = {c.name for c in client.containers.list(all=True)}
    assert names >= {PROBE, VICTIM, CONTROL} and not names & {"afp-evil", "afp-renamed"}
    holder = client.api.inspect_container(HOLDER)["State"]
    assert (holder["Running"], holder["StartedAt"]) == (True, holder_started)
    containers[PROBE].reload()
    assert containers[PROBE].status == "running"


def test_a_body_hidden_from_the_headers_is_refused(
        client: docker.DockerClient, containers: dict[str, Any],
        receiver_proxy: SocketProxy) -> None:
    """Chunked, or announced with odd spelling, or HTTP/2 (whose body needs no header):
    the start still carries no configuration."""
    body = json.dumps(ATTACK).encode()
    path = f"/v1.23/containers/{VICTIM}/start".encode()
    chunked = (b"POST " + path + b" HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json"
               b"\r\nTransfer-Encoding: chunked\r\n\r\n" + f"{len(body):x}".encode() +
               b"\r\n" + body + b"\r\n0\r\n\r\n")
    padded = (b"POST " + path + b" HTTP/1.1\r\nHost: docker\r\nContent-Length: 0" +
              b"0" * 3 + str(len(body)).encode() + b"\r\n\r\n" + body)
    h2_preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    for request in (chunked, padded, chunked.replace(b"chunked", b"Chunked"),
                    chunked.replace(b"/v1.23", b"/v1.41")):
        assert status_of(raw(receiver_proxy.port, request)).startswith("HTTP/1.1 403"), request
    # HTTP/2 is not spoken at all: no settings frame back, at most an HTTP/1 error.
    answer = raw(receiver_proxy.port, h2_preface)
    assert answer == b"" or status_of(answer).startswith("HTTP/1.1 400"), answer
    assert host_config(client, VICTIM) == UNCHANGED


def test_the_attack_is_real_when_sent_straight_to_dockerd(
        client: docker.DockerClient, containers: dict[str, Any], private_dockerd: Any,
        tmp_path: Path) -> None:
    """Control: on this very daemon, the start the proxy refuses (here binding a host
    directory; this sandbox refuses the capabilities of Privileged) rewrites a container,
    and an exec then reads the host's file."""
    (tmp_path / "host-file").write_text("host secret")
    conn = UnixHTTPConnection(private_dockerd.sock)
    try:
        conn.request("POST", f"/v1.23/containers/{CONTROL}/start",
                     body=json.dumps({"Binds": [f"{tmp_path}:/host:ro"]}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = (response.status, response.read()[:300])
    finally:
        conn.close()
    assert answer == (204, b"")
    assert host_config(client, CONTROL)["Binds"] == [f"{tmp_path}:/host:ro"]
    read = containers[CONTROL].exec_run(["cat", "/host/host-file"])
    assert (read.exit_code, read.output) == (0, b"host secret")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("docker", timeout=30)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self._path)


def test_the_receivers_executor_does_all_it_does_through_its_proxy(
        client: docker.DockerClient, containers: dict[str, Any],
        receiver_proxy: SocketProxy) -> None:
    seen = len(receiver_proxy.log())
    executor = DockerExecutor(receiver_proxy.docker_host, 30, own_ids=frozenset())
    probe_id = containers[PROBE].id
    # What the events follower and /readyz ask: the daemon's own id, not the URL fallback.
    executor.ping()
    assert executor.daemon_id() == client.info()["ID"]
    assert executor.container_facts(PROBE) is not None
    identity = executor.resolve(PROBE)
    assert identity.id == probe_id and executor.refers_to(probe_id[:12], identity)
    assert executor.inspect(PROBE).running
    executor.restart(PROBE, 1)
    result = executor.exec(PROBE, ["sh", "-c", "echo exec-ok; echo 'a \"quoted\" é'; exit 3"],
                           30)
    assert (result.exit_code, result.output) == (3, 'exec-ok\na "quoted" é\n')
    sources = executor.evidence_sources(PROBE, EvidenceLimits(log_lines=5, log_bytes=4096))
    evidence = {name: source() for name, source in sources.items()}
    assert evidence["state"]["running"] and evidence["stats"]["pids"]
    assert "start" in [event["action"] for event in evidence["events"]]
    assert evidence["operator_stop"] is None
    # Who depends on it: one container list (GET /containers/json), no dependent here.
    assert evidence["dependents"] == {"cycle": None, "dependents": []}
    assert executor.dependents(identity) == []
    executor.stop(PROBE, 1)
    assert "an operator asked Docker to" in str(executor.stopped_by_operator(
        executor.inspect(PROBE)))
    executor.start(PROBE)
    executor.kill(PROBE, "SIGKILL")
    executor.start(PROBE)
    assert executor.inspect(PROBE).running
    # Nothing refused; the SDK asked the version unversioned, then spoke the daemon's own.
    requests = [line.split('"')[1] for line in receiver_proxy.log()[seen:].splitlines()]
    assert [line for line in receiver_proxy.log()[seen:].splitlines() if " 403 " in line] == []
    assert requests[0] == "GET /version HTTP/1.1"
    assert all(r.split()[1].startswith(f"{V}/") for r in requests[1:]), requests
    # Nor can it act on a container that is not opted in, whatever the receiver decides.
    for action in (lambda: executor.exec(HOLDER, ["id"], 30), lambda: executor.restart(HOLDER, 1),
                   lambda: executor.kill(HOLDER, "SIGKILL")):
        with pytest.raises(ExecutorError, match="403"):
            action()
    assert executor.inspect(HOLDER).running


# ----------------------------------------------------------------------------- prometheus.cfg

def test_readonly_proxy_lists_and_refuses_everything_else(
        containers: dict[str, Any], readonly_proxy: SocketProxy) -> None:
    c, port = PROBE, readonly_proxy.port
    allowed = [("GET", "/_ping", 200), ("HEAD", "/_ping", 200), ("GET", "/version", 200),
               ("GET", f"{V}/containers/json?all=1", 200), ("GET", f"{V}/networks", 200),
               ("GET", "/v1.24/containers/json", 200)]
    assert [(m, p, call(port, m, p)) for m, p, _ in allowed] == allowed
    refused: list[tuple[str, str, Any]] = [
        ("GET", "/containers/json", None), ("GET", "/v1.23/containers/json", None),
        ("GET", f"{V}/containers/json", "{}"), ("GET", f"{V}/containers/{c}/json", None),
        ("POST", f"{V}/containers/{c}/restart", None),
        ("POST", f"/v1.23/containers/{VICTIM}/start", ATTACK),
        ("POST", f"{V}/containers/{c}/exec", {"Cmd": ["true"]}),
        ("POST", f"{V}/containers/create", {"Image": "x"}),
        ("DELETE", f"{V}/containers/{c}", None),
        ("POST", f"{V}/networks/create", {"Name": "afp-evil"}),
        ("GET", f"{V}/images/json", None), ("GET", f"{V}/info", None),
        ("GET", f"{V}/events?until=1", None), ("GET", f"{V}/volumes", None),
    ]
    assert [(m, p) for m, p, b in refused if call(port, m, p, b) != 403] == []


def test_prometheus_docker_sd_reads_through_the_readonly_proxy(
        containers: dict[str, Any], readonly_proxy: SocketProxy,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The Prometheus shipped with Debian negotiates on an unversioned /_ping, then lists
    containers and networks at the daemon's version: all allowed, nothing refused."""
    seen = len(readonly_proxy.log())
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [{
        "job_name": "docker", "docker_sd_configs": [
            {"host": readonly_proxy.docker_host, "refresh_interval": "1s", "port": 8000}]}]}
    prom = start_prometheus(tmp_path_factory.mktemp("prom-sd"), config, [])
    try:
        wait_for(lambda: all(f'"GET {V}/{what}' in readonly_proxy.log()[seen:]
                             for what in ("containers/json?limit=0", "networks")),
                 30, "docker_sd listing containers and networks through the proxy")
    finally:
        prom.stop()
    requests = readonly_proxy.log()[seen:].splitlines()
    assert [line for line in requests if " 403 " in line] == []
    assert any('"HEAD /_ping' in line for line in requests)
