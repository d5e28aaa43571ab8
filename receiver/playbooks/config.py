"""The playbooks file: pydantic models, YAML loading, and errors that name their line."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from receiver.domain.classify import Classification
from receiver.domain.errors import ConfigError
from receiver.playbooks.matchers import Matcher, parse_matcher
from receiver.playbooks.templating import TemplateRenderer

if TYPE_CHECKING:
    from receiver.playbooks.rules_check import AlertRules

__all__ = [
    "ActionStep", "Backends", "BreakerPolicy", "Budget", "Playbook", "PlaybookFile",
    "load_playbooks", "load_yaml", "parse_duration", "parse_playbooks",
]

# Prometheus' own grammar (common/model.ParseDuration): whole numbers, each unit at most
# once, largest first; "0" alone is zero. "1s1h", "5m5m" and "1.5h" are not durations.
_UNIT_S = {"y": 365 * 86400.0, "w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0,
           "s": 1.0, "ms": 0.001}
_DURATION = re.compile("".join(rf"(?:(?P<{'milli' if u == 'ms' else u}>\d+){u})?"
                               for u in _UNIT_S))
MAX_DURATION_S = 3650 * 86400.0  # ten years
# Each `require:` query may take AUTOFIX_PRECONDITION_TIMEOUT_S before the run acts.
MAX_REQUIRE = 10
MAX_REQUIRE_CHARS = 4096


def parse_duration(value: Any) -> float:
    """Seconds from 90, "90s", "5m" or "1h30m": a number, or Prometheus' duration syntax."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 30s, 5m, 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _bounded(float(value))
    if isinstance(value, str):
        text = value.strip()
        if text == "0":
            return 0.0
        found = _DURATION.fullmatch(text)
        if text and found:
            return _bounded(sum(int(number) * _UNIT_S["ms" if group == "milli" else group]
                                for group, number in found.groupdict().items() if number))
    raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 1h30m: whole numbers, "
                     "units largest first)")


def _bounded(seconds: float) -> float:
    # A cooldown of 1e300 s would overflow timedelta/datetime at run time, in every run.
    if not seconds <= MAX_DURATION_S:
        raise ValueError(f"a duration must be at most {MAX_DURATION_S // 86400:.0f}d")
    return seconds


def _promql_expression(expr: str) -> str:
    if not expr.strip():
        raise ValueError("each `require:` entry must be a PromQL expression, "
                         'e.g. count(up{job="web"} == 1) >= 2')
    if len(expr) > MAX_REQUIRE_CHARS:
        raise ValueError(f"a `require:` expression is at most {MAX_REQUIRE_CHARS} characters")
    return expr


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


class Budget(_Strict):
    """At most `actions` mutating runs per `per`, counted over the scope: every mutating
    run of the fleet, this playbook's, or those on the run's host
    (receiver/engine/blast_radius.py)."""

    actions: int = Field(ge=1, description="Mutating runs allowed in `per`.")
    per_s: float = Field(alias="per", gt=0)
    scope: Literal["host", "fleet", "playbook"]

    _per = field_validator("per_s", mode="before")(parse_duration)


def _budgets(value: Any) -> Any:
    # One mapping or a list of them.
    return [value] if isinstance(value, Mapping) else value


class ActionStep(_Strict):
    """One `{action_name: {params}}` entry, in the order written."""

    action: str
    params: dict[str, Any] = Field(default_factory=dict)


_STEP_SHAPE = ("each action is written {action_name: {params}} (one action per list item) "
               "or as a bare action name")


def _matcher(value: Any) -> Any:
    if isinstance(value, Matcher):
        return value
    if not isinstance(value, str):
        raise ValueError('a matcher is a string like alertname="TargetDown"')
    return parse_matcher(value)


def _never_fight_an_operator() -> list[Classification]:
    return ["stopped_by_operator"]


@dataclass(frozen=True)
class Backends:
    """What `executor:` may name: the known backends, the enabled ones, and the actions
    limited to some backends (action -> backends)."""

    known: frozenset[str]
    enabled: frozenset[str]
    action_limits: Mapping[str, frozenset[str]] = field(default_factory=dict)


class Playbook(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
    # The backend its target lives on; the run uses that backend's executor.
    executor: str = Field("docker", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    # Each item is parsed on its own, so every bad matcher of a list is reported.
    matchers: list[Annotated[Matcher, BeforeValidator(_matcher)]]
    target: str = "{{ labels.container }}"
    # Which Docker host (AUTOFIX_DOCKER_HOSTS) the target lives on, rendered at run time;
    # with one host, unrendered or empty means that host.
    host: str = "{{ labels.host }}"
    actions: list[ActionStep] = Field(min_length=1)
    cooldown_s: float = Field(300, alias="cooldown", ge=0)
    circuit_breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)
    # Action budgets: a mutating run beyond any of them skips (budget_exhausted).
    budgets: Annotated[list[Budget], BeforeValidator(_budgets)] = Field(
        default_factory=list, alias="budget")
    on: Literal["firing", "resolved"] = "firing"
    dry_run: bool = False
    description: str = ""
    # Within the lane of runs that change targets: higher first, then oldest.
    priority: int = Field(0, ge=-1000, le=1000)
    # The autonomy ladder: `observe` records what it would do (a dry run), `approve` waits
    # for a human after the guards pass, `auto` acts.
    mode: Literal["auto", "approve", "observe"] = "auto"
    approval_timeout_s: float = Field(3600, alias="approval_timeout", gt=0)
    # Evidence before every step that changes the target (evidence/capture.py).
    capture: bool = True
    # What the evidence's classification does to the run: skip it (never fight an
    # operator who stopped the container) or escalate it to a human instead of acting.
    skip_when: list[Classification] = Field(default_factory=_never_fight_an_operator)
    escalate_when: list[Classification] = Field(default_factory=list)
    # A target created from a new image within AUTOFIX_NEW_IMAGE_WINDOW (a bad update, which
    # a restart does not fix): escalate it to a human (skip `bad_update`), act as written,
    # or replace the steps by `rollback_image` to the previous image and a wait_healthy.
    on_new_image: Literal["act", "escalate", "rollback"] = "escalate"
    # PromQL that must each return a result just before the run acts, rendered with the
    # params' context (preconditions.py): empty or unanswered means precondition_failed.
    require: list[Annotated[str, AfterValidator(_promql_expression)]] = Field(
        default_factory=list, max_length=MAX_REQUIRE)
    # After a run that restarted the target succeeds: `restart` its dependents in order
    # (network_mode container: always; compose depends_on only with `restart: true`),
    # each as a run of its own under every guard; `leave` touches none (domain/graph.py).
    dependents: Literal["restart", "leave"] = "restart"

    _cooldown = field_validator("cooldown_s", mode="before")(parse_duration)
    _approval_timeout = field_validator("approval_timeout_s", mode="before")(parse_duration)

    @field_validator("matchers", mode="before")
    @classmethod
    def _non_empty_matchers(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise ValueError("matchers must be a non-empty list of strings like "
                             'alertname="TargetDown"')
        return value

    @field_validator("actions", mode="before")
    @classmethod
    def _parse_steps(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("actions must be a list of {action_name: {params}}")
        steps = []
        for item in value:
            step = _split_step(item)
            if step is None:
                raise ValueError(_STEP_SHAPE)
            steps.append({"action": step[0], "params": step[1]})
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
    # Playbooks left out because their backend is not enabled, one warning each.
    skipped: list[str] = Field(default_factory=list)
    # Problems that do not refuse the file: the rules and timing checks of a disabled
    # (skipped) playbook, and timing warnings (check-config prints them).
    warnings: list[str] = Field(default_factory=list)

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

    def matcher(self) -> Callable[[dict[str, str], str], Playbook | None]:
        """first_match, remembering its answer per value of the labels any matcher reads:
        a storm's 10,000 alerts usually share a handful of those."""
        names = sorted({m.name for p in self.playbooks for m in p.matchers})
        known: dict[tuple[str, ...], Playbook | None] = {}

        def match(labels: dict[str, str], on: str) -> Playbook | None:
            key = (on, *(labels.get(name, "") for name in names))
            if key not in known:
                known[key] = self.first_match(labels, on)
            return known[key]

        return match


# Pydantic cannot build a schema for the frozen dataclass; tell it to take Matcher as is.
Playbook.model_config["arbitrary_types_allowed"] = True
Playbook.model_rebuild(force=True)


def load_playbooks(path: Path, action_params: Mapping[str, type[BaseModel]],
                   allowed_hosts: Sequence[str] | None = None,
                   rules: AlertRules | None = None,
                   backends: Backends | None = None) -> PlaybookFile:
    """Parse and validate a playbooks file; ConfigError lists every problem with its line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read playbooks file {path}: {exc}") from exc
    return parse_playbooks(text, action_params, source=str(path), allowed_hosts=allowed_hosts,
                           rules=rules, backends=backends)


def parse_playbooks(text: str, action_params: Mapping[str, type[BaseModel]],
                    source: str = "<playbooks>", allowed_hosts: Sequence[str] | None = None,
                    rules: AlertRules | None = None,
                    backends: Backends | None = None) -> PlaybookFile:
    """Validate everything at once: structure, every matcher, every action's params (as the
    runner validates them), templates, unique names, and (given `rules`) that each playbook
    can match an alert and names only labels its alerts carry. `allowed_hosts` checks static
    http URLs. `backends` checks `executor:` and the actions each backend supports; a
    playbook for a known backend that is not enabled is left out with a warning (in
    `skipped`), so the shipped file starts a Docker-only receiver. ConfigError.details
    ["errors"] holds one "file:line:column: path: message" each.
    """
    data, marks = load_yaml(text, source)
    where = _Locator(source, marks)
    errors = list(where.duplicate_keys)
    raw_playbooks = data.get("playbooks") if isinstance(data, dict) else None
    if not isinstance(raw_playbooks, list):
        if isinstance(data, dict):
            try:
                PlaybookFile.model_validate(data)
            except ValidationError as exc:
                errors += [where(err["loc"], err["msg"]) for err in exc.errors()]
        raise ConfigError(f"{source}: {len(errors)} error(s)", errors=errors or [
            where((), "the file must be a mapping with a `playbooks:` list")])
    for key in data:
        if key != "playbooks":
            errors.append(where((key,), "unknown key (only `playbooks` is allowed here)"))
    valid: list[tuple[int, Playbook]] = []
    skipped: list[str] = []
    warnings: list[str] = []
    first_line: dict[str, int] = {}
    renderer = TemplateRenderer()
    for index, item in enumerate(raw_playbooks):
        loc: tuple[Any, ...] = ("playbooks", index)
        try:
            valid.append((index, Playbook.model_validate(item)))
        except ValidationError as exc:
            # A malformed step is reported at its own line by _check_steps.
            errors += [where((*loc, *err["loc"]), err["msg"]) for err in exc.errors()
                       if not str(err["msg"]).endswith(_STEP_SHAPE)]
        if not isinstance(item, dict):
            continue
        name = item.get("name")
        if isinstance(name, str):
            line = where.line((*loc, "name"))
            if name in first_line:
                errors.append(where((*loc, "name"), f"playbook name {name!r} is already used "
                                                    f"at line {first_line[name]}"))
            else:
                first_line[name] = line
        for key in ("target", "host"):
            if isinstance(item.get(key), str):
                try:
                    renderer.check(item[key])
                except ValueError as exc:
                    errors.append(where((*loc, key), str(exc)))
        for j, expr in enumerate(item.get("require") or []
                                 if isinstance(item.get("require"), list) else []):
            if isinstance(expr, str):
                try:
                    renderer.check(expr)
                except ValueError as exc:
                    errors.append(where((*loc, "require", j), str(exc)))
        if "approval_timeout" in item and item.get("mode", "auto") in ("auto", "observe"):
            errors.append(where((*loc, "approval_timeout"),
                                "approval_timeout applies only to `mode: approve`"))
        errors += _check_steps(item.get("actions"), loc, action_params, allowed_hosts,
                               renderer, where)
        skip = None
        if backends is not None:
            problems, skip = _check_backend(item, loc, backends, where)
            errors += problems
            if skip:
                skipped.append(skip)
                valid = [(i, p) for i, p in valid if i != index]
        if rules is not None:
            from receiver.playbooks.rules_check import check_against_rules, check_timing

            found = [("error", path, message)
                     for path, message in check_against_rules(item, rules)]
            found += [(severity, path, message)
                      for path, severity, message in check_timing(item, rules)]
            for severity, path, message in found:
                # A disabled playbook is checked, but cannot stop a start (ExecStartPre).
                if severity == "error" and not skip:
                    errors.append(where((*loc, *path), message))
                else:
                    warnings.append(where((*loc, *path), message))
    if errors:
        errors.sort(key=_position)
        raise ConfigError(f"{source}: {len(errors)} error(s)", errors=errors)
    return PlaybookFile(playbooks=[playbook for _, playbook in valid], skipped=skipped,
                        warnings=warnings)


def _check_backend(item: dict[str, Any], loc: tuple[Any, ...], backends: Backends,
                   where: _Locator) -> tuple[list[str], str | None]:
    """(errors, skip warning): an unknown backend or an action it cannot take is an error;
    a known backend that is not enabled leaves the playbook out, with a warning."""
    executor = item.get("executor", "docker")
    if not isinstance(executor, str):
        return [], None  # the model reports the type
    if executor not in backends.known:
        return [where((*loc, "executor"), f"unknown executor {executor!r} (known: "
                      f"{', '.join(sorted(backends.known))})")], None
    errors = []
    for j, step in enumerate(item.get("actions") or []):
        split = _split_step(step)
        limit = backends.action_limits.get(split[0]) if split else None
        if split and limit is not None and executor not in limit:
            errors.append(where((*loc, "actions", j), f"action {split[0]!r} is not supported "
                                f"by executor {executor!r} (only {', '.join(sorted(limit))})"))
    if executor not in backends.enabled and not errors:
        name = item.get("name", "?")
        return [], where((*loc, "executor"), f"playbook {name!r} skipped: the {executor} "
                         f"backend is not enabled (AUTOFIX_{executor.upper()}_ENABLED=true)")
    return errors, None


def _position(error: str) -> tuple[int, int]:
    found = re.match(r"^.*?:(\d+):(\d+): ", error)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _split_step(item: Any) -> tuple[str, Any] | None:
    """`name` or `{name: params}` → (name, params); None when it is neither."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and len(item) == 1:
        name, params = next(iter(item.items()))
        return str(name), {} if params is None else params
    return None


def _check_steps(steps: Any, loc: tuple[Any, ...], action_params: Mapping[str, type[BaseModel]],
                 allowed_hosts: Sequence[str] | None, renderer: TemplateRenderer,
                 where: _Locator) -> list[str]:
    """Every step's action and params, checked the way the runner checks them."""
    errors: list[str] = []
    for j, item in enumerate(steps if isinstance(steps, list) else []):
        step = _split_step(item)
        if step is None:
            errors.append(where((*loc, "actions", j), _STEP_SHAPE))
            continue
        action, params = step
        step_loc = (*loc, "actions", j)
        model = action_params.get(action)
        if model is None:
            known = ", ".join(sorted(action_params))
            errors.append(where(step_loc, f"unknown action {action!r} (known: {known})"))
            continue
        if not isinstance(params, dict):
            continue  # "params must be a mapping" comes from the model
        for path, template in _templates(params):
            try:
                renderer.check(template)
            except ValueError as exc:
                errors.append(where((*step_loc, action, *path), str(exc)))
        try:
            validated = model.model_validate(params)
        except ValidationError as exc:
            # A templated value is only typed after rendering, at run time.
            errors += [where((*step_loc, action, *err["loc"]), err["msg"])
                       for err in exc.errors() if not _has_template(_at(params, err["loc"]))]
            continue
        url = getattr(validated, "url", None)
        if action == "http" and isinstance(url, str) and not _has_template(url):
            problem = _http_url_problem(url, allowed_hosts)
            if problem:
                errors.append(where((*step_loc, action, "url"), problem))
    return errors


def _http_url_problem(url: str, allowed_hosts: Sequence[str] | None) -> str | None:
    """What the http action would refuse at run time: the same strict parser decides."""
    from receiver.domain.safe_url import UnsafeUrl, is_allowed, parse_allowed_host, parse_safe_url

    try:
        parsed = parse_safe_url(url)
    except UnsafeUrl as exc:
        return str(exc)
    if allowed_hosts is None:
        return None
    try:
        allowed = [parse_allowed_host(entry) for entry in allowed_hosts]
    except UnsafeUrl as exc:
        return str(exc)
    if not is_allowed(parsed, allowed):
        return (f"{parsed.netloc} (port {parsed.port}) is not in AUTOFIX_HTTP_ALLOWED_HOSTS "
                f"({', '.join(allowed_hosts) or 'empty'}); add it there or call another host")
    return None


def _templates(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        return [(path, value)] if _has_template(value) else []
    if isinstance(value, list):
        return [t for i, v in enumerate(value) for t in _templates(v, (*path, i))]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _templates(v, (*path, k))]
    return []


def _at(value: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        found = ((isinstance(value, dict) and part in value)
                 or (isinstance(value, list) and isinstance(part, int) and part < len(value)))
        if not found:
            return None
        value = value[part]
    return value


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    return False


# ---- YAML: one parse, positions for every node, `on:` as a string key -------------------

class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. In YAML 1.1 (PyYAML's default) `on`, `off`, `yes`
    and `no` are booleans, which turns a playbook's `on: firing` key into True."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))

Marks = dict[tuple[Any, ...], tuple[int, int]]


def load_yaml(text: str, source: str) -> tuple[Any, Marks]:
    """The document and a map path → (line, column), both 1-based. A YAML error is one
    ConfigError line naming the file and the position."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        context = ""
        if exc.context:
            started = exc.context_mark
            context = (f" ({exc.context} at line {started.line + 1}, column "
                       f"{started.column + 1})" if started and started != mark
                       else f" ({exc.context})")
        message = f"{where}: invalid YAML: {exc.problem}{context}"
        raise ConfigError(message, errors=[message]) from exc
    except yaml.YAMLError as exc:
        message = f"{source}: invalid YAML: {exc}"
        raise ConfigError(message, errors=[message]) from exc
    finally:
        loader.dispose()
    marks: Marks = {}
    _collect_marks(node, (), marks)
    return data, marks


def _collect_marks(node: yaml.Node | None, path: tuple[Any, ...], marks: Marks) -> None:
    if node is None:
        return
    marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            if child in marks:
                marks.setdefault(("__duplicate__", *child),
                                 (key.start_mark.line + 1, key.start_mark.column + 1))
                continue
            marks[child] = (key.start_mark.line + 1, key.start_mark.column + 1)
            _collect_marks(value, child, marks)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_marks(item, (*path, index), marks)


class _Locator:
    """Formats "file:line:column: path: message" for a pydantic-style location."""

    def __init__(self, source: str, marks: Marks) -> None:
        self.source = source
        self.marks = marks
        self.duplicate_keys = [
            f"{source}:{line}:{column}: {'.'.join(str(p) for p in path[1:])}: "
            "this key appears twice in its mapping (YAML keeps only the last)"
            for path, (line, column) in marks.items() if path[:1] == ("__duplicate__",)]

    def position(self, loc: tuple[Any, ...]) -> tuple[int, int] | None:
        for end in range(len(loc), -1, -1):  # the deepest located ancestor
            found = self.marks.get(tuple(loc[:end]))
            if found is not None:
                return found
        return None

    def line(self, loc: tuple[Any, ...]) -> int:
        found = self.position(loc)
        return found[0] if found else 0

    def __call__(self, loc: tuple[Any, ...], message: str) -> str:
        found = self.position(tuple(loc))
        where = f"{self.source}:{found[0]}:{found[1]}" if found else self.source
        path = ".".join(str(part) for part in loc) or "(file)"
        return f"{where}: {path}: {message.removeprefix('Value error, ')}"
