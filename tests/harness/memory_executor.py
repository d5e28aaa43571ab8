"""An in-memory executor for guard, breaker and lifecycle unit tests (no dockerd).

Containers are dicts; every call is recorded. `on_restart` lets a test interleave
something (a resolve, a database outage) at the moment a restart happens. The real-dockerd
tests stay the proof that the Docker executor behaves the same.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from receiver.domain.graph import ContainerRow, CycleFound, dependents_of
from receiver.executor import (
    ContainerImage,
    DependencyCycle,
    Dependent,
    EvidenceLimits,
    ExecResult,
    RollbackRefused,
    RollbackResult,
    TargetAmbiguous,
    TargetIdentity,
    TargetNotFound,
    TargetState,
)


@dataclass
class MemoryContainer:
    name: str
    id: str
    labels: dict[str, str] = field(default_factory=lambda: {"autofix.enable": "true"})
    status: str = "running"
    started_at: datetime = datetime(2026, 1, 1, tzinfo=UTC)  # long before any test alert
    health: str | None = None
    restart_count: int = 0
    image: str = "sha256:" + "1" * 64
    image_ref: str = "app:v1"
    created_at: datetime = datetime(2025, 12, 1, tzinfo=UTC)  # long before any test alert
    network_mode: str = ""  # "container:<name or id>": shares that one's namespace


class MemoryExecutor:
    backend = "memory"

    def __init__(self, restart_delay_s: float = 0.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.containers: dict[str, MemoryContainer] = {}
        self.calls: list[tuple[str, str]] = []
        self.image_reads: list[str] = []  # "inventory", or the name of a container inspected
        self.restart_delay_s = restart_delay_s
        self.on_restart: Callable[[str], None] | None = None
        self.stays_unhealthy: set[str] = set()
        self.stopped_by_hand: set[str] = set()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        # Image ids present "locally", for rollback_image; empty means any.
        self.images: set[str] = set()

    def add(self, name: str, **kwargs: object) -> MemoryContainer:
        container = MemoryContainer(name, hashlib.sha256(name.encode()).hexdigest(),
                                    **kwargs)  # type: ignore[arg-type]
        self.containers[name] = container
        return container

    def recreate(self, name: str, image: str, image_ref: str, created_at: datetime,
                 **kwargs: object) -> MemoryContainer:
        """`docker rm` then `docker run` under the same name: a new ID, another image."""
        digest = hashlib.sha256(f"{name}/{image}/{created_at.isoformat()}".encode()).hexdigest()
        container = MemoryContainer(name, digest, image=image, image_ref=image_ref,
                                    created_at=created_at, **kwargs)  # type: ignore[arg-type]
        self.containers[name] = container
        return container

    def inventory(self) -> list[ContainerImage]:
        self.image_reads.append("inventory")  # not in `calls`: those are the actions
        return [ContainerImage(c.name, c.id, c.image, c.image_ref, c.created_at,
                               dict(c.labels)) for c in self.containers.values()]

    def container_image(self, target: str) -> ContainerImage | None:
        container = self._get(target)
        self.image_reads.append(container.name)
        return ContainerImage(container.name, container.id, container.image,
                              container.image_ref, container.created_at, dict(container.labels))

    def _get(self, target: str) -> MemoryContainer:
        return self.containers[self.resolve(target).name]

    def ping(self) -> None:
        return None

    # -- identity: names and ID prefixes, the way Docker resolves them -------------------

    def validate_target_syntax(self, target: str) -> bool:
        return bool(target) and len(target) <= 255 and "/" not in target

    def resolve(self, target: str) -> TargetIdentity:
        if target in self.containers:
            found = self.containers[target]
            return TargetIdentity(found.name, found.id)
        matches = [c for c in self.containers.values() if c.id.startswith(target)]
        if len(matches) > 1:
            raise TargetAmbiguous(f"{target!r} is a prefix of {len(matches)} IDs ("
                                  + ", ".join(sorted(c.id for c in matches)) + ")")
        if not matches:
            raise TargetNotFound(f"container {target!r} not found")
        return TargetIdentity(matches[0].name, matches[0].id)

    def refers_to(self, reference: str, identity: TargetIdentity) -> bool:
        return reference == identity.name or (bool(reference)
                                              and identity.id.startswith(reference))

    def is_self(self, identity: TargetIdentity) -> bool:
        return False

    def dependents(self, identity: TargetIdentity) -> list[Dependent]:
        rows = [ContainerRow(c.name, c.id, dict(c.labels), c.network_mode, c.status)
                for c in self.containers.values()]
        try:
            return dependents_of(rows, identity.id)
        except CycleFound as exc:
            raise DependencyCycle(str(exc)) from exc

    def host_of(self, identity: TargetIdentity) -> str:
        return "memory"

    def already_recovering(self, state: TargetState, incident_starts_at: datetime,
                           lookback: timedelta) -> str | None:
        if state.started_at is not None and state.started_at > incident_starts_at:
            return f"{state.name} (re)started after the alert began"
        return None

    def stopped_by_operator(self, state: TargetState) -> str | None:
        return "stopped by hand" if state.name in self.stopped_by_hand else None

    def evidence_sources(self, target: str, limits: EvidenceLimits
                         ) -> dict[str, Callable[[], object]]:
        def state() -> dict[str, object]:
            found = self.inspect(target)
            return {"status": found.status, "running": found.running,
                    "restart_count": found.restart_count, "oom_killed": False,
                    "health": {"status": found.health} if found.health else None}

        return {"state": state,
                "operator_stop": lambda: self.stopped_by_operator(self.inspect(target))}

    def inspect(self, target: str) -> TargetState:
        container = self._get(target)
        health = "unhealthy" if container.name in self.stays_unhealthy else container.health
        return TargetState(name=container.name, id=container.id, status=container.status,
                           labels=dict(container.labels), started_at=container.started_at,
                           restart_count=container.restart_count, health=health)

    def restart(self, target: str, timeout_s: float) -> None:
        container = self._get(target)
        with self._lock:
            self.calls.append(("restart", container.name))
        if self.restart_delay_s:
            time.sleep(self.restart_delay_s)
        if self.on_restart is not None:
            self.on_restart(container.name)
        container.started_at = self._clock()
        container.status = "running"

    def restarts(self, name: str) -> int:
        return sum(1 for call in self.calls if call == ("restart", name))

    def _record(self, verb: str, target: str) -> MemoryContainer:
        container = self._get(target)
        with self._lock:
            self.calls.append((verb, container.name))
        return container

    def start(self, target: str) -> None:
        self._record("start", target).status = "running"

    def stop(self, target: str, timeout_s: float) -> None:
        self._record("stop", target).status = "exited"

    def kill(self, target: str, signal: str) -> None:
        self._record("kill", target).status = "exited"

    def exec(self, target: str, argv: list[str], timeout_s: float) -> ExecResult:
        self._record("exec", target)
        return ExecResult(0, "")

    def rollback_image(self, target: str, image: str, now: datetime,
                       stop_timeout_s: float = 10.0) -> RollbackResult:
        """The Docker executor's rollback, as names: the failing one is renamed and kept."""
        old = self._record("rollback_image", target)
        wanted = image if image.startswith("sha256:") else f"sha256:{image}"
        if self.images and wanted not in self.images:
            raise RollbackRefused(f"previous image {wanted} is no longer present")
        name = old.name
        quarantined = f"{name}.autofix-quarantine-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}"
        del self.containers[name]
        old.name, old.status = quarantined, "exited"
        self.containers[quarantined] = old
        new = self.add(name, labels=dict(old.labels), image=wanted, started_at=self._clock())
        new.id = hashlib.sha256(f"{new.name}/{wanted}".encode()).hexdigest()
        return RollbackResult(name=new.name, new_id=new.id, quarantined_as=quarantined,
                              quarantined_id=old.id, image=wanted)
