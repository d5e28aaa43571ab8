"""Rolling a container back to a previous image: the same container, recreated.

The create body is built from the failing container's inspect. Its HostConfig is sent as
inspected, verbatim (the socket proxy pins it equal to the quarantined container's). In
Config, a value the container only inherited from its (new) image is left out, so the old
image's own default applies; a value the container set itself is kept:

- Env: the entries (`KEY=value`) not in the new image's Env; Labels: those the new image
  does not carry with the same value, every `autofix.*` label, and the opt-in label
  (AUTOFIX_OPT_IN_LABEL, whatever its name: the opt-in survives);
- Cmd, Entrypoint, Healthcheck, WorkingDir, StopSignal, Shell: kept unless equal to the new
  image's (Cmd is kept too when the Entrypoint is the container's own, as Docker does);
- ExposedPorts: the ports the new image does not expose; User: always kept, as inspected
  (the proxy pins it: a rollback never changes the user a container runs as);
- Hostname: kept unless Docker chose it (the short id; the host's in host/container modes).

A Docker rule the inspect cannot show (a value the user set equal to the image's) reads as
inherited. What cannot be reproduced exactly is refused before anything changes, naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors

from receiver.domain.set_aside import FAILED_SUFFIX, QUARANTINE_SUFFIX, is_set_aside
from receiver.executor.base import ExecutorError, RollbackRefused, RollbackResult
from receiver.executor.docker_api import docker_call

__all__ = ["FAILED_SUFFIX", "QUARANTINE_SUFFIX", "image_id", "plan_create", "rollback"]

_IMAGE_ID = re.compile(r"^(sha256:)?([0-9a-f]{64})$")
_INHERITED = ("Cmd", "Entrypoint", "Healthcheck", "WorkingDir", "StopSignal", "Shell")
_AS_IS = ("User", "Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout",
          "AttachStderr")


def image_id(reference: str) -> str:
    """`sha256:<64 hex>` from either spelling of an image id; RollbackRefused otherwise."""
    found = _IMAGE_ID.match(reference)
    if found is None:
        raise RollbackRefused(f"image {reference!r} is not an image id (sha256:<64 hex>)")
    return f"sha256:{found.group(2)}"


def _refuse_unreproducible(attrs: dict[str, Any], exists: Callable[[str], bool]) -> None:
    host = attrs.get("HostConfig") or {}
    name = attrs.get("Name", "").lstrip("/")
    if is_set_aside(name):
        raise RollbackRefused(f"{name} is itself a container an earlier rollback set aside")
    status = (attrs.get("State") or {}).get("Status")
    if status in ("removing", "dead"):
        raise RollbackRefused(f"State: {name} is {status}")
    if host.get("AutoRemove"):
        raise RollbackRefused("HostConfig.AutoRemove: Docker removes the container when it "
                              "stops, so it cannot be kept aside")
    if host.get("Links"):
        raise RollbackRefused("HostConfig.Links: legacy links cannot be recreated as inspected")
    named = {bind.split(":", 1)[0] for bind in host.get("Binds") or []}
    named |= {mount.get("Source") for mount in host.get("Mounts") or []}
    for mount in attrs.get("Mounts") or []:
        if mount.get("Type") == "volume" and mount.get("Name") not in named:
            raise RollbackRefused(f"Mounts: the anonymous volume at {mount.get('Destination')} "
                                  "cannot be re-attached by a create")
    for field in ("NetworkMode", "PidMode", "IpcMode"):
        mode = str(host.get(field) or "")
        if mode.startswith("container:") and not exists(mode.split(":", 1)[1]):
            raise RollbackRefused(f"HostConfig.{field} {mode}: that container is gone")
    for source in host.get("VolumesFrom") or []:
        if not exists(source.split(":", 1)[0]):
            raise RollbackRefused(f"HostConfig.VolumesFrom {source}: that container is gone")
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    if len(networks) > 1:
        raise RollbackRefused(f"NetworkSettings.Networks: {len(networks)} networks "
                              f"({', '.join(sorted(networks))}); a create joins one")


def _networking(attrs: dict[str, Any]) -> dict[str, Any] | None:
    mode = str((attrs.get("HostConfig") or {}).get("NetworkMode") or "")
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    if mode in ("", "default", "bridge", "host", "none") or mode.startswith("container:"):
        return None
    endpoint = networks.get(mode) or {}
    short = attrs.get("Id", "")[:12]
    config: dict[str, Any] = {"Aliases": [a for a in endpoint.get("Aliases") or []
                                          if a != short]}
    if endpoint.get("IPAMConfig"):
        config["IPAMConfig"] = endpoint["IPAMConfig"]
    return {"EndpointsConfig": {mode: config}}


def plan_create(attrs: dict[str, Any], new_image: dict[str, Any], old_image: str,
                exists: Callable[[str], bool], opt_in_label: str = "autofix.enable"
                ) -> dict[str, Any]:
    """The create body that recreates the inspected container from `old_image` (the rule
    is in the module docstring). RollbackRefused naming what cannot be reproduced."""
    _refuse_unreproducible(attrs, exists)
    config = attrs.get("Config") or {}
    image_config = new_image.get("Config") or {}
    body: dict[str, Any] = {"Image": old_image}
    body.update({key: config[key] for key in _AS_IS if key in config})
    image_env = set(image_config.get("Env") or [])
    body["Env"] = [entry for entry in config.get("Env") or [] if entry not in image_env]
    image_labels = image_config.get("Labels") or {}
    body["Labels"] = {key: value for key, value in (config.get("Labels") or {}).items()
                      if image_labels.get(key) != value or key.startswith("autofix.")
                      or key == opt_in_label}
    for key in _INHERITED:
        if config.get(key) != image_config.get(key):
            body[key] = config.get(key)
    if "Entrypoint" in body and "Cmd" not in body:
        body["Cmd"] = config.get("Cmd")
    exposed: dict[str, Any] = {port: {} for port in config.get("ExposedPorts") or {}
               if port not in (image_config.get("ExposedPorts") or {})}
    if exposed:
        body["ExposedPorts"] = exposed
    host = attrs.get("HostConfig") or {}
    mode = str(host.get("NetworkMode") or "")
    hostname = config.get("Hostname")
    if hostname and hostname != attrs.get("Id", "")[:12] and mode != "host" \
            and not mode.startswith("container:"):
        body["Hostname"] = hostname
    for key in ("Domainname", "MacAddress", "StopTimeout", "NetworkDisabled"):
        if config.get(key):
            body[key] = config[key]
    body["HostConfig"] = host
    networking = _networking(attrs)
    if networking is not None:
        body["NetworkingConfig"] = networking
    return body


class _Steps:
    """The calls, each naming the docker command it stands for."""

    def __init__(self, api: docker.APIClient) -> None:
        self.api = api

    def exists(self, container: str) -> bool:
        try:
            self.api.inspect_container(container)
        except docker.errors.NotFound:
            return False
        return True

    def sharing(self, attrs: dict[str, Any]) -> list[str]:
        """Who joins the container's network, PID or IPC namespace or takes its volumes
        (`container:<id or name>`, VolumesFrom): a recreate would cut them off. One list;
        the list shows only NetworkMode, so each other container is inspected for the rest."""
        own_id, name = str(attrs.get("Id", "")), str(attrs.get("Name", "")).lstrip("/")

        def is_it(ref: str) -> bool:
            ref = ref.split(":", 1)[0].lstrip("/")
            return bool(ref) and (ref == name or (len(ref) >= 12 and own_id.startswith(ref)))

        listed = docker_call("docker ps -a", self.api.containers, all=True)
        found: list[str] = []
        for row in listed:
            other = str(row.get("Id", ""))
            if other == own_id:
                continue
            label = next(iter(row.get("Names") or []), other[:12]).lstrip("/")
            mode = str((row.get("HostConfig") or {}).get("NetworkMode") or "")
            uses = [f"network {mode}"] if mode.startswith("container:") \
                and is_it(mode.split(":", 1)[1]) else []
            try:
                host = self.api.inspect_container(other).get("HostConfig") or {}
            except docker.errors.NotFound:
                continue  # removed since the list
            except (docker.errors.APIError, docker.errors.DockerException) as exc:
                raise ExecutorError(f"docker inspect {label}: {exc}") from exc
            for field, kind in (("PidMode", "pid"), ("IpcMode", "ipc")):
                value = str(host.get(field) or "")
                if value.startswith("container:") and is_it(value.split(":", 1)[1]):
                    uses.append(f"{kind} {value}")
            uses += [f"volumes_from {source}" for source in host.get("VolumesFrom") or []
                     if is_it(source)]
            if uses:
                found.append(f"{label} ({', '.join(uses)})")
        return found

    def image(self, ref: str, role: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = self.api.inspect_image(ref)
        except docker.errors.NotFound as exc:
            raise RollbackRefused(f"{role} image {ref} is no longer present") from exc
        except (docker.errors.APIError, docker.errors.DockerException) as exc:
            raise ExecutorError(f"docker image inspect {ref}: {exc}") from exc
        return found

    def create(self, name: str, body: dict[str, Any]) -> str:
        api = self.api
        created = docker_call(f"docker create --name {name}", lambda: api._result(
            api._post_json(api._url("/containers/create"), data=body, params={"name": name}),
            True))
        return str(created["Id"])

    def rename(self, container: str, name: str) -> None:
        docker_call(f"docker rename {container} {name}", self.api.rename, container, name)

    def stop(self, container: str, timeout_s: float) -> None:
        docker_call(f"docker stop {container}", self.api.stop, container, timeout=int(timeout_s))

    def start(self, container: str) -> None:
        docker_call(f"docker start {container}", self.api.start, container)

    def no_restart(self, container: str) -> None:
        """`docker update --restart no`: this body exactly (the socket proxy pins it)."""
        api = self.api
        docker_call(f"docker update --restart no {container}", lambda: api._result(
            api._post_json(api._url("/containers/{0}/update", container),
                           data={"RestartPolicy": {"Name": "no"}}), True))


def rollback(api: docker.APIClient, target: str, image: str, now: datetime,
             stop_timeout_s: float, opt_in_label: str = "autofix.enable") -> RollbackResult:
    steps = _Steps(api)
    attrs: dict[str, Any] = docker_call(f"docker inspect {target}", api.inspect_container,
                                        target)
    name, old_id = attrs.get("Name", "").lstrip("/"), str(attrs.get("Id", ""))
    wanted = image_id(image)
    if attrs.get("Image") == wanted:
        raise RollbackRefused(f"{name} already runs image {wanted}")
    steps.image(wanted, "previous")
    body = plan_create(attrs, steps.image(str(attrs.get("Image")), "current"), wanted,
                       steps.exists, opt_in_label)
    shared = steps.sharing(attrs)
    if shared:
        raise RollbackRefused(
            f"other containers share {name}'s namespaces or volumes: {'; '.join(shared)}; "
            f"a recreated {name} would cut them off, so they must be recreated with it "
            f"(by hand, or by the deploy)")
    state = attrs.get("State") or {}
    was_running = bool(state.get("Running") or state.get("Restarting"))
    # A naive clock is taken as UTC (astimezone would read it as local time).
    stamp = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC).strftime(
        "%Y%m%dT%H%M%SZ")
    quarantine = f"{name}{QUARANTINE_SUFFIX}{stamp}"
    try:
        steps.stop(old_id, stop_timeout_s)
    except ExecutorError as exc:
        raise ExecutorError(f"rollback of {name} failed at the stop: {exc}; "
                            + _found(steps, name, old_id)) from exc
    try:
        steps.rename(old_id, quarantine)
    except ExecutorError as exc:
        raise ExecutorError(f"rollback of {name} failed at the rename: {exc}; "
                            + _put_back(steps, old_id, None, name, was_running)
                            + "; " + _found(steps, name, old_id)) from exc
    try:
        new_id = steps.create(name, body)
    except ExecutorError as exc:  # a client-side timeout may have created it all the same
        raise ExecutorError(f"rollback of {name} failed at the create: {exc}; "
                            + _put_back(steps, old_id, quarantine, name, was_running)
                            + "; " + _found(steps, name, old_id)) from exc
    try:
        steps.start(new_id)
    except ExecutorError as exc:
        failed = f"{name}{FAILED_SUFFIX}{stamp}"
        try:
            steps.rename(new_id, failed)
        except ExecutorError as again:
            raise ExecutorError(
                f"rollback of {name} failed at the start: {exc}; setting the new container "
                f"{new_id[:12]} aside as {failed} failed too ({again}); "
                + _found(steps, name, old_id)) from exc
        raise ExecutorError(
            f"rollback of {name} failed at the start: {exc}; the new container "
            f"{new_id[:12]} was set aside as {failed}; "
            + _put_back(steps, old_id, quarantine, name, was_running)
            + "; " + _found(steps, name, old_id)) from exc
    # Only now: a put-back must return the original with its own policy. Set aside, an
    # `always` one would start again with dockerd and race the new one for its ports.
    try:
        steps.no_restart(old_id)
        note = "its restart policy set to no"
    except ExecutorError as exc:
        note = (f"its restart policy could not be set to no ({exc}): it may start again "
                f"when dockerd restarts")
    return RollbackResult(name=name, new_id=new_id, quarantined_as=quarantine,
                          quarantined_id=old_id, image=wanted, note=note)


def _put_back(steps: _Steps, old_id: str, quarantine: str | None, name: str,
              was_running: bool) -> str:
    """Give the original container its name (and its run) back; what was tried (`_found`
    says what is there)."""
    short = old_id[:12]
    if quarantine is not None:
        try:
            steps.rename(old_id, name)
        except ExecutorError as exc:
            return f"giving the original container {short} its name back failed ({exc})"
    if not was_running:
        return f"put back: the original container {short} is named {name} again, stopped"
    try:
        steps.start(old_id)
    except ExecutorError as exc:
        return (f"put back: the original container {short} is named {name} again but "
                f"did not start ({exc})")
    return f"put back: the original container {short} is named {name} again, running"


def _found(steps: _Steps, name: str, old_id: str) -> str:
    """What is there now, inspected after the failure: who holds the name, and where and
    in which state the original container is (a message must never guess)."""
    parts = []
    for ref, role in ((name, "name"), (old_id, "original")):
        try:
            attrs: dict[str, Any] = steps.api.inspect_container(ref) or {}
        except docker.errors.NotFound:
            parts.append(f"the name {name} is free" if role == "name"
                         else f"the original container {old_id[:12]} is gone")
            continue
        except (docker.errors.APIError, docker.errors.DockerException) as exc:
            parts.append(f"{ref[:64]} could not be inspected ({exc})")
            continue
        held, now_named = str(attrs.get("Id", "")), str(attrs.get("Name", "")).lstrip("/")
        status = (attrs.get("State") or {}).get("Status", "unknown")
        if role == "name":
            who = "the original container" if held == old_id else "container"
            parts.append(f"{name} is {who} {held[:12]} ({status}, image "
                         f"{str(attrs.get('Image', ''))[:19]})")
        elif now_named != name:
            parts.append(f"the original container {old_id[:12]} is named {now_named} "
                         f"({status})")
    return "found now: " + "; ".join(parts)
