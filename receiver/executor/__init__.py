"""Backends, where actions land: one small interface, Docker and Swarm behind it."""

from receiver.executor.base import (
    EvidenceLimits,
    EvidenceSource,
    ExecResult,
    Executor,
    ExecutorError,
    RollbackRefused,
    RollbackResult,
    ServiceExecutor,
    TargetAmbiguous,
    TargetIdentity,
    TargetNotFound,
    TargetState,
)

__all__ = ["EvidenceLimits", "EvidenceSource", "ExecResult", "Executor", "ExecutorError",
           "RollbackRefused", "RollbackResult", "ServiceExecutor", "TargetAmbiguous",
           "TargetIdentity", "TargetNotFound", "TargetState"]
