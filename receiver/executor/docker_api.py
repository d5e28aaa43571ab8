"""What every backend over the Docker Engine API shares: a client created on first use,
and SDK errors mapped onto the executor's error tree."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
import requests

from receiver.executor.base import ExecutorError, TargetNotFound

__all__ = ["LazyDockerClient", "docker_call"]


class LazyDockerClient:
    """Created on first use: the receiver must start (and ingest alerts) while the daemon
    is down. `base_url` None means the SDK's DOCKER_HOST default."""

    def __init__(self, base_url: str | None, timeout_s: float, what: str) -> None:
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._what = what
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    def get(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                try:
                    self._client = (docker.DockerClient(base_url=self._base_url,
                                                        timeout=int(self._timeout_s))
                                    if self._base_url else
                                    docker.from_env(timeout=int(self._timeout_s)))
                except docker.errors.DockerException as exc:
                    raise ExecutorError(f"cannot connect to {self._what}: {exc}") from exc
            return self._client


def docker_call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs); NotFound becomes TargetNotFound, any other SDK or transport
    error ExecutorError, each naming `what` (the CLI command it stands for)."""
    try:
        return fn(*args, **kwargs)
    except docker.errors.NotFound as exc:
        raise TargetNotFound(f"{what}: {exc}") from exc
    except (docker.errors.APIError, docker.errors.DockerException,
            requests.RequestException) as exc:
        raise ExecutorError(f"{what}: {exc}") from exc
