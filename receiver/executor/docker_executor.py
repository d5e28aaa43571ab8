"""Executor over the Docker Engine API (docker SDK), honouring DOCKER_HOST."""

from __future__ import annotations

import os
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
import docker.errors
import requests

from receiver.executor import docker_evidence, docker_rollback
from receiver.executor.base import (
    ContainerImage,
    DependencyCycle,
    Dependent,
    EvidenceLimits,
    EvidenceSource,
    ExecResult,
    ExecutorError,
    RollbackResult,
    TargetAmbiguous,
    TargetIdentity,
    TargetNotFound,
    TargetState,
)
from receiver.executor.docker_api import LazyDockerClient, docker_call
from receiver.executor.docker_graph import dependents_from_list
from receiver.intent.decide import ContainerFacts

__all__ = ["DockerExecutor", "is_valid_container_name", "own_container_ids"]

_ZERO = "0001-01-01T00:00:00Z"
# Docker's own rule for container names; anything else cannot name a container.
_CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")
_HEX = re.compile(r"^[0-9a-f]{1,64}$")


def is_valid_container_name(name: str) -> bool:
    """Docker's name syntax; every ID and ID prefix (lowercase hex) passes it too."""
    return bool(_CONTAINER_NAME.match(name))


def own_container_ids() -> frozenset[str]:
    """Inside Docker the hostname is our container id: never act on ourselves."""
    return frozenset({socket.gethostname()}) if os.path.exists("/.dockerenv") else frozenset()


class DockerExecutor:
    """Targets are containers. Docker resolves a reference as: full ID, then exact name,
    then any unique ID prefix; `resolve` asks Docker itself, so guards see what an action
    would hit."""

    backend = "docker"

    def __init__(self, base_url: str | None, timeout_s: float,
                 own_ids: frozenset[str] | None = None,
                 opt_in_label: str = "autofix.enable", name: str = "local",
                 tls: tuple[str, str, str] | None = None, key_prefix: str = "") -> None:
        # `name`: the host's name in AUTOFIX_DOCKER_HOSTS (`local` for the one host).
        # `key_prefix`: `<name>/` among several hosts, so the image history keys a container
        # name per host, as the guards key a target.
        self.name = name
        self.key_prefix = key_prefix
        self.tls = tls
        self._client = LazyDockerClient(base_url, timeout_s, "Docker", tls)
        self.opt_in_label = opt_in_label  # the evidence says which dependents are opted in
        self.own_ids = own_container_ids() if own_ids is None else own_ids
        self.base_url = base_url
        self.timeout_s = timeout_s
        self._daemon_id: str | None = None

    def events_client(self) -> docker.DockerClient:
        """A client of its own for the events follower (its stream holds a connection)."""
        return LazyDockerClient(self.base_url, self.timeout_s, "Docker", self.tls).get()

    def daemon_id(self) -> str:
        """The events follower's key: the daemon's engine ID (`docker info`), or where the
        socket proxy refuses `info`, the Docker host's URL. A daemon that cannot answer now
        gives the URL for now, not for good: the next call asks again."""
        try:
            return self._engine_id()
        except ExecutorError:
            return self._url_key()

    def host_of(self, identity: TargetIdentity) -> str:
        """Every container of this executor lives on its one daemon. ExecutorError when the
        daemon cannot say which it is now: a key that differed between workers would split
        the host's budgets and storm count."""
        return f"docker:{self._engine_id()}"

    def _engine_id(self) -> str:
        if self._daemon_id is None:
            try:
                self._daemon_id = str(self._docker().info()["ID"])
            except docker.errors.APIError as exc:
                if exc.status_code not in (401, 403, 404):
                    raise ExecutorError(f"docker info: {exc}") from exc
                # A socket proxy that refuses `info` refuses it on every worker: the
                # URL is then this daemon's key everywhere, for good.
                self._daemon_id = self._url_key()
            except (docker.errors.DockerException, requests.RequestException, KeyError) as exc:
                raise ExecutorError(f"docker info: {type(exc).__name__}: {exc}") from exc
        return self._daemon_id

    def _url_key(self) -> str:
        return "url:" + (self.base_url or os.environ.get("DOCKER_HOST")
                         or "unix:///var/run/docker.sock")

    def container_facts(self, target: str) -> ContainerFacts:
        """Inspect, and dockerd's event buffer since the last start (empty when dockerd
        cannot answer: then it tells nothing)."""
        attrs = self._container(target).attrs
        state = attrs.get("State") or {}
        started = _parse_time(state.get("StartedAt"))
        try:
            buffer = docker_call(f"docker events {target}", docker_evidence.container_events,
                                 self._docker().api, attrs.get("Id", ""), started)
        except ExecutorError:
            buffer = []
        return ContainerFacts(
            daemon_id=self.daemon_id(), container_id=attrs.get("Id", ""),
            name=attrs.get("Name", "").lstrip("/"), status=state.get("Status", "unknown"),
            started_at=started, finished_at=_parse_time(state.get("FinishedAt")),
            oom_killed=bool(state.get("OOMKilled")), exit_code=int(state.get("ExitCode", 0)),
            buffer=buffer)

    def _docker(self) -> docker.DockerClient:
        return self._client.get()

    def _container(self, target: str) -> Any:
        try:
            return self._docker().containers.get(target)
        except docker.errors.NotFound as exc:
            raise TargetNotFound(f"container {target!r} not found") from exc
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise ExecutorError(f"docker inspect {target}: {exc}") from exc

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return docker_call(what, fn, *args, **kwargs)

    def ping(self) -> None:
        self._call("docker ping", self._docker().ping)

    def validate_target_syntax(self, target: str) -> bool:
        return is_valid_container_name(target)

    def resolve(self, target: str) -> TargetIdentity:
        try:
            attrs = self._docker().containers.get(target).attrs
        except docker.errors.NotFound as exc:
            raise TargetNotFound(f"no container named {target!r}") from exc
        except (docker.errors.APIError, requests.RequestException) as exc:
            # dockerd refuses a prefix shared by several IDs with a generic error (HTTP 500,
            # "Multiple IDs found"); listing the IDs tells it apart without parsing text.
            matches = self._prefix_matches(target) if _HEX.match(target) else []
            if len(matches) > 1:
                shown = sorted(matches)[:5]
                more = f" and {len(matches) - len(shown)} more" if len(matches) > len(shown) else ""
                raise TargetAmbiguous(f"{target!r} is a prefix of {len(matches)} container "
                                      f"IDs ({', '.join(shown)}{more})") from exc
            raise ExecutorError(f"docker inspect {target}: {exc}") from exc
        return TargetIdentity(name=attrs.get("Name", "").lstrip("/"), id=attrs.get("Id", ""))

    def _prefix_matches(self, prefix: str) -> list[str]:
        try:
            found = self._docker().api.containers(all=True)
        except (docker.errors.APIError, requests.RequestException):
            return []
        return [(row.get("Names") or ["?"])[0].lstrip("/") for row in found
                if str(row.get("Id", "")).startswith(prefix)]

    def refers_to(self, reference: str, identity: TargetIdentity) -> bool:
        """A name, a full ID, or an ID prefix, as Docker would resolve it (a name wins over a
        prefix). A prefix shared by several containers names each of them: protection errs
        on the safe side."""
        reference = reference.strip().lstrip("/")
        if not reference:
            return False
        if reference in (identity.name, identity.id):
            return True
        if not _HEX.match(reference) or not identity.id.startswith(reference):
            return False
        try:
            return self.resolve(reference).id == identity.id
        except TargetAmbiguous:
            return True
        except TargetNotFound:
            return False

    def dependents(self, identity: TargetIdentity) -> list[Dependent]:
        """From one list call (`docker ps -a`): network_mode container: and Compose's
        depends_on labels (receiver/domain/graph.py)."""
        listed = self._call("docker ps -a", self._docker().api.containers, all=True)
        return dependents_from_list(listed, identity.id)

    def is_self(self, identity: TargetIdentity) -> bool:
        # The hostname is the 12-character ID prefix of the container we run in.
        return any(identity.id.startswith(own) for own in self.own_ids if own)

    def already_recovering(self, state: TargetState, incident_starts_at: datetime,
                           lookback: timedelta) -> str | None:
        if state.status == "restarting":
            return f"{state.name} is being restarted by Docker"
        if not state.running or state.started_at is None:
            return None
        if state.started_at > incident_starts_at:
            return (f"{state.name} (re)started at {state.started_at.isoformat()}, after "
                    f"the alert began at {incident_starts_at.isoformat()}")
        # Docker's restart policy acts within ~100 ms of a crash, before Prometheus can
        # even notice, so its restart predates the alert; RestartCount tells it apart.
        if state.restart_count > 0 and state.started_at >= _minus(incident_starts_at, lookback):
            return (f"Docker's restart policy restarted {state.name} at "
                    f"{state.started_at.isoformat()} (restart #{state.restart_count})")
        return None

    def stopped_by_operator(self, state: TargetState) -> str | None:
        if state.running or state.status == "restarting":
            return None
        events = self._call(f"docker events {state.name}", docker_evidence.container_events,
                            self._docker().api, state.id, state.started_at)
        return docker_evidence.operator_stop_reason(events)

    def evidence_sources(self, target: str, limits: EvidenceLimits
                         ) -> dict[str, EvidenceSource]:
        def container() -> Any:
            return self._container(target)

        def operator_stop() -> str | None:
            return self.stopped_by_operator(self.inspect(target))

        return {
            "state": lambda: docker_evidence.state_evidence(container().attrs),
            "logs": lambda: self._call(f"docker logs {target}", docker_evidence.log_tail,
                                       container(), limits),
            "stats": lambda: self._call(f"docker stats {target}",
                                        docker_evidence.stats_sample, container()),
            "events": lambda: self._call(
                f"docker events {target}", docker_evidence.container_events,
                self._docker().api, container().id, None),
            "operator_stop": operator_stop,
            "dependents": lambda: dependents_evidence(self, target),
        }

    def inspect(self, target: str) -> TargetState:
        attrs = self._container(target).attrs
        state = attrs.get("State", {})
        health = state.get("Health") or {}
        config = attrs.get("Config", {})
        return TargetState(
            name=attrs.get("Name", "").lstrip("/"), id=attrs.get("Id", ""),
            status=state.get("Status", "unknown"), labels=dict(config.get("Labels") or {}),
            started_at=_parse_time(state.get("StartedAt")),
            finished_at=_parse_time(state.get("FinishedAt")),
            restart_count=int(attrs.get("RestartCount", 0)),
            health=health.get("Status"),
            restart_policy=(attrs.get("HostConfig", {}).get("RestartPolicy") or {}).get("Name", ""),
            exit_code=int(state.get("ExitCode", 0)),
        )

    def restart(self, target: str, timeout_s: float) -> None:
        container = self._container(target)
        self._call(f"docker restart {target}", container.restart, timeout=int(timeout_s))

    def start(self, target: str) -> None:
        self._call(f"docker start {target}", self._container(target).start)

    def stop(self, target: str, timeout_s: float) -> None:
        self._call(f"docker stop {target}", self._container(target).stop, timeout=int(timeout_s))

    def kill(self, target: str, signal: str) -> None:
        self._call(f"docker kill {target}", self._container(target).kill, signal=signal)

    def inventory(self) -> list[ContainerImage]:
        """Every container, from one `GET /containers/json?all=1` (no inspect each)."""
        rows = self._call("docker ps -a", self._docker().api.containers, all=True)
        found = []
        for row in rows:
            names = row.get("Names") or []
            if not names or not row.get("ImageID"):
                continue
            found.append(ContainerImage(
                name=self.key_prefix + str(names[0]).lstrip("/"),
                container_id=str(row.get("Id", "")),
                image_id=str(row["ImageID"]), image_ref=str(row.get("Image") or ""),
                created_at=datetime.fromtimestamp(int(row.get("Created") or 0), UTC),
                labels={str(k): str(v) for k, v in (row.get("Labels") or {}).items()}))
        return found

    def container_image(self, target: str) -> ContainerImage | None:
        attrs = self._container(target).attrs
        config = attrs.get("Config") or {}
        return ContainerImage(
            name=self.key_prefix + attrs.get("Name", "").lstrip("/"),
            container_id=attrs.get("Id", ""),
            image_id=str(attrs.get("Image") or ""), image_ref=str(config.get("Image") or ""),
            created_at=_parse_time(attrs.get("Created")) or datetime.min.replace(tzinfo=UTC),
            labels=dict(config.get("Labels") or {}))

    def exec(self, target: str, argv: list[str], timeout_s: float) -> ExecResult:
        container = self._container(target)
        pool = ThreadPoolExecutor(max_workers=1)
        future = pool.submit(self._call, f"docker exec {target}", container.exec_run, argv,
                             demux=False)
        try:
            result = future.result(timeout=timeout_s)
        except FutureTimeout as exc:
            raise ExecutorError(f"docker exec {target}: no exit after {timeout_s}s") from exc
        finally:
            pool.shutdown(wait=False)
        output = (result.output or b"").decode(errors="replace")
        return ExecResult(exit_code=int(result.exit_code), output=output[-4000:])

    def rollback_image(self, target: str, image: str, now: datetime,
                       stop_timeout_s: float = 10.0) -> RollbackResult:
        """Recreate the container from `image` (docker_rollback.py says how)."""
        return docker_rollback.rollback(self._docker().api, target, image, now, stop_timeout_s,
                                        opt_in_label=self.opt_in_label)


def dependents_evidence(executor: DockerExecutor, target: str) -> dict[str, Any]:
    """The `dependents` evidence source: who depends on the target, or the cycle."""
    try:
        found = executor.dependents(executor.resolve(target))
    except DependencyCycle as exc:
        return {"cycle": str(exc), "dependents": []}
    label = executor.opt_in_label
    return {"cycle": None, "dependents": [
        {"name": d.name, "id": d.id, "kind": d.kind, "restart_flag": d.restart_flag,
         "depends_on": list(d.depends_on),
         "opted_in": str(d.labels.get(label, "")).lower() == "true"} for d in found]}


def _minus(moment: datetime, delta: timedelta) -> datetime:
    """moment - delta, floored at the earliest datetime (an alert may claim year 1)."""
    try:
        return moment - delta
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def _parse_time(value: str | None) -> datetime | None:
    if not value or value.startswith(_ZERO):
        return None
    # Docker gives nanoseconds; datetime keeps microseconds.
    head, _, rest = value.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    parsed = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return parsed.replace(microsecond=int(fraction.ljust(6, "0"))) if fraction else parsed
