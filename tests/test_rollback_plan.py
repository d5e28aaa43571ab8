"""rollback_image's pure edges: which of an inspected container's settings are its own
(kept) and which it only inherited from the new image (left to the old image's defaults),
what cannot be reproduced (refused by name), the params' image id, and the action's
reasons over the in-memory executor and the Swarm backend (no daemon needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from receiver.actions.docker_actions import RollbackImageParams, rollback_image
from receiver.actions.registry import ActionContext, ActionFailed, IncidentView
from receiver.config.settings import Settings
from receiver.executor.base import RollbackRefused
from receiver.executor.docker_rollback import image_id, plan_create
from receiver.executor.swarm_executor import SwarmExecutor
from tests.harness.memory_executor import MemoryExecutor

OLD = "sha256:" + "a" * 64
CID = "c" * 64
NOW = datetime(2026, 12, 7, 2, 0, 0, tzinfo=UTC)
NEW_IMAGE = {"Config": {"Env": ["PATH=/bin", "V=2"], "Cmd": ["serve"], "WorkingDir": "/app",
                        "Labels": {"version": "2"}, "Healthcheck": {"Test": ["CMD", "ok"]},
                        "ExposedPorts": {"80/tcp": {}}}}


def container(**changes: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "Id": CID, "Name": "/app", "Image": "sha256:" + "b" * 64, "State": {"Running": True},
        "Config": {"Hostname": CID[:12], "User": "app", "Env": ["PATH=/bin", "V=2", "MINE=1"],
                   "Cmd": ["serve"], "WorkingDir": "/app", "Healthcheck": {"Test": ["CMD", "ok"]},
                   "Labels": {"version": "2", "team": "x", "autofix.enable": "true"},
                   "ExposedPorts": {"80/tcp": {}, "9000/tcp": {}}, "Tty": False},
        "HostConfig": {"Binds": ["/srv:/srv", "data:/data"], "NetworkMode": "host",
                       "RestartPolicy": {"Name": "always"}},
        "Mounts": [{"Type": "bind", "Destination": "/srv"},
                   {"Type": "volume", "Name": "data", "Destination": "/data"}],
        "NetworkSettings": {"Networks": {"host": {}}}}
    for path, value in changes.items():
        where = attrs
        *parents, last = path.split("__")
        for key in parents:
            where = where[key]
        where[last] = value
    return attrs


def test_the_containers_own_settings_are_kept_and_the_new_images_left_out() -> None:
    body = plan_create(container(), NEW_IMAGE, OLD, lambda _: True)
    assert body == {
        "Image": OLD, "User": "app", "Tty": False, "Env": ["MINE=1"],
        "Labels": {"team": "x", "autofix.enable": "true"},
        "ExposedPorts": {"9000/tcp": {}}, "HostConfig": container()["HostConfig"]}


def test_a_custom_opt_in_label_is_always_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review #31, 11: AUTOFIX_OPT_IN_LABEL=heal, set by the new image itself (a Dockerfile
    LABEL): read as inherited, it was left out and the rolled-back container lost its
    opt-in. Whatever its name, it is kept; the executor passes its own label in."""
    from receiver.executor import docker_rollback
    from receiver.executor.docker_executor import DockerExecutor

    labelled = {"Config": {**NEW_IMAGE["Config"], "Labels": {"version": "2", "heal": "true"}}}
    own = container(Config__Labels={"version": "2", "heal": "true", "team": "x"})
    assert plan_create(own, labelled, OLD, lambda _: True)["Labels"] == {"team": "x"}
    assert plan_create(own, labelled, OLD, lambda _: True, "heal")["Labels"] == {
        "team": "x", "heal": "true"}
    seen: dict[str, Any] = {}
    monkeypatch.setattr(docker_rollback, "rollback",
                        lambda *args, **kwargs: seen.update(kwargs))
    executor = DockerExecutor("unix:///nonexistent.sock", 1, opt_in_label="heal")
    monkeypatch.setattr(executor, "_docker", lambda: type("C", (), {"api": None})())
    executor.rollback_image("app", OLD, NOW)
    assert seen == {"opt_in_label": "heal"}


def test_a_setting_the_container_changed_is_kept() -> None:
    own = container(Config__Cmd=["serve", "--debug"], Config__WorkingDir="/srv",
                    Config__Entrypoint=["tini"], Config__Env=["V=3"])
    body = plan_create(own, NEW_IMAGE, OLD, lambda _: True)
    assert (body["Cmd"], body["WorkingDir"], body["Entrypoint"], body["Env"]) == (
        ["serve", "--debug"], "/srv", ["tini"], ["V=3"])
    # Docker's rule: an own Entrypoint resets the image's Cmd, so Cmd goes with it.
    assert plan_create(container(Config__Entrypoint=["tini"]), NEW_IMAGE, OLD,
                       lambda _: True)["Cmd"] == ["serve"]


def test_a_user_network_keeps_its_aliases_and_address_but_not_the_short_id() -> None:
    networked = container(HostConfig__NetworkMode="web", NetworkSettings__Networks={"web": {
        "Aliases": ["app", CID[:12]], "IPAMConfig": {"IPv4Address": "10.0.0.5"}}},
        Config__Hostname="app-host")
    body = plan_create(networked, NEW_IMAGE, OLD, lambda _: True)
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"web": {
        "Aliases": ["app"], "IPAMConfig": {"IPv4Address": "10.0.0.5"}}}}
    assert body["Hostname"] == "app-host"


@pytest.mark.parametrize(("changes", "named"), [
    ({"HostConfig__AutoRemove": True}, "HostConfig.AutoRemove"),
    ({"HostConfig__Links": ["/db:/app/db"]}, "HostConfig.Links"),
    ({"Mounts": [{"Type": "volume", "Name": "f" * 64, "Destination": "/cache"}]},
     "anonymous volume at /cache"),
    ({"HostConfig__NetworkMode": "container:gone"}, "HostConfig.NetworkMode container:gone"),
    ({"HostConfig__PidMode": "container:gone"}, "HostConfig.PidMode container:gone"),
    ({"HostConfig__VolumesFrom": ["gone:ro"]}, "HostConfig.VolumesFrom gone:ro"),
    ({"NetworkSettings__Networks": {"a": {}, "b": {}}}, "NetworkSettings.Networks: 2"),
    ({"Name": "/app.autofix-quarantine-20261207T000000Z"}, "earlier rollback set aside"),
    ({"State": {"Status": "dead"}}, "State: app is dead"),
])
def test_what_cannot_be_reproduced_is_refused_by_name(changes: dict[str, Any],
                                                     named: str) -> None:
    with pytest.raises(RollbackRefused) as refused:
        plan_create(container(**changes), NEW_IMAGE, OLD, lambda ref: ref != "gone")
    assert named in str(refused.value)


def test_an_image_is_named_by_its_id_only() -> None:
    assert image_id("a" * 64) == image_id(OLD) == OLD
    for bad in ("app:v1", "sha256:" + "A" * 64, "a" * 63, "sha512:" + "a" * 64):
        with pytest.raises(RollbackRefused):
            image_id(bad)
        with pytest.raises(ValidationError):
            RollbackImageParams(image=bad)


def context(executor: Any, target: str) -> ActionContext:
    return ActionContext(target=target, playbook="p", run_id=1,
                         incident=IncidentView(1, "A", {}, {}, NOW), executor=executor,
                         settings=Settings(), escalate=lambda _: None,
                         notify=lambda *_: None, now=lambda: NOW)


def test_the_action_reports_the_quarantined_container_and_refusals_by_reason() -> None:
    memory = MemoryExecutor(clock=lambda: NOW)
    memory.add("app")
    detail = rollback_image(context(memory, "app"), RollbackImageParams(image=OLD))
    assert detail is not None and OLD in detail
    assert "app.autofix-quarantine-20261207T020000Z" in detail
    assert memory.inspect("app.autofix-quarantine-20261207T020000Z").status == "exited"
    memory.images = {OLD}
    with pytest.raises(ActionFailed) as refused:
        rollback_image(context(memory, "app"), RollbackImageParams(image="d" * 64))
    assert refused.value.reason == "rollback_refused"
    assert "previous image sha256:ddd" in str(refused.value)
    swarm = SwarmExecutor("tcp://127.0.0.1:9", 1, 1)
    with pytest.raises(ActionFailed, match="rolls back with the `rollback` action"):
        rollback_image(context(swarm, "svc"), RollbackImageParams(image=OLD))
