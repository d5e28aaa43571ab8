"""The whole loop, live: PostgreSQL, dockerd, target_app, receiver, Prometheus, Alertmanager.

Every component runs the project's own config files through tests/harness/overrides.py
(addresses, secrets and intervals only). Used by the end-to-end tests, the
time-to-recover benchmark and `make demo`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.types
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from . import overrides
from .alertmanager import Alertmanager
from .dockerd import Dockerd
from .fleet_hosts import FleetHost
from .procs import LOOPBACK, free_port, wait_for
from .prometheus import Prometheus, start_prometheus
from .receiver import Receiver
from .slack_stub import SlackStub
from .swarm import force_update_count, running_tasks


@dataclass
class TargetContainer:
    name: str
    port: int
    container: Any  # docker.models.containers.Container
    host: str | None = None  # the Docker host's name in a fleet (Stack.hosts)

    @property
    def key(self) -> str:
        """What runs and actions name it: `<host>/<name>` in a fleet, else the name."""
        return f"{self.host}/{self.name}" if self.host else self.name

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def fault(self, kind: str, params: dict[str, Any] | None = None) -> int:
        return post_fault(self.url, kind, params)

    def state(self) -> dict[str, Any]:
        self.container.reload()
        return dict(self.container.attrs["State"])


@dataclass
class SwarmTarget:
    """A target_app Swarm service: one task on the host network, on a fixed port."""

    service: str
    port: int
    client: Any  # docker.DockerClient on the Swarm manager

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def fault(self, kind: str, params: dict[str, Any] | None = None) -> int:
        return post_fault(self.url, kind, params)

    def running_task_ids(self) -> set[str]:
        return {t["ID"] for t in running_tasks(self.client, self.service)}

    def force_updates(self) -> int:
        return force_update_count(self.client, self.service)

    def remove(self) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_service(self.service)


def post_fault(url: str, kind: str, params: dict[str, Any] | None = None) -> int:
    request = urllib.request.Request(
        f"{url}/fault/{kind}", data=json.dumps(params or {}).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0  # crash answers by closing the connection


@dataclass
class Stack:
    root: Path
    dockerd: Dockerd
    image: str
    database_url: str
    receiver: Receiver = field(init=False)
    alertmanager: Alertmanager = field(init=False)
    prometheus: Prometheus = field(init=False)
    slack: SlackStub = field(init=False)
    webhook_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    slack_token: str = field(default_factory=lambda: "xoxb-" + secrets.token_hex(12))
    targets: list[TargetContainer] = field(default_factory=list)
    fast: bool = True  # test intervals (overrides.TIME_SCALE); False: the shipped ones
    swarm: bool = False  # dockerd is a Swarm manager: the Swarm backend on, swarm targets
    swarm_targets: list[SwarmTarget] = field(default_factory=list)
    # A fleet (#32): these hosts instead of `dockerd` alone (AUTOFIX_DOCKER_HOSTS, one
    # docker_sd job per host from docs/examples/prometheus-fleet.yml).
    hosts: list[FleetHost] = field(default_factory=list)
    _engine: Engine | None = None
    _steps: dict[str, list[str]] = field(default_factory=dict)

    def start(self, receiver_workers: int = 2, slack_api_url: str | None = None) -> Stack:
        """Start everything; `slack_api_url` points at an outside stub (the demo's)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if slack_api_url is None:
            self.slack = SlackStub().start()
            slack_api_url = self.slack.api_url
        token_file = self.root / "webhook_token"
        token_file.write_text(self.webhook_token)
        playbooks = self.root / "playbooks.yml"
        playbooks.write_text(overrides.playbooks(self.fast))
        prometheus_port = free_port()
        prometheus_url = f"http://{LOOPBACK}:{prometheus_port}"
        docker = ({"AUTOFIX_DOCKER_HOSTS": json.dumps(
            {host.name: host.receiver_entry() for host in self.hosts})} if self.hosts
            else {"AUTOFIX_DOCKER_HOST": self.dockerd.url})
        self.receiver = Receiver(self.database_url, self.root / "receiver", receiver_workers, {
            "AUTOFIX_WEBHOOK_TOKEN": self.webhook_token, "AUTOFIX_API_TOKEN": self.api_token,
            **docker, "AUTOFIX_PLAYBOOKS": str(playbooks),
            "AUTOFIX_PROMETHEUS_URL": prometheus_url,
            "AUTOFIX_SLACK_BOT_TOKEN": self.slack_token, "AUTOFIX_SLACK_CHANNEL": "#autofix",
            "AUTOFIX_SLACK_API_URL": slack_api_url,
            **({"AUTOFIX_SWARM_ENABLED": "true"} if self.swarm else {}),
        })
        self.alertmanager = Alertmanager(self.root / "alertmanager", overrides.alertmanager_config(
            f"{self.receiver.url}/webhook/alertmanager", token_file, self.fast))
        self.alertmanager.start()
        rules = self.root / "alert_rules.yml"
        rules.write_text(yaml.safe_dump(overrides.rules(self.fast), sort_keys=False))
        addresses = (f"{LOOPBACK}:{self.receiver.port}", f"{LOOPBACK}:{self.alertmanager.port}",
                     f"{LOOPBACK}:{prometheus_port}")
        config = (overrides.fleet_prometheus_config(
            {host.name: host.prometheus_entry() for host in self.hosts}, *addresses, self.fast)
            if self.hosts else overrides.prometheus_config(self.dockerd.url, *addresses,
                                                            self.fast))
        self.prometheus = start_prometheus(self.root / "prometheus", config, [rules],
                                           port=prometheus_port)
        self.receiver.start()
        return self

    def stop(self) -> None:
        for swarm_target in self.swarm_targets:
            swarm_target.remove()
        for target in self.targets:
            with contextlib.suppress(docker.errors.DockerException):
                target.container.remove(force=True)
        for part in ("receiver", "prometheus", "alertmanager", "slack"):
            component = getattr(self, part, None)
            if component is not None:
                component.stop()
        if self._engine is not None:
            self._engine.dispose()

    # --- target containers -------------------------------------------------------------
    def run_target(self, *, restart_policy: str | None = None, opt_in: bool = True,
                   startup_delay_s: float = 0.0, self_traffic_rps: float = 10.0,
                   host: str | None = None, name: str | None = None) -> TargetContainer:
        """`host`: on that host of the fleet (its own free port); `name`: the same on
        several hosts."""
        daemon = next(h.dockerd for h in self.hosts if h.name == host) if host else self.dockerd
        client = daemon.client()
        port = free_port()
        name = name or f"app-{uuid.uuid4().hex[:6]}"
        labels = {"autofix.scrape": "true", "autofix.scrape.port": str(port),
                  "autofix.service": "target-app"}
        if opt_in:
            labels["autofix.enable"] = "true"
        container = client.containers.run(
            self.image, name=name, network_mode="host", detach=True, labels=labels,
            environment={"TARGET_APP_BIND": f"{LOOPBACK}:{port}",
                         "TARGET_APP_SELF_TRAFFIC_RPS": str(self_traffic_rps),
                         "TARGET_APP_STARTUP_DELAY_S": str(startup_delay_s)},
            restart_policy={"Name": restart_policy} if restart_policy else None)
        target = TargetContainer(name, port, container, host)
        self.targets.append(target)
        wait_for(lambda: self.up(name, host) == 1.0, 60, f"{target.key} scraped")
        return target

    def run_swarm_target(self, *, opt_in: bool = True) -> SwarmTarget:
        """A target_app service scraped by the `swarm-tasks` job; `opt_in` is the service
        label the Swarm backend requires. No health check: Swarm would replace a hung task
        by itself ~15 s later, and these runs measure autofix, not that race."""
        client = self.dockerd.client()
        port = free_port()
        service = f"svc-{uuid.uuid4().hex[:6]}"
        client.services.create(
            self.image, name=service, networks=["host"],
            labels={"autofix.enable": "true"} if opt_in else {},
            container_labels={"autofix.scrape": "true", "autofix.scrape.port": str(port)},
            env=[f"TARGET_APP_BIND={LOOPBACK}:{port}", "TARGET_APP_SELF_TRAFFIC_RPS=10"],
            healthcheck=docker.types.Healthcheck(test=["NONE"]))
        target = SwarmTarget(service, port, client)
        self.swarm_targets.append(target)
        wait_for(lambda: self.swarm_up(service) == 1.0, 90, f"{service} scraped")
        return target

    def swarm_up(self, service: str) -> float | None:
        result = self.prometheus.query(f'up{{job="swarm-tasks", service="{service}"}}')
        return float(result[0]["value"][1]) if result else None

    # --- observations ------------------------------------------------------------------
    def up(self, container: str, host: str | None = None) -> float | None:
        on = f', host="{host}"' if host else ""
        result = self.prometheus.query(f'up{{job="containers", container="{container}"{on}}}')
        return float(result[0]["value"][1]) if result else None

    def alert_state(self, alertname: str, container: str, host: str | None = None
                    ) -> str | None:
        for alert in self.prometheus.alerts():
            labels = alert["labels"]
            if labels.get("alertname") == alertname and labels.get("container") == container \
                    and (host is None or labels.get("host") == host):
                return str(alert["state"])
        return None

    def sql(self, query: str, **params: Any) -> list[Any]:
        if self._engine is None:
            self._engine = create_engine(self.database_url)
        with self._engine.connect() as conn:
            return list(conn.execute(text(query), params))

    def incidents(self, container: str) -> list[Any]:
        return self.sql("select * from incidents where container = :c order by id",
                        c=container)

    def actions(self, container: str) -> list[Any]:
        return self.sql("select * from actions where target = :c order by id", c=container)

    def playbook_steps(self, playbook: str | None) -> list[str]:
        """Action names of a loaded playbook, from the receiver's API."""
        if not self._steps:
            _, body = self.api("GET", "/api/v1/playbooks")
            for item in body.get("items", []):
                self._steps[item["name"]] = [next(iter(step)) for step in item["actions"]]
        return self._steps.get(playbook or "", [])

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.receiver.url}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {self.api_token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")


def start_stack(root: Path, dockerd: Dockerd, image: str, database_url: str,
                fast: bool = True, swarm: bool = False,
                hosts: list[FleetHost] | None = None) -> Stack:
    """`swarm`: `dockerd` is a Swarm manager (tests/harness/swarm.py); `hosts`: a fleet,
    `image` on each (tests/harness/fleet_hosts.py)."""
    stack = Stack(root=root, dockerd=dockerd, image=image, database_url=database_url,
                  fast=fast, swarm=swarm, hosts=list(hosts or []))
    try:
        return stack.start()
    except BaseException:
        stack.stop()
        raise


def wait(seconds: float) -> None:
    time.sleep(seconds)
