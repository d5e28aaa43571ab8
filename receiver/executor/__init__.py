"""Backends, where actions land: one small interface, Docker and Swarm behind it."""

from receiver.executor.base import (
    ContainerImage,
    DependencyCycle,
    Dependent,
    EvidenceLimits,
    EvidenceSource,
    ExecResult,
    Executor,
    ExecutorError,
    ImageSource,
    RollbackRefused,
    RollbackResult,
    ServiceExecutor,
    TargetAmbiguous,
    TargetIdentity,
    TargetNotFound,
    TargetState,
)

__all__ = ["ContainerImage", "DependencyCycle", "Dependent", "EvidenceLimits", "EvidenceSource",
           "ExecResult", "Executor", "ExecutorError", "ImageSource", "RollbackRefused",
           "RollbackResult", "ServiceExecutor", "TargetAmbiguous", "TargetIdentity",
           "TargetNotFound", "TargetState"]
