"""ActionRegistry: name → (params model, function). Built inside create_app, never global."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, get_type_hints

from pydantic import BaseModel

from receiver.config.settings import Settings
from receiver.evidence.capture import Evidence
from receiver.executor import Executor

__all__ = ["ActionContext", "ActionFailed", "ActionRegistry", "ActionSpec", "IncidentView"]


class ActionFailed(Exception):
    """An action ran and did not achieve its goal; `reason` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class IncidentView:
    id: int
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    status: str = "firing"
    fingerprint: str = ""
    generator_url: str = ""  # Prometheus' link to the rule's expression (g0.expr)


@dataclass
class ActionContext:
    """What an action may use. Actions never reach globals."""

    target: str
    playbook: str
    run_id: int
    incident: IncidentView
    executor: Executor
    settings: Settings
    escalate: Callable[[str], None]
    notify: Callable[[str, str], None]
    details: dict[str, Any] = field(default_factory=dict)
    # Captures evidence now (time budget in seconds, None: the setting) and stores it;
    # returns it with its row id (None when it could not be stored).
    capture: Callable[[float | None], tuple[Evidence, int | None]] | None = None
    # The run's clock (services.now): what an action stamps (a quarantine name) follows it.
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


ActionFn = Callable[[ActionContext, Any], str | None]


@dataclass(frozen=True)
class ActionSpec:
    name: str
    params: type[BaseModel]
    run: ActionFn
    mutating: bool  # changes the target; guarded by dry_run and counted by the breaker
    summary: str
    # The param holding a URL this action calls: an http-only playbook is guarded (cooldown,
    # breaker, one run at a time) per URL host, like a container.
    endpoint: str | None = None
    # The backends (executor names) it works on; None: every backend. A playbook using it
    # on another backend fails to load.
    backends: frozenset[str] | None = None
    # Reaches outside autofix (a backend, Prometheus, a URL): a pause stops it. notify and
    # escalate only write autofix's own records (notifications go on during a pause).
    leaves_process: bool = True


class ActionRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, ActionSpec] = {}

    def register(self, name: str, fn: ActionFn, *, mutating: bool,
                 endpoint: str | None = None, backends: frozenset[str] | None = None,
                 leaves_process: bool = True) -> None:
        """Register `fn(ctx: ActionContext, params: SomeParams) -> str | None`.

        The signature is checked here, so a wrong action fails at startup, not at 3 a.m.
        """
        if name in self._specs:
            raise ValueError(f"action {name!r} is registered twice")
        parameters = list(inspect.signature(fn).parameters)
        if len(parameters) != 2:
            raise TypeError(f"action {name!r} must take (ctx, params), got {parameters}")
        params_type = get_type_hints(fn).get(parameters[1])
        if not (isinstance(params_type, type) and issubclass(params_type, BaseModel)):
            raise TypeError(f"action {name!r}: params must be annotated with a pydantic model")
        if endpoint is not None and endpoint not in params_type.model_fields:
            raise TypeError(f"action {name!r}: endpoint {endpoint!r} is not a parameter")
        summary = (inspect.getdoc(fn) or "").split("\n", 1)[0]
        self._specs[name] = ActionSpec(name, params_type, fn, mutating, summary, endpoint,
                                       backends, leaves_process)

    def get(self, name: str) -> ActionSpec | None:
        return self._specs.get(name)

    def specs(self) -> list[ActionSpec]:
        return [self._specs[name] for name in sorted(self._specs)]

    def light_actions(self) -> frozenset[str]:
        """Actions that change no target: a playbook of only these runs in the light lane."""
        return frozenset(name for name, spec in self._specs.items() if not spec.mutating)

    def backend_limits(self) -> dict[str, frozenset[str]]:
        """Actions limited to some backends, with those backends (checked at load)."""
        return {name: spec.backends for name, spec in self._specs.items()
                if spec.backends is not None}

    def params_models(self) -> dict[str, type[BaseModel]]:
        return {name: spec.params for name, spec in self._specs.items()}
