"""Actions that change a container through the executor."""

from __future__ import annotations

import re
import signal as signal_module

from pydantic import BaseModel, ConfigDict, Field, field_validator

from receiver.actions.registry import ActionContext, ActionFailed
from receiver.executor import RollbackRefused

__all__ = ["ExecParams", "KillParams", "RestartParams", "RollbackImageParams", "StartParams",
           "StopParams", "exec_command", "kill_container", "restart_container",
           "rollback_image", "start_container", "stop_container"]


# Real signal names (SIGRTMIN and friends are not names Docker accepts).
_SIGNAL_NAMES = frozenset(name for name in signal_module.Signals.__members__
                          if not name.startswith(("SIGRT", "SIG_")))


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RestartParams(_Params):
    timeout_s: float = Field(10, ge=0, le=600, description="SIGTERM grace before SIGKILL.")


class StartParams(_Params):
    pass


class StopParams(_Params):
    timeout_s: float = Field(10, ge=0, le=600, description="SIGTERM grace before SIGKILL.")


class KillParams(_Params):
    signal: str = Field("SIGKILL", description="Signal name, e.g. SIGTERM, SIGKILL, SIGHUP.")

    @field_validator("signal")
    @classmethod
    def _signal_name(cls, value: str) -> str:
        # Docker would only refuse an unknown name at run time, mid-incident.
        if not re.fullmatch(r"SIG[A-Z0-9]{2,8}", value) or value not in _SIGNAL_NAMES:
            raise ValueError(f"unknown signal {value!r}; use a name such as SIGTERM, SIGKILL "
                             "or SIGHUP")
        return value


class ExecParams(_Params):
    argv: list[str] = Field(min_length=1, description="Command as an argv list; no shell.")
    expect_exit_code: int = Field(0, description="Exit code that means success.")
    timeout_s: float = Field(30, gt=0, le=600, description="Fail if it has not exited by then.")


class RollbackImageParams(_Params):
    image: str = Field(pattern=r"^(sha256:)?[0-9a-f]{64}$",
                       description="The previous image's id (sha256:<64 hex>).")
    timeout_s: float = Field(10, ge=0, le=600, description="SIGTERM grace before SIGKILL "
                             "when stopping the failing container.")


def restart_container(ctx: ActionContext, params: RestartParams) -> str | None:
    """Restart the target: a container (SIGTERM, then SIGKILL after timeout_s), or a Swarm
    service by a forced update (its tasks replaced under its own update policy)."""
    recorded = ctx.executor.restart(ctx.target, params.timeout_s)
    state = ctx.executor.inspect(ctx.target)
    if not state.running:
        raise ActionFailed("not_running", f"{ctx.target} is {state.status} after restart"
                           + (f" ({recorded})" if recorded else ""))
    started = state.started_at.isoformat() if state.started_at else "?"
    return recorded or f"restarted; started_at={started}"


def start_container(ctx: ActionContext, params: StartParams) -> str | None:
    """Start a stopped container."""
    ctx.executor.start(ctx.target)
    return None


def stop_container(ctx: ActionContext, params: StopParams) -> str | None:
    """Stop the container (SIGTERM, then SIGKILL after timeout_s)."""
    ctx.executor.stop(ctx.target, params.timeout_s)
    return None


def kill_container(ctx: ActionContext, params: KillParams) -> str | None:
    """Send a signal to the container's main process."""
    ctx.executor.kill(ctx.target, params.signal)
    return None


def exec_command(ctx: ActionContext, params: ExecParams) -> str | None:
    """Run an argv list inside the container and check its exit code."""
    result = ctx.executor.exec(ctx.target, params.argv, params.timeout_s)
    if result.exit_code != params.expect_exit_code:
        raise ActionFailed("unexpected_exit_code", f"exit {result.exit_code}, expected "
                           f"{params.expect_exit_code}: {result.output[-500:]}")
    return f"exit {result.exit_code}"


def rollback_image(ctx: ActionContext, params: RollbackImageParams) -> str | None:
    """Recreate the container from a previous image; the failing one is kept aside, stopped."""
    try:
        result = ctx.executor.rollback_image(ctx.target, params.image, ctx.now(),
                                             params.timeout_s)
    except RollbackRefused as exc:
        raise ActionFailed("rollback_refused", str(exc)) from exc
    return (f"{result.name} runs {result.image} again ({result.new_id[:12]}); the failing "
            f"container {result.quarantined_id[:12]} is stopped, kept as "
            f"{result.quarantined_as}{f', {result.note}' if result.note else ''}")
