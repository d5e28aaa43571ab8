"""The enabled backends, by name, built once from settings in create_app.

A playbook names its backend (`executor: docker|swarm`); a run uses that backend's
executor. Guards, API views and ingest ask this registry and never branch on a name."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from receiver.config.settings import Settings
from receiver.executor.base import Executor, ExecutorError, TargetIdentity
from receiver.executor.docker_executor import DockerExecutor
from receiver.executor.swarm_executor import SwarmExecutor
from receiver.playbooks.config import Backends

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "KNOWN_BACKENDS", "Backend", "Executors",
           "build_executors", "playbook_backends"]

DEFAULT_BACKEND = "docker"


@dataclass(frozen=True)
class Backend:
    """One backend's entry: whether these settings enable it, and how to build it."""

    enabled: Callable[[Settings], bool]
    build: Callable[[Settings], Executor]


# A new backend is one entry here (and its settings, and `backends=` on its own actions).
BACKENDS: Mapping[str, Backend] = MappingProxyType({
    "docker": Backend(
        enabled=lambda settings: True,
        build=lambda settings: DockerExecutor(settings.docker_host, settings.docker_timeout_s,
                                              opt_in_label=settings.opt_in_label)),
    # The manager at AUTOFIX_SWARM_HOST, else at the Docker host.
    "swarm": Backend(
        enabled=lambda settings: settings.swarm_enabled,
        build=lambda settings: SwarmExecutor(
            settings.swarm_host or settings.docker_host, settings.docker_timeout_s,
            settings.swarm_converge_timeout_s, settings.swarm_self_service)),
})
KNOWN_BACKENDS = tuple(BACKENDS)


class Executors:
    def __init__(self, executors: dict[str, Executor]) -> None:
        self._by_name = dict(executors)

    def get(self, backend: str) -> Executor:
        """The executor of an enabled backend; playbooks naming another never load."""
        try:
            return self._by_name[backend]
        except KeyError:
            raise ExecutorError(f"the {backend} backend is not enabled") from None

    @property
    def default(self) -> Executor:
        return self._by_name[DEFAULT_BACKEND]

    def enabled(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def __iter__(self) -> Iterator[Executor]:
        return iter(self._by_name.values())

    def canonical(self, reference: str) -> TargetIdentity | None:
        """What `reference` names on the first backend that knows it (breaker resets)."""
        for executor in self:
            if not executor.validate_target_syntax(reference):
                continue
            try:
                return executor.resolve(reference)
            except ExecutorError:
                continue
        return None


def build_executors(settings: Settings, docker: Executor | None = None,
                    swarm: Executor | None = None) -> Executors:
    """Every backend these settings enable; `docker` and `swarm` stand in for the built ones
    (tests, and the app's injected executors)."""
    given = {"docker": docker, "swarm": swarm}
    return Executors({name: given.get(name) or backend.build(settings)
                      for name, backend in BACKENDS.items() if backend.enabled(settings)})


def playbook_backends(settings: Settings, action_limits: Mapping[str, frozenset[str]]
                      ) -> Backends:
    """What playbooks may name under these settings (without connecting to anything)."""
    enabled = {name for name, backend in BACKENDS.items() if backend.enabled(settings)}
    return Backends(frozenset(KNOWN_BACKENDS), frozenset(enabled), dict(action_limits))
