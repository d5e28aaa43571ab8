"""Backends, where actions land: one small interface, Docker and Swarm behind it."""

from receiver.executor.base import (
    Dependent,
    DependencyCycle,
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

__all__ = ["Dependent", "DependencyCycle", "EvidenceLimits", "EvidenceSource", "ExecResult", "Executor", "ExecutorError",
           "ServiceExecutor", "TargetAmbiguous", "TargetIdentity", "TargetNotFound", "TargetState"]
