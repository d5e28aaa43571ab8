"""rollback_image against a real private dockerd: `app` recreated from v2 is rolled back to
v1 under its own name with its own settings (labels, env, bind, named volume, restart
policy, health check), the failing one stopped and kept as app.autofix-quarantine-<UTC>;
refusals (the previous image gone, a setting that cannot be reproduced) change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import pytest

from receiver.actions.docker_actions import RollbackImageParams, rollback_image
from receiver.actions.registry import ActionContext, ActionFailed, IncidentView
from receiver.config.settings import Settings
from receiver.executor.base import ExecutorError, RollbackRefused
from receiver.executor.docker_executor import DockerExecutor
from tests.harness.rollback_images import APP_CMD, build_app_images

NOW = datetime(2026, 12, 7, 2, 30, 5, tzinfo=UTC)
HEALTH = {"Test": ["CMD", "true"], "Interval": 2_000_000_000, "Retries": 3}


@pytest.fixture(scope="module")
def images(private_dockerd: Any) -> tuple[str, str]:
    return build_app_images(private_dockerd.client())


@pytest.fixture
def client(private_dockerd: Any) -> Iterator[docker.DockerClient]:
    client = private_dockerd.client()
    yield client
    for container in client.containers.list(all=True, filters={"name": "rb-"}):
        container.remove(force=True)


def app_settings(bind: Path, volume: str) -> dict[str, Any]:
    return {"labels": {"autofix.enable": "true", "team": "payments"},
            "environment": {"GREETING": "hi there", "APP_VERSION": "pinned"},
            "volumes": {str(bind): {"bind": "/bind", "mode": "rw"},
                        volume: {"bind": "/data", "mode": "rw"}},
            "restart_policy": {"Name": "unless-stopped"}, "healthcheck": HEALTH,
            "network_mode": "host", "detach": True}


def deploy_v2(client: docker.DockerClient, name: str, images: tuple[str, str],
              tmp_path: Path) -> Any:
    """`name` from v1, then recreated from v2 the way a deploy does (remove, create)."""
    settings = app_settings(tmp_path, f"{name}-data")
    client.containers.run(images[0], name=name, **settings).remove(force=True)
    return client.containers.run(images[1], name=name, **settings)


def own_view(attrs: dict[str, Any]) -> dict[str, Any]:
    config, host = attrs["Config"], attrs["HostConfig"]
    return {"labels": {k: v for k, v in config["Labels"].items() if k != "app.version"},
            "env": sorted(e for e in config["Env"] if e.startswith(("GREETING", "APP_V"))),
            "binds": host["Binds"], "restart": host["RestartPolicy"],
            "health": config["Healthcheck"], "network": host["NetworkMode"],
            "mounts": sorted((m["Type"], m["Destination"]) for m in attrs["Mounts"])}


def test_a_container_recreated_from_a_new_image_rolls_back_to_the_previous_one(
        client: docker.DockerClient, private_dockerd: Any, images: tuple[str, str],
        tmp_path: Path) -> None:
    v1, v2 = images
    failing = deploy_v2(client, "rb-app", images, tmp_path)
    before = own_view(client.api.inspect_container(failing.id))
    result = DockerExecutor(private_dockerd.url, 30).rollback_image("rb-app", v1, NOW, 1)
    assert result.name == "rb-app" and result.image == v1
    assert (result.quarantined_as, result.quarantined_id) == (
        "rb-app.autofix-quarantine-20261207T023005Z", failing.id)
    now = client.api.inspect_container("rb-app")
    assert (now["Id"], now["Image"], now["State"]["Running"]) == (result.new_id, v1, True)
    assert own_view(now) == before
    # What only the new image set is gone; the old image's own defaults apply again.
    assert now["Config"]["Labels"]["app.version"] == "v1"
    assert "ONLY_V2=1" not in now["Config"]["Env"] and now["Config"]["WorkingDir"] == ""
    assert "APP_VERSION=pinned" in now["Config"]["Env"]  # the container's own value wins
    assert client.containers.get("rb-app").exec_run(["cat", "/version"]).output == b"v1"
    kept = client.api.inspect_container(result.quarantined_as)
    assert (kept["Id"], kept["Image"], kept["State"]["Status"]) == (failing.id, v2, "exited")
    # Set aside for good: a daemon restart must not start it beside the rolled-back one
    # (review #31, 4); the new one keeps the container's own policy.
    assert kept["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert now["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert result.note == "its restart policy set to no"


def test_the_action_names_the_quarantined_container_and_the_image(
        client: docker.DockerClient, private_dockerd: Any, images: tuple[str, str],
        tmp_path: Path) -> None:
    v1, _ = images
    failing = deploy_v2(client, "rb-act", images, tmp_path)
    executor = DockerExecutor(private_dockerd.url, 30)
    ctx = ActionContext(target="rb-act", playbook="p", run_id=1,
                        incident=IncidentView(1, "A", {}, {}, NOW), executor=executor,
                        settings=Settings(), escalate=lambda _: None,
                        notify=lambda *_: None, now=lambda: NOW)
    detail = rollback_image(ctx, RollbackImageParams(image=v1.removeprefix("sha256:"),
                                                     timeout_s=1))
    assert detail is not None
    assert "rb-act.autofix-quarantine-20261207T023005Z" in detail and v1 in detail
    assert detail.endswith("its restart policy set to no"), detail
    assert client.api.inspect_container("rb-act")["Image"] == v1
    assert client.api.inspect_container(failing.id)["Name"] == (
        "/rb-act.autofix-quarantine-20261207T023005Z")
    # Rolled back already: the same image again is refused, and nothing changes.
    with pytest.raises(ActionFailed) as refused:
        rollback_image(ctx, RollbackImageParams(image=v1))
    assert refused.value.reason == "rollback_refused" and "already runs" in str(refused.value)


def test_a_previous_image_no_longer_present_is_refused_and_nothing_changes(
        client: docker.DockerClient, private_dockerd: Any, images: tuple[str, str],
        tmp_path: Path) -> None:
    failing = deploy_v2(client, "rb-gone", images, tmp_path)
    # An image that was the previous one, then removed (as an image prune would).
    scratch = client.containers.create(images[0], name="rb-scratch", network_mode="host")
    missing = client.api.commit(scratch.id, repository="autofix/rollback-app", tag="v0")["Id"]
    scratch.remove()
    client.images.remove(missing)
    with pytest.raises(RollbackRefused, match=f"previous image {missing} is no longer present"):
        DockerExecutor(private_dockerd.url, 30).rollback_image("rb-gone", missing, NOW, 1)
    state = client.api.inspect_container("rb-gone")
    assert (state["Id"], state["State"]["Running"]) == (failing.id, True)


def test_a_setting_that_cannot_be_reproduced_is_refused_by_name_and_nothing_changes(
        client: docker.DockerClient, private_dockerd: Any, images: tuple[str, str]) -> None:
    v1, v2 = images
    auto = client.containers.run(v2, name="rb-auto", auto_remove=True, network_mode="host",
                                 labels={"autofix.enable": "true"}, detach=True)
    with pytest.raises(RollbackRefused, match=r"HostConfig\.AutoRemove"):
        DockerExecutor(private_dockerd.url, 30).rollback_image("rb-auto", v1, NOW, 1)
    anonymous = client.containers.run(v2, name="rb-anon", volumes=["/scratch"],
                                      network_mode="host", detach=True)
    with pytest.raises(RollbackRefused, match="anonymous volume at /scratch"):
        DockerExecutor(private_dockerd.url, 30).rollback_image("rb-anon", v1, NOW, 1)
    for container in (auto, anonymous):
        state = client.api.inspect_container(container.id)
        assert (state["Name"].lstrip("/"), state["State"]["Running"]) == (container.name, True)
    assert not client.containers.list(all=True, filters={"name": "autofix-quarantine"})


def test_a_rollback_whose_new_container_does_not_start_puts_the_original_back(
        client: docker.DockerClient, private_dockerd: Any, images: tuple[str, str]) -> None:
    """Its own command needs `env`, which only v2 has: the v1 container is created and
    fails to start; it is set aside and the original runs again under its name."""
    v1, _ = images
    failing = client.containers.run(images[1], ["env", "sh", "-c", APP_CMD], name="rb-back",
                                    labels={"autofix.enable": "true"}, network_mode="host",
                                    detach=True)
    with pytest.raises(ExecutorError) as failed:
        DockerExecutor(private_dockerd.url, 30).rollback_image("rb-back", v1, NOW, 1)
    assert not isinstance(failed.value, RollbackRefused)
    aside = "rb-back.autofix-rollback-failed-20261207T023005Z"
    assert f"set aside as {aside};" in str(failed.value)
    assert f"{failing.id[:12]} is named rb-back again, running" in str(failed.value)
    state = client.api.inspect_container("rb-back")
    assert (state["Id"], state["State"]["Running"]) == (failing.id, True)
    assert client.api.inspect_container(aside)["Image"] == v1


def test_a_container_others_share_is_refused_naming_them_and_nothing_changes(
        client: docker.DockerClient, private_dockerd: Any, images: tuple[str, str],
        tmp_path: Path) -> None:
    """Review #31, 5: sidecars in its network, PID or IPC namespace, or taking its volumes,
    would be cut off by a recreate (they point at the old container): refused, named."""
    v1, _ = images
    failing = deploy_v2(client, "rb-shared", images, tmp_path)
    sidecars = {
        "rb-net": {"network_mode": f"container:{failing.id}"},
        "rb-pid": {"network_mode": "host", "pid_mode": "container:rb-shared"},
        "rb-vol": {"network_mode": "host", "volumes_from": ["rb-shared:ro"]},
    }
    for sidecar, how in sidecars.items():
        client.containers.run(v1, ["sleep", "600"], name=sidecar, detach=True, **how)
    with pytest.raises(RollbackRefused) as refused:
        DockerExecutor(private_dockerd.url, 30).rollback_image("rb-shared", v1, NOW, 1)
    text = str(refused.value)
    assert f"rb-net (network container:{failing.id})" in text, text
    assert "rb-pid (pid container:rb-shared)" in text or (
        f"rb-pid (pid container:{failing.id})" in text), text
    assert "rb-vol (volumes_from rb-shared:ro)" in text, text
    state = client.api.inspect_container("rb-shared")
    assert (state["Id"], state["State"]["Running"]) == (failing.id, True)
    assert not client.containers.list(all=True, filters={"name": "autofix-quarantine"})
    # Without them it goes through.
    for sidecar in sidecars:
        client.containers.get(sidecar).remove(force=True)
    result = DockerExecutor(private_dockerd.url, 30).rollback_image("rb-shared", v1, NOW, 1)
    assert client.api.inspect_container("rb-shared")["Id"] == result.new_id


def test_a_failure_reports_what_is_actually_there(
        client: docker.DockerClient, private_dockerd: Any, images: tuple[str, str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review #31, 10: after any failure the name and the original id are inspected again.
    A create that timed out on the client while dockerd made the container: the put-back
    cannot take the name back, and the message says who holds it, not a guess."""
    from receiver.executor import docker_rollback

    v1, v2 = images
    failing = deploy_v2(client, "rb-late", images, tmp_path)
    create = docker_rollback._Steps.create

    def late(self: Any, name: str, body: dict[str, Any]) -> str:
        create(self, name, body)
        raise ExecutorError("docker create --name rb-late: timed out")

    monkeypatch.setattr(docker_rollback._Steps, "create", late)
    with pytest.raises(ExecutorError) as raised:
        DockerExecutor(private_dockerd.url, 30).rollback_image("rb-late", v1, NOW, 1)
    text = str(raised.value)
    made = client.api.inspect_container("rb-late")
    assert made["Id"] != failing.id
    assert "giving the original container" in text, text
    assert f"found now: rb-late is container {made['Id'][:12]} (created, image {v1[:19]})" \
        in text, text
    assert (f"the original container {failing.id[:12]} is named "
            "rb-late.autofix-quarantine-20261207T023005Z (exited)") in text, text
    monkeypatch.undo()

    # A stop that fails: nothing was renamed, and it says so from what it sees.
    stuck = deploy_v2(client, "rb-stuck", images, tmp_path)

    def refused(self: Any, container: str, timeout_s: float) -> None:
        raise ExecutorError("docker stop: 500 Server Error")

    monkeypatch.setattr(docker_rollback._Steps, "stop", refused)
    with pytest.raises(ExecutorError) as raised:
        DockerExecutor(private_dockerd.url, 30).rollback_image("rb-stuck", v1, NOW, 1)
    assert str(raised.value).endswith(
        f"failed at the stop: docker stop: 500 Server Error; found now: rb-stuck is the "
        f"original container {stuck.id[:12]} (running, image {v2[:19]})"), str(raised.value)
