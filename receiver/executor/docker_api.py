"""What every backend over the Docker Engine API shares: a client created on first use,
and SDK errors mapped onto the executor's error tree."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import docker
import docker.constants
import docker.errors
import docker.tls
import requests

from receiver.executor.base import ExecutorError, TargetNotFound

__all__ = ["LazyDockerClient", "docker_call"]


class LazyDockerClient:
    """Created on first use: the receiver must start (and ingest alerts) while the daemon
    is down. `base_url` None means the SDK's DOCKER_HOST default. `tls` (ca, cert, key):
    verify the daemon against ca and present the client certificate (DOCKER_TLS_VERIFY)."""

    def __init__(self, base_url: str | None, timeout_s: float, what: str,
                 tls: tuple[str, str, str] | None = None) -> None:
        self._base_url = base_url
        self._tls = tls
        self._timeout_s = timeout_s
        self._what = what
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    def get(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                try:
                    self._client = (self._tls_client() if self._tls is not None else
                                    docker.DockerClient(base_url=self._base_url,
                                                        timeout=int(self._timeout_s))
                                    if self._base_url else
                                    docker.from_env(timeout=int(self._timeout_s)))
                except docker.errors.DockerException as exc:
                    raise ExecutorError(f"cannot connect to {self._what}: {exc}") from exc
            return self._client

    def _tls_client(self) -> docker.DockerClient:
        """Verify the daemon against the host's CA and present the client certificate.
        requests lets REQUESTS_CA_BUNDLE override a session's CA, so the session ignores the
        environment (as DOCKER_CERT_PATH does for docker); the API version is asked after."""
        if self._tls is None:
            raise ExecutorError("no TLS configuration")
        ca, cert, key = self._tls
        client = docker.DockerClient(
            base_url=self._base_url, timeout=int(self._timeout_s),
            version=docker.constants.DEFAULT_DOCKER_API_VERSION,
            tls=docker.tls.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True))
        client.api.trust_env = False
        client.api._version = client.api._retrieve_server_version()
        return client


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
