"""The playbooks file: pydantic models, YAML loading, and errors that name their line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from .matchers import Matcher, parse_matcher
from .templating import TemplateRenderer

__all__ = [
    "ActionStep", "BreakerPolicy", "Playbook", "PlaybookFile", "load_playbooks",
    "parse_duration",
]

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION_S = 3650 * 86400.0  # ten years


def parse_duration(value: Any) -> float:
    """Seconds from 90, "90s", "5m" or "1h30m" (Prometheus style)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 30s, 5m, 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _bounded(float(value))
    if isinstance(value, str) and _DURATION.match(value.strip()):
        return _bounded(sum(float(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(value)))
    raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 1h)")


def _bounded(seconds: float) -> float:
    # A cooldown of 1e300 s would overflow timedelta/datetime at run time, in every run.
    if not seconds <= MAX_DURATION_S:
        raise ValueError(f"a duration must be at most {MAX_DURATION_S // 86400:.0f}d")
    return seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BreakerPolicy(_Strict):
    max_actions: int = Field(3, ge=1, description="Actions allowed per target in `window`.")
    window_s: float = Field(600, alias="window", gt=0)
    open_s: float = Field(60, alias="open_for", gt=0, description="First open period.")
    open_max_s: float = Field(1800, alias="open_for_max", gt=0, description="Cap as it grows.")
    reset_after_s: float = Field(600, alias="reset_after", gt=0,
                                 description="Healthy time that closes it for good.")

    _durations = field_validator("window_s", "open_s", "open_max_s", "reset_after_s",
                                 mode="before")(parse_duration)

    @model_validator(mode="after")
    def _cap_above_base(self) -> BreakerPolicy:
        if self.open_max_s < self.open_s:
            raise ValueError("open_for_max must be at least open_for")
        return self


class ActionStep(_Strict):
    """One `{action_name: {params}}` entry, in the order written."""

    action: str
    params: dict[str, Any] = Field(default_factory=dict)


class Playbook(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
    matchers: list[Matcher]
    target: str = "{{ labels.container }}"
    actions: list[ActionStep] = Field(min_length=1)
    cooldown_s: float = Field(300, alias="cooldown", ge=0)
    circuit_breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)
    on: Literal["firing", "resolved"] = "firing"
    dry_run: bool = False
    description: str = ""
    # Within the lane of runs that change targets: higher first, then oldest.
    priority: int = Field(0, ge=-1000, le=1000)

    _cooldown = field_validator("cooldown_s", mode="before")(parse_duration)

    @field_validator("matchers", mode="before")
    @classmethod
    def _parse_matchers(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise ValueError("matchers must be a non-empty list of strings like "
                             'alertname="TargetDown"')
        return [parse_matcher(m) if isinstance(m, str) else m for m in value]

    @field_validator("actions", mode="before")
    @classmethod
    def _parse_steps(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("actions must be a list of {action_name: {params}}")
        steps = []
        for item in value:
            if isinstance(item, str):
                steps.append({"action": item, "params": {}})
            elif isinstance(item, dict) and len(item) == 1:
                name, params = next(iter(item.items()))
                steps.append({"action": name, "params": params or {}})
            else:
                raise ValueError("each action is written {action_name: {params}}")
        return steps

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    @property
    def notify_only(self) -> bool:
        """Every step only notifies: no run is needed, the notification group's message
        reports the alert."""
        return all(step.action == "notify" for step in self.actions)


class PlaybookFile(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    playbooks: list[Playbook]

    @model_validator(mode="after")
    def _unique_names(self) -> PlaybookFile:
        seen: set[str] = set()
        for playbook in self.playbooks:
            if playbook.name in seen:
                raise ValueError(f"playbook name {playbook.name!r} is used twice")
            seen.add(playbook.name)
        return self

    def by_name(self, name: str) -> Playbook | None:
        return next((p for p in self.playbooks if p.name == name), None)

    def first_match(self, labels: dict[str, str], on: str) -> Playbook | None:
        """First playbook, in file order, whose matchers hold and whose `on` fits."""
        return next((p for p in self.playbooks if p.on == on and p.matches(labels)), None)


# Pydantic cannot build a schema for the frozen dataclass; tell it to take Matcher as is.
Playbook.model_config["arbitrary_types_allowed"] = True
Playbook.model_rebuild(force=True)


def load_playbooks(path: Path, action_params: Mapping[str, type[BaseModel]]) -> PlaybookFile:
    """Parse and validate a playbooks file; ConfigError lists every problem with its line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read playbooks file {path}: {exc}") from exc
    return parse_playbooks(text, action_params, source=str(path))


def parse_playbooks(text: str, action_params: Mapping[str, type[BaseModel]],
                    source: str = "<playbooks>") -> PlaybookFile:
    try:
        data = yaml.safe_load(text)
        lines = _line_map(yaml.compose(text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}", errors=[str(exc)]) from exc
    try:
        parsed = PlaybookFile.model_validate(data)
    except ValidationError as exc:
        errors = [_describe(source, err["loc"], err["msg"], lines) for err in exc.errors()]
        raise ConfigError(f"{source}: {len(errors)} error(s)", errors=errors) from exc
    errors = _check_actions(parsed, action_params, lines, source)
    if errors:
        raise ConfigError(f"{source}: {len(errors)} error(s)", errors=errors)
    return parsed


def _check_actions(parsed: PlaybookFile, action_params: Mapping[str, type[BaseModel]],
                   lines: dict[tuple[Any, ...], int], source: str) -> list[str]:
    renderer = TemplateRenderer()
    errors: list[str] = []
    for i, playbook in enumerate(parsed.playbooks):
        try:
            renderer.check(playbook.target)
        except ValueError as exc:
            errors.append(_describe(source, ("playbooks", i, "target"), str(exc), lines))
        for j, step in enumerate(playbook.actions):
            loc = ("playbooks", i, "actions", j)
            model = action_params.get(step.action)
            if model is None:
                known = ", ".join(sorted(action_params))
                errors.append(_describe(source, loc, f"unknown action {step.action!r} "
                                        f"(known: {known})", lines))
                continue
            if _has_template(step.params):
                continue  # typed validation happens after rendering, at run time
            try:
                model.model_validate(step.params)
            except ValidationError as exc:
                for err in exc.errors():
                    errors.append(_describe(source, (*loc, step.action, *err["loc"]),
                                            err["msg"], lines))
    return errors


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    return False


def _describe(source: str, loc: tuple[Any, ...], message: str,
              lines: dict[tuple[Any, ...], int]) -> str:
    line = None
    for end in range(len(loc), -1, -1):  # the deepest located ancestor
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            break
    path = ".".join(str(part) for part in loc)
    where = f"{source}:{line}" if line is not None else source
    return f"{where}: {path}: {message}"


def _line_map(node: yaml.Node | None, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Path (as pydantic reports it) → 1-based line, for every node of the document."""
    lines: dict[tuple[Any, ...], int] = {}
    if node is None:
        return lines
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value
            lines[(*path, name)] = key.start_mark.line + 1
            lines.update({k: v for k, v in _line_map(value, (*path, name)).items()
                          if k != (*path, name)})
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_line_map(item, (*path, index)))
    return lines
