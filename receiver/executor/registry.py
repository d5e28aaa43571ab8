"""The enabled backends, by name, built once from settings in create_app.

A playbook names its backend (`executor: docker|swarm`); a run uses that backend's
executor. Guards, API views and ingest ask this registry and never branch on a name."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from receiver.config.settings import Settings
from receiver.executor.base import Executor, ExecutorError, TargetIdentity
from receiver.executor.docker_executor import DockerExecutor
from receiver.executor.swarm_executor import SwarmExecutor
from receiver.playbooks.config import Backends

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "KNOWN_BACKENDS", "Backend", "Executors",
           "build_executors", "docker_hosts", "playbook_backends"]

DEFAULT_BACKEND = "docker"


@dataclass(frozen=True)
class Backend:
    """One backend's entry: whether these settings enable it, and how to build it."""

    enabled: Callable[[Settings], bool]
    build: Callable[[Settings], Executor]


# A new backend is one entry here (and its settings, and `backends=` on its own actions).
BACKENDS: Mapping[str, Backend] = MappingProxyType({
    # The first of AUTOFIX_DOCKER_HOSTS (`local` for one host); the others in docker_hosts.
    "docker": Backend(
        enabled=lambda settings: True,
        build=lambda settings: docker_hosts(settings)[next(iter(settings.fleet()))]),
    # The manager at AUTOFIX_SWARM_HOST, else at the Docker host.
    "swarm": Backend(
        enabled=lambda settings: settings.swarm_enabled,
        build=lambda settings: SwarmExecutor(
            settings.swarm_host or settings.docker_host, settings.docker_timeout_s,
            settings.swarm_converge_timeout_s, settings.swarm_self_service)),
})
KNOWN_BACKENDS = tuple(BACKENDS)


def docker_hosts(settings: Settings) -> dict[str, Executor]:
    """One DockerExecutor per configured host: its own client, connection pool and timeout,
    so a slow host never holds a run on another."""
    built: dict[str, Executor] = {}
    fleet = settings.fleet()
    for name, spec in fleet.items():
        tls = None if spec.tls is None else (str(spec.tls.ca), str(spec.tls.cert),
                                             str(spec.tls.key))
        built[name] = DockerExecutor(spec.url, spec.timeout_s or settings.docker_timeout_s,
                                     opt_in_label=settings.opt_in_label, name=name, tls=tls,
                                     key_prefix=f"{name}/" if len(fleet) > 1 else "")
    return built


class Executors:
    """The enabled backends, and the docker backend's executor per host (`hosts`, by name;
    one host, `local`, unless AUTOFIX_DOCKER_HOSTS names several)."""

    def __init__(self, executors: dict[str, Executor],
                 hosts: dict[str, Executor] | None = None) -> None:
        self._by_name = dict(executors)
        docker = self._by_name.get(DEFAULT_BACKEND)
        self._hosts = dict(hosts) if hosts else (
            {getattr(docker, "name", "local"): docker} if docker is not None else {})
        if self._hosts and DEFAULT_BACKEND in self._by_name:
            self._by_name[DEFAULT_BACKEND] = next(iter(self._hosts.values()))

    def get(self, backend: str, host: str | None = None) -> Executor:
        """The executor of an enabled backend; playbooks naming another never load. For the
        docker backend, the one of `host` (None: the first host)."""
        try:
            executor = self._by_name[backend]
        except KeyError:
            raise ExecutorError(f"the {backend} backend is not enabled") from None
        if backend != DEFAULT_BACKEND or host is None:
            return executor
        try:
            return self._hosts[host]
        except KeyError:
            raise ExecutorError(f"no Docker host named {host!r} (AUTOFIX_DOCKER_HOSTS: "
                                f"{', '.join(self._hosts)})") from None

    def hosts(self, backend: str = DEFAULT_BACKEND) -> tuple[str, ...]:
        """A backend's hosts' names, in configuration order (only docker has hosts)."""
        return tuple(self._hosts) if backend == DEFAULT_BACKEND else ()

    @property
    def multi_host(self) -> bool:
        """More than one Docker host: targets are keyed `<host>/<name>`."""
        return len(self._hosts) > 1

    def host_of_key(self, key: str) -> str | None:
        """The Docker host a target key `<host>/<name>` names; None with one host."""
        prefix, slash, _ = key.partition("/")
        return prefix if self.multi_host and slash and prefix in self._hosts else None

    def host_executors(self) -> dict[str, Executor]:
        return dict(self._hosts)

    @property
    def default(self) -> Executor:
        return self._by_name[DEFAULT_BACKEND]

    def enabled(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def __iter__(self) -> Iterator[Executor]:
        """Every executor: each Docker host's, then the other backends'."""
        others = [executor for name, executor in self._by_name.items()
                  if name != DEFAULT_BACKEND]
        return iter([*self._hosts.values(), *others])

    def canonical(self, reference: str) -> TargetIdentity | None:
        """What `reference` names on the first backend that knows it (breaker resets).
        Among several Docker hosts a container is `<host>/<reference>`, named that way."""
        candidates = list(self)
        if self.multi_host:
            host, slash, rest = reference.partition("/")
            if slash and host in self._hosts:
                found = _resolved(self._hosts[host], rest)
                return replace(found, name=f"{host}/{found.name}") if found else None
            candidates = [executor for executor in candidates
                          if executor not in self._hosts.values()]
        for executor in candidates:
            found = _resolved(executor, reference)
            if found is not None:
                return found
        return None


def _resolved(executor: Executor, reference: str) -> TargetIdentity | None:
    if not executor.validate_target_syntax(reference):
        return None
    try:
        return executor.resolve(reference)
    except ExecutorError:
        return None


def build_executors(settings: Settings, docker: Executor | None = None,
                    swarm: Executor | None = None,
                    hosts: dict[str, Executor] | None = None) -> Executors:
    """Every backend these settings enable; `docker` and `swarm` stand in for the built ones
    (tests, and the app's injected executors), `hosts` for the Docker hosts."""
    given = {"docker": docker, "swarm": swarm}
    if hosts is None and docker is None:
        hosts = docker_hosts(settings)
    if hosts:
        given["docker"] = next(iter(hosts.values()))
    return Executors({name: given.get(name) or backend.build(settings)
                      for name, backend in BACKENDS.items() if backend.enabled(settings)},
                     hosts)


def playbook_backends(settings: Settings, action_limits: Mapping[str, frozenset[str]]
                      ) -> Backends:
    """What playbooks may name under these settings (without connecting to anything)."""
    enabled = {name for name, backend in BACKENDS.items() if backend.enabled(settings)}
    return Backends(frozenset(KNOWN_BACKENDS), frozenset(enabled), dict(action_limits))
