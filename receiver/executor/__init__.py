"""Backends, where actions land: one small interface, Docker and Swarm behind it."""

from receiver.executor.base import (
    DependencyCycle,
    Dependent,
    EvidenceLimits,
    EvidenceSource,
    ExecResult,
    Executor,
    ExecutorError,
    ServiceExecutor,
    TargetAmbiguous,
    TargetIdentity,
    TargetNotFound,
    TargetState,
)

__all__ = [
    "DependencyCycle",
    "Dependent",
    "EvidenceLimits",
    "EvidenceSource",
    "ExecResult",
    "Executor",
    "ExecutorError",
    "ServiceExecutor",
    "TargetAmbiguous",
    "TargetIdentity",
    "TargetNotFound",
    "TargetState",
]
