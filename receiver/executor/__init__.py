"""Where actions land: a small interface, with Docker as the first backend."""

from .base import ExecResult, Executor, ExecutorError, TargetNotFound, TargetState

__all__ = ["ExecResult", "Executor", "ExecutorError", "TargetNotFound", "TargetState"]
