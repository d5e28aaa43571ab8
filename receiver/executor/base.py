"""The executor interface. Docker implements it today; Swarm or Kubernetes can sit beside it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from receiver.domain.graph import Dependent
from receiver.domain.images import ContainerImage

__all__ = ["ContainerImage", "DependencyCycle", "Dependent", "EvidenceLimits", "EvidenceSource",
           "ExecResult", "Executor", "ExecutorError", "ImageSource", "RollbackRefused",
           "RollbackResult", "ServiceExecutor", "TargetAmbiguous", "TargetIdentity",
           "TargetNotFound", "TargetState"]


class ExecutorError(Exception):
    """The backend failed or could not be reached; the message says which call."""


class TargetNotFound(ExecutorError):
    """No such target on this backend."""


class DependencyCycle(ExecutorError):
    """The target's dependents form a cycle; the message names it (a -> b -> a)."""


class TargetAmbiguous(ExecutorError):
    """The reference names more than one target (e.g. a short ID prefix); the message lists them."""


class RollbackRefused(ExecutorError):
    """A rollback to a previous image was refused before anything changed; the message
    names the field or the reason (the image is gone, a setting cannot be reproduced)."""


@dataclass(frozen=True)
class RollbackResult:
    """A container recreated from its previous image: `name` now runs `image` as `new_id`;
    the failing one is stopped, kept, and renamed `quarantined_as` (`quarantined_id`)."""

    name: str
    new_id: str
    quarantined_as: str
    quarantined_id: str
    image: str
    # What became of the quarantined one's restart policy (set to "no", or why not).
    note: str = ""


@dataclass(frozen=True)
class TargetIdentity:
    """What a reference (name, ID, ID prefix...) resolved to on the backend, right now.

    `name` is the canonical key: breakers, cooldowns, the one-run-per-target lock, metrics
    and audit rows use it, so they survive the target being recreated under the same name.
    `id` is what the guards check (protection, the receiver itself, the state).
    """

    name: str
    id: str


@dataclass(frozen=True)
class TargetState:
    name: str
    id: str
    status: str  # created, running, restarting, exited, paused, dead
    labels: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    restart_count: int = 0
    health: str | None = None  # healthy, unhealthy, starting, or None without a HEALTHCHECK
    restart_policy: str = ""
    exit_code: int = 0

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class EvidenceLimits:
    """How much of a target's logs an evidence capture keeps (the newest)."""

    log_lines: int = 200
    log_bytes: int = 64 * 1024


# One independent read about a target, returning JSON-able data; the capture runs every
# source in parallel under its time budget and records the ones that did not finish.
EvidenceSource = Callable[[], Any]


class Executor(Protocol):
    """Every backend-specific rule lives behind this interface; guards.py holds none."""

    backend: str

    def validate_target_syntax(self, target: str) -> bool:
        """Whether `target` can name a target at all (checked before any backend call)."""
        ...

    def resolve(self, target: str) -> TargetIdentity:
        """The one target `target` names, as the backend itself would resolve it.

        Raises TargetNotFound, TargetAmbiguous, or ExecutorError when the backend fails."""
        ...

    def refers_to(self, reference: str, identity: TargetIdentity) -> bool:
        """Whether a configured reference (e.g. a protected entry) names this target."""
        ...

    def is_self(self, identity: TargetIdentity) -> bool:
        """Whether the target is the receiver itself."""
        ...

    def host_of(self, identity: TargetIdentity) -> str:
        """The host the target lives on (a Docker daemon, a Swarm node), as a stable key:
        action budgets and the host storm guard count per host. Raises ExecutorError when
        the backend cannot say."""
        ...

    def already_recovering(self, state: TargetState, incident_starts_at: datetime,
                           lookback: timedelta) -> str | None:
        """Why the backend is already recovering the target by itself, or None."""
        ...

    def stopped_by_operator(self, state: TargetState) -> str | None:
        """Why the target is down because someone asked for it (maintenance, not a
        failure), or None when it is up or went down on its own (or nobody can tell)."""
        ...

    def evidence_sources(self, target: str, limits: EvidenceLimits
                         ) -> dict[str, EvidenceSource]:
        """Named reads for an evidence capture. Known names: `state` (status, exit code,
        oom_killed, restart count, times, health with its last outputs), `logs` (text,
        timestamps kept), `stats` (memory, CPU), `events` (recent lifecycle events) and
        `operator_stop` (stopped_by_operator's answer), `dependents` (who depends on the
        target, or the cycle); a backend may add its own (a Swarm backend: `tasks`, the
        task history)."""
        ...

    def dependents(self, identity: TargetIdentity) -> list[Dependent]:
        """The targets that depend on this one (receiver/domain/graph.py), in the order to
        restart them after it. Raises DependencyCycle for a cycle reachable from it, and
        ExecutorError when the backend cannot say."""
        ...

    def ping(self) -> None:
        """Return when the backend answers; raise ExecutorError saying why it does not
        (the readiness probe, receiver/telemetry/readiness.py)."""
        ...

    def inspect(self, target: str) -> TargetState: ...

    def restart(self, target: str, timeout_s: float) -> str | None:
        """Restart the target the backend's way; what to record (e.g. task IDs), or None."""
        ...

    def start(self, target: str) -> None: ...

    def stop(self, target: str, timeout_s: float) -> None: ...

    def kill(self, target: str, signal: str) -> None: ...

    def exec(self, target: str, argv: list[str], timeout_s: float) -> ExecResult: ...

    def rollback_image(self, target: str, image: str, now: datetime,
                       stop_timeout_s: float = 10.0) -> RollbackResult:
        """Recreate the target from `image` (an image id) with its own configuration; the
        failing one is stopped and renamed `<name>.autofix-quarantine-<now, UTC>`, never
        removed. RollbackRefused, before any change, when that cannot be done exactly;
        ExecutorError (saying what state things were left in) when a later step fails."""
        ...


@runtime_checkable
class ServiceExecutor(Protocol):
    """A backend whose targets are replicated services (Swarm; Kubernetes deployments)."""

    def scale(self, target: str, replicas: int) -> str:
        """Set the replica count and wait for it; returns what to record."""
        ...

    def rollback(self, target: str) -> str:
        """Return to the previous spec (ExecutorError when there is none)."""
        ...


@runtime_checkable
class ImageSource(Protocol):
    """A backend that can tell which image each container was created from (the image
    history that tells a bad update from a crash, receiver/engine/new_image.py)."""

    def inventory(self) -> list[ContainerImage]:
        """Every container the backend has, from ONE list call (no call per container):
        it runs every AUTOFIX_INVENTORY_INTERVAL. ExecutorError when the backend fails."""
        ...

    def container_image(self, target: str) -> ContainerImage | None:
        """One container's image (one inspect); None when the backend's targets are not
        containers. TargetNotFound, ExecutorError."""
        ...
