"""A real single-node Swarm for tests, inside its own private dockerd.

    swarm = start_swarm(workdir)      # swarm.dockerd, swarm.client, swarm.url
    swarm.remove_services()           # between tests
    swarm.stop()                      # leave, drop Swarm's networks, stop the daemon

The Swarm listens and advertises on 127.0.0.1 only (a free port), and services run on the
`host` network: no overlay traffic, nothing sent beyond loopback. Its own daemon, not the
session's shared one, so Swarm mode (and its `ingress`/`docker_gwbridge` networks) never
changes what other tests see.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.types

from tests.harness.busybox import FAST_STOP, ensure_busybox_image
from tests.harness.dockerd import Dockerd, start_dockerd
from tests.harness.procs import free_port

__all__ = ["SWARM_NETWORKS", "Swarm", "create_service", "force_update_count", "force_updates",
           "running_ids", "running_tasks", "start_swarm"]

# Created by `swarm init` (ingress) and by the first task (docker_gwbridge).
SWARM_NETWORKS = ("ingress", "docker_gwbridge")


def running_tasks(client: docker.DockerClient, service: str) -> list[dict[str, Any]]:
    """The service's tasks that run and are meant to."""
    return [t for t in client.api.tasks(filters={"service": service,
                                                 "desired-state": "running"})
            if t["Status"]["State"] == "running"]


def force_update_count(client: docker.DockerClient, service: str) -> int:
    """How many forced updates the service has had (`docker service update --force`)."""
    spec = client.api.inspect_service(service)["Spec"]["TaskTemplate"]
    return int(spec.get("ForceUpdate", 0))


@dataclass
class Swarm:
    dockerd: Dockerd
    client: docker.DockerClient
    listen_port: int

    @property
    def url(self) -> str:
        return self.dockerd.url

    def tasks(self, service: str, desired_state: str | None = None) -> list[dict[str, Any]]:
        filters: dict[str, Any] = {"service": service}
        if desired_state:
            filters["desired-state"] = desired_state
        return list(self.client.api.tasks(filters=filters))

    def wait_running(self, service: str, replicas: int = 1, timeout_s: float = 90.0
                     ) -> list[dict[str, Any]]:
        """The service's tasks once `replicas` of them run and are meant to."""
        deadline = time.monotonic() + timeout_s
        while True:
            running = running_tasks(self.client, service)
            if len(running) >= replicas:
                return running
            if time.monotonic() > deadline:
                states = [(t["ID"][:12], t["DesiredState"], t["Status"]["State"],
                           t["Status"].get("Err", "")) for t in self.tasks(service)]
                raise TimeoutError(f"service {service}: {len(running)}/{replicas} running "
                                   f"after {timeout_s:.0f}s; tasks {states}")
            time.sleep(0.25)

    def remove_services(self) -> None:
        for service in self.client.services.list():
            service.remove()
        # Left to Swarm, a removed service's containers stop after about 3 s and are gone
        # after 5.6 s, every test; removed here they are gone at once.
        for container in self.client.api.containers(
                all=True, filters={"label": "com.docker.swarm.service.id"}):
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(container["Id"], force=True)
        # Wait so the next test starts clean (any other container included). The raw
        # list: containers.list() inspects each one, and one removed in between raises
        # NotFound.
        deadline = time.monotonic() + 60
        while self.client.api.containers(all=True) and time.monotonic() < deadline:
            time.sleep(0.25)

    def stop(self) -> None:
        if self.dockerd.proc is None:
            return
        try:
            self.remove_services()
            self.client.swarm.leave(force=True)
            for network in self.client.networks.list(names=list(SWARM_NETWORKS)):
                network.remove()
        finally:
            self.dockerd.remove_all_containers()
            self.dockerd.stop()


def start_swarm(workdir: Path) -> Swarm:
    daemon = start_dockerd(workdir)
    try:
        client = daemon.client()
        port = free_port()
        client.swarm.init(advertise_addr="127.0.0.1", listen_addr=f"127.0.0.1:{port}")
        return Swarm(dockerd=daemon, client=client, listen_port=port)
    except BaseException:
        daemon.stop()
        raise


def create_service(swarm: Any, labelled: bool = True, replicas: int = 1,
                   command: list[str] | None = None, **kwargs: Any) -> Any:
    image = ensure_busybox_image(swarm.client)
    name = f"s-{uuid.uuid4().hex[:8]}"
    service = swarm.client.services.create(
        image, command=command or FAST_STOP, name=name, networks=["host"],
        labels={"autofix.enable": "true"} if labelled else {},
        mode=kwargs.pop("mode", docker.types.ServiceMode("replicated", replicas)), **kwargs)
    return service


def running_ids(swarm: Any, name: str, replicas: int = 1) -> set[str]:
    return {t["ID"] for t in swarm.wait_running(name, replicas)}


def force_updates(swarm: Any, name: str) -> int:
    return force_update_count(swarm.client, name)
