"""Executor over the Docker Engine API (docker SDK), honouring DOCKER_HOST."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import requests

from .base import ExecResult, ExecutorError, TargetNotFound, TargetState

__all__ = ["DockerExecutor"]

_ZERO = "0001-01-01T00:00:00Z"


class DockerExecutor:
    backend = "docker"

    def __init__(self, base_url: str | None, timeout_s: float) -> None:
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    def _docker(self) -> docker.DockerClient:
        # Created lazily: the receiver must start (and ingest alerts) while dockerd is down.
        with self._lock:
            if self._client is None:
                try:
                    if self._base_url:
                        self._client = docker.DockerClient(base_url=self._base_url,
                                                           timeout=int(self._timeout_s))
                    else:
                        self._client = docker.from_env(timeout=int(self._timeout_s))
                except docker.errors.DockerException as exc:
                    raise ExecutorError(f"cannot connect to Docker: {exc}") from exc
            return self._client

    def _container(self, target: str) -> Any:
        try:
            return self._docker().containers.get(target)
        except docker.errors.NotFound as exc:
            raise TargetNotFound(f"container {target!r} not found") from exc
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise ExecutorError(f"docker inspect {target}: {exc}") from exc

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except docker.errors.NotFound as exc:
            raise TargetNotFound(f"{what}: {exc}") from exc
        except (docker.errors.APIError, docker.errors.DockerException,
                requests.RequestException) as exc:
            raise ExecutorError(f"{what}: {exc}") from exc

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


def _parse_time(value: str | None) -> datetime | None:
    if not value or value.startswith(_ZERO):
        return None
    # Docker gives nanoseconds; datetime keeps microseconds.
    head, _, rest = value.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    parsed = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return parsed.replace(microsecond=int(fraction.ljust(6, "0"))) if fraction else parsed
