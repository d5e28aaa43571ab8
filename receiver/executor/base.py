"""The executor interface. Docker implements it today; Swarm or Kubernetes can sit beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

__all__ = ["ExecResult", "Executor", "ExecutorError", "TargetNotFound", "TargetState"]


class ExecutorError(Exception):
    """The backend failed or could not be reached; the message says which call."""


class TargetNotFound(ExecutorError):
    """No such target on this backend."""


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


class Executor(Protocol):
    backend: str

    def inspect(self, target: str) -> TargetState: ...

    def restart(self, target: str, timeout_s: float) -> None: ...

    def start(self, target: str) -> None: ...

    def stop(self, target: str, timeout_s: float) -> None: ...

    def kill(self, target: str, signal: str) -> None: ...

    def exec(self, target: str, argv: list[str], timeout_s: float) -> ExecResult: ...
