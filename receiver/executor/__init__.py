"""Where actions land: a small interface, with Docker as the first backend."""

from .base import (
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

__all__ = ["EvidenceLimits", "EvidenceSource", "ExecResult", "Executor", "ExecutorError",
           "ServiceExecutor", "TargetAmbiguous", "TargetIdentity", "TargetNotFound", "TargetState"]
