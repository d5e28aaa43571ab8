"""rollback_image through the receiver's socket proxy (socket-proxy/receiver.cfg and
rollback.lua) to a real private dockerd: the executor's rollback goes through with no call
refused; the proxy refuses a create that is not the quarantined container's own
configuration (privileged, an extra bind, another user or network, no opt-in label, an
image by name, a case-variant or duplicate key, a body past the buffer), a create with no
stopped quarantined predecessor of that name, any rename but to the container's own
quarantine name (or back), or of a container that is not opted in, and any update but a
stopped quarantined container's restart policy to "no"."""

from __future__ import annotations

import copy
import http.client
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import pytest

from receiver.executor.base import ExecutorError
from receiver.executor.docker_executor import DockerExecutor
from receiver.executor.docker_rollback import plan_create
from tests.harness.procs import LOOPBACK
from tests.harness.rollback_images import APP_CMD, build_app_images
from tests.harness.socket_proxy import SocketProxy, start_socket_proxy

V = "/v1.41"
LABELS = {"autofix.enable": "true"}
STAMP = "20261207T010203Z"


@pytest.fixture(scope="module")
def images(private_dockerd: Any) -> tuple[str, str]:
    return build_app_images(private_dockerd.client())


@pytest.fixture(scope="module")
def proxy(private_dockerd: Any, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[SocketProxy]:
    proxy = start_socket_proxy("receiver.cfg", private_dockerd.sock,
                               tmp_path_factory.mktemp("rollback-proxy"))
    yield proxy
    proxy.stop()


@pytest.fixture
def client(private_dockerd: Any) -> Iterator[docker.DockerClient]:
    client = private_dockerd.client()
    yield client
    for container in client.containers.list(all=True, filters={"name": "rbp-"}):
        container.remove(force=True)


def call(port: int, method: str, path: str, body: Any = None) -> int:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=30)
    try:
        data = json.dumps(body) if isinstance(body, dict) else body
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def run_v2(client: docker.DockerClient, name: str, images: tuple[str, str], tmp_path: Path,
           labels: dict[str, str] | None = None) -> Any:
    return client.containers.run(
        images[1], name=name, labels=LABELS if labels is None else labels,
        environment={"GREETING": "hi"}, network_mode="host", detach=True,
        restart_policy={"Name": "unless-stopped"},
        volumes={str(tmp_path): {"bind": "/bind", "mode": "rw"},
                 f"{name}-data": {"bind": "/data", "mode": "rw"}})


def test_a_rollback_goes_through_the_proxy_with_nothing_refused(
        client: docker.DockerClient, images: tuple[str, str], proxy: SocketProxy,
        tmp_path: Path) -> None:
    failing = run_v2(client, "rbp-app", images, tmp_path)
    seen = len(proxy.log())
    executor = DockerExecutor(proxy.docker_host, 30, own_ids=frozenset())
    now = datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC)
    result = executor.rollback_image("rbp-app", images[0], now, 1)
    assert [line for line in proxy.log()[seen:].splitlines() if " 403 " in line] == []
    assert result.quarantined_as == f"rbp-app.autofix-quarantine-{STAMP}"
    rolled = client.api.inspect_container("rbp-app")
    assert (rolled["Image"], rolled["State"]["Running"]) == (images[0], True)
    assert rolled["HostConfig"]["Binds"] == failing.attrs["HostConfig"]["Binds"]
    kept = client.api.inspect_container(failing.id)
    assert (kept["State"]["Status"], kept["HostConfig"]["RestartPolicy"]["Name"]) == (
        "exited", "no")
    assert result.note == "its restart policy set to no"
    # A new container that fails to start (its command needs v2's `env`) is set aside and
    # the original gets its name back and runs, through the proxy too.
    back = client.containers.run(images[1], ["env", "sh", "-c", APP_CMD], name="rbp-back",
                                 labels=LABELS, network_mode="host", detach=True)
    seen = len(proxy.log())
    with pytest.raises(ExecutorError, match="is named rbp-back again, running") as raised:
        executor.rollback_image("rbp-back", images[0], now, 1)
    assert f"found now: rbp-back is the original container {back.id[:12]} (running" in str(
        raised.value)
    start_failed = [line for line in proxy.log()[seen:].splitlines() if " 403 " in line]
    assert start_failed == []
    state = client.api.inspect_container("rbp-back")
    assert (state["Id"], state["State"]["Running"]) == (back.id, True)


def test_the_proxy_refuses_every_create_and_rename_a_rollback_does_not_make(
        client: docker.DockerClient, images: tuple[str, str], proxy: SocketProxy,
        tmp_path: Path) -> None:
    port = proxy.port
    app = run_v2(client, "rbp-q", images, tmp_path)
    plain = run_v2(client, "rbp-plain", images, tmp_path, labels={})
    live = run_v2(client, "rbp-live", images, tmp_path)
    # What the executor would send for rbp-q (planned before it is set aside, as it does).
    body = plan_create(client.api.inspect_container(app.id),
                       client.api.inspect_image(images[1]), images[0], lambda _: True)
    # Renames: only to its own quarantine name (and back), opted-in containers, by id.
    rename = f"{V}/containers/{app.id}/rename?name="
    refused_renames = [
        rename + "rbp-evil", rename + "rbp-q.autofix-quarantine-yesterday",
        rename + f"rbp-other.autofix-quarantine-{STAMP}",
        rename + f"rbp-q.autofix-quarantine-{STAMP}&name=rbp-evil",
        f"{V}/containers/{plain.id}/rename?name=rbp-plain.autofix-quarantine-{STAMP}",
        f"{V}/containers/rbp-q/rename?name=rbp-q.autofix-quarantine-{STAMP}",
        f"/v1.23/containers/{app.id}/rename?name=rbp-q.autofix-quarantine-{STAMP}",
    ]
    assert [p for p in refused_renames if call(port, "POST", p) != 403] == []
    assert call(port, "POST", rename + f"rbp-q.autofix-quarantine-{STAMP}", "{}") == 403
    # The live one is quarantined by name while running: no create may replace it.
    client.api.rename(live.id, f"rbp-live.autofix-quarantine-{STAMP}")
    app.stop(timeout=1)
    assert call(port, "POST", rename + f"rbp-q.autofix-quarantine-{STAMP}") == 204
    create = f"{V}/containers/create?name="

    def variant(change: Any) -> dict[str, Any]:
        changed = copy.deepcopy(body)
        change(changed)
        return changed

    text = json.dumps(body)
    refused_creates: list[tuple[str, Any]] = [
        (create + "rbp-q", variant(lambda b: b["HostConfig"].update(Privileged=True))),
        (create + "rbp-q", variant(lambda b: b["HostConfig"]["Binds"].append("/:/host"))),
        (create + "rbp-q", variant(lambda b: b["HostConfig"].update(CapAdd=["SYS_ADMIN"]))),
        (create + "rbp-q", variant(lambda b: b["HostConfig"].update(PidMode="host"))),
        (create + "rbp-q", variant(lambda b: b.update(User="0"))),
        (create + "rbp-q", variant(lambda b: b["Labels"].pop("autofix.enable"))),
        (create + "rbp-q", variant(lambda b: b.update(Image="autofix/rollback-app:v1"))),
        (create + "rbp-q", variant(lambda b: b.update(NetworkingConfig={
            "EndpointsConfig": {"bridge": {}}}))),
        (create + "rbp-q", variant(lambda b: b.update(Privileged=True))),
        (create + "rbp-q", text[:-1] + ', "hostconfig": {"Privileged": true}}'),
        (create + "rbp-q", text.replace('"HostConfig": {', '"HostConfig": {"privileged": true, ')),
        (create + "rbp-q", text.replace('"HostConfig": {', '"HostConfig": {"Privileged": true, '
                                        '"Privileged": false, ')),
        (create + "rbp-q", text[:-1] + ', "Env": ["' + "A" * 17000 + '"]}'),
        (create + "rbp-q", text + " {}"),
        (create + "rbp-q&platform=linux", body),
        (create + "rbp-other", body),       # no quarantined container of that name
        (create + "rbp-plain", body),       # a container, not a quarantined one
        (create + "rbp-live", body),        # quarantined by name, but running
        (create.replace(V, "/v1.23"), body),
    ]
    assert [(p, str(b)[:120]) for p, b in refused_creates if call(port, "POST", p, b) != 403] \
        == []
    names = {c.name for c in client.containers.list(all=True, filters={"name": "rbp-"})}
    assert names == {f"rbp-q.autofix-quarantine-{STAMP}", "rbp-plain",
                     f"rbp-live.autofix-quarantine-{STAMP}"}
    # The quarantined container's own configuration on the previous image goes through,
    # and the name goes back the other way too.
    assert call(port, "GET", f"{V}/images/{images[0]}/json") == 200
    assert call(port, "GET", f"{V}/images/autofix/rollback-app:v1/json") == 403
    assert call(port, "POST", create + "rbp-q", body) == 201
    # The one update: a stopped, opted-in quarantined container's restart policy to "no",
    # that body exactly, by id; nothing else, nor of any other container.
    no = {"RestartPolicy": {"Name": "no"}}
    update = f"{V}/containers/{app.id}/update"
    bare = client.containers.create(images[0], name=f"rbp-bare.autofix-quarantine-{STAMP}",
                                    network_mode="host")  # quarantined by name, not opted in
    refused_updates: list[tuple[str, Any]] = [
        (update, {"RestartPolicy": {"Name": "always"}}),
        (update, {"RestartPolicy": {"Name": "no"}, "Memory": 0}),
        (update, {"Memory": 0}),
        (update, '{"RestartPolicy": {"Name": "no"}} '),
        (update, '{"RestartPolicy":{"Name":"no"}}'),
        (update, None),
        (update + "?x=1", no),
        (f"{V}/containers/rbp-q.autofix-quarantine-{STAMP}/update", no),  # by name
        (f"{V}/containers/{plain.id}/update", no),       # not quarantined, not opted in
        (f"{V}/containers/{bare.id}/update", no),
        (f"{V}/containers/{live.id}/update", no),        # quarantined by name, but running
        (f"{V}/containers/{client.containers.get('rbp-q').id}/update", no),  # the new one
        (f"/v1.23/containers/{app.id}/update", no),
    ]
    assert [(p, b) for p, b in refused_updates if call(port, "POST", p, b) != 403] == []
    assert call(port, "POST", update, no) == 200
    assert client.api.inspect_container(app.id)["HostConfig"]["RestartPolicy"]["Name"] == "no"
    client.containers.get("rbp-q").remove(force=True)
    assert call(port, "POST", f"{V}/containers/{app.id}/rename?name=rbp-q") == 204
    assert client.api.inspect_container(app.id)["Name"] == "/rbp-q"


def test_the_proxy_refuses_a_create_claiming_another_name_on_the_network(
        client: docker.DockerClient, images: tuple[str, str], proxy: SocketProxy) -> None:
    """Review #31, 8: the create's network aliases must be among the quarantined endpoint's
    own; any other (another service's DNS name, `db`) is refused. The containers are only
    created, never started: no traffic leaves the host."""
    network = client.networks.create("rbp-net", driver="bridge", internal=True)
    try:
        api = client.api
        api.create_container(  # the service whose name a compromised receiver would take
            images[0], name="rbp-db", host_config=api.create_host_config(network_mode="rbp-net"),
            networking_config=api.create_networking_config(
                {"rbp-net": api.create_endpoint_config(aliases=["db"])}))
        made = api.create_container(
            images[1], name="rbp-n", labels=LABELS,
            host_config=api.create_host_config(network_mode="rbp-net"),
            networking_config=api.create_networking_config(
                {"rbp-net": api.create_endpoint_config(aliases=["web-own"])}))
        body = plan_create(api.inspect_container(made["Id"]), api.inspect_image(images[1]),
                           images[0], lambda _: True)
        assert body["NetworkingConfig"] == {"EndpointsConfig": {"rbp-net": {
            "Aliases": ["web-own"]}}}
        api.rename(made["Id"], f"rbp-n.autofix-quarantine-{STAMP}")

        def aliases(names: list[str]) -> dict[str, Any]:
            changed = copy.deepcopy(body)
            changed["NetworkingConfig"]["EndpointsConfig"]["rbp-net"]["Aliases"] = names
            return changed

        create = f"{V}/containers/create?name=rbp-n"
        assert [names for names in (["web-own", "db"], ["db"], ["rbp-db"], [""], [1])
                if call(proxy.port, "POST", create, aliases(names)) != 403] == []
        assert call(proxy.port, "POST", create, aliases([])) == 201
        client.containers.get("rbp-n").remove(force=True)
        assert call(proxy.port, "POST", create, body) == 201
    finally:
        for container in client.containers.list(all=True, filters={"name": "rbp-"}):
            container.remove(force=True)
        network.remove()
