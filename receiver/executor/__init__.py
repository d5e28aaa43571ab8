"""Where actions land: a small interface, with Docker as the first backend."""

from .base import (
                   ExecResult,
                   Executor,
                   ExecutorError,
                   TargetAmbiguous,
                   TargetIdentity,
                   TargetNotFound,
                   TargetState,
)

__all__ = ["ExecResult", "Executor", "ExecutorError", "TargetAmbiguous", "TargetIdentity",
           "TargetNotFound", "TargetState"]
