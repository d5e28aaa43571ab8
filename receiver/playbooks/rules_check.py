"""Cross-check playbooks against the Prometheus alert rules that feed them.

`autofix check-config --rules rules/alert_rules.yml` (found by default next to the
playbooks file) reports a playbook whose matchers no rule's alert can satisfy, and a
template that names a label or annotation the alerts it matches do not carry.

What an alert is taken to carry (documented in README):
  * `alertname`, and the rule's own `labels:`;
  * when the expression's leftmost operand aggregates (`sum by (a, b) (…)`, also inside
    parentheses, `… > 0.2 and …`, or `histogram_quantile(φ, sum by (…, le) (…))`): exactly
    the `by` labels (and labels a `group_left/right (…)` join copies in); `vector(…)`
    carries none;
  * otherwise (a selector, `rate(…)`, `without`, `topk`, `or`, …) an over-approximation:
    every label the expression names (selectors and grouping clauses) and the target
    labels scrapes attach: `instance` and `job`, plus, when a prometheus.yml is found,
    `global.external_labels` and each scrape config's `relabel_configs` target labels and
    `static_configs` labels - only those of the jobs the expression pins when every
    selector says `job="…"` (`up{job="swarm-tasks"}` carries `task`, `up{job="containers"}`
    does not), else those of every job.
A label only the metric itself carries (say `route`) cannot be known without scraping:
name it in a grouping clause or in the rule's labels, or read it with `labels.get('route')`,
which is never an error. What the over-approximation lets through fails at run time, where
the incident is escalated with the reason.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from receiver.domain.errors import ConfigError
from receiver.playbooks.matchers import Matcher
from receiver.playbooks.timing_check import (
    PrometheusTiming,
    job_label,
    load_prometheus_timing,
    parse_prometheus_duration,
    timing_problems,
)

__all__ = [
    "DEFAULT_TARGET_LABELS",
    "AlertRule",
    "AlertRules",
    "ScrapeLabels",
    "check_against_rules",
    "check_timing",
    "find_prometheus_config",
    "find_rules",
    "load_alert_rules",
    "prometheus_candidates",
    "result_labels",
    "rule_candidates",
    "selected_jobs",
    "template_refs",
]

DEFAULT_TARGET_LABELS = frozenset({"instance", "job"})
_UNKNOWN = None  # a label the alert carries with a value not known in advance
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"\{([^{}]*)\}")
_SELECTOR_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_DICT_METHODS = frozenset(dir(dict))


@dataclass(frozen=True)
class AlertRule:
    name: str
    labels: dict[str, str | None]  # name → value, None when not known in advance
    annotations: frozenset[str]
    source: str  # file:line
    # For the timing contract (timing_check.py): expression, `for:` and the group's own
    # evaluation interval (None: prometheus.yml's global one).
    expr: str = ""
    for_s: float = 0.0
    group_interval_s: float | None = None

    def could_match(self, matchers: Iterable[Matcher]) -> bool:
        for matcher in matchers:
            if matcher.name in self.labels:
                value = self.labels[matcher.name]
                if value is not _UNKNOWN and not matcher.matches({matcher.name: value}):
                    return False
            elif not matcher.matches({}):  # a missing label equals ""
                return False
        return True


@dataclass(frozen=True)
class AlertRules:
    rules: list[AlertRule]
    sources: list[str] = field(default_factory=list)
    # The scrape and evaluation intervals of the prometheus.yml, when one was given.
    timing: PrometheusTiming | None = None


@dataclass(frozen=True)
class ScrapeLabels:
    """Target labels a scrape attaches: to every series, and per job."""
    common: frozenset[str]
    by_job: dict[str, frozenset[str]]

    def for_jobs(self, jobs: set[str] | None) -> set[str]:
        """The labels series of these jobs may carry; every job's when None or when a job
        is not in this prometheus.yml (the rules may be scraped by another one)."""
        if jobs is None or not jobs <= set(self.by_job):
            return set(self.common).union(*self.by_job.values())
        return set(self.common).union(*(self.by_job[job] for job in jobs))


def _read_prometheus_config(prometheus_config: Path | None) -> dict[str, Any]:
    if prometheus_config is None:
        return {}
    try:
        config = yaml.safe_load(prometheus_config.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{prometheus_config}: cannot read: {exc}".splitlines()[0]) from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{prometheus_config}: not a prometheus.yml (a mapping)")
    return config


def _target_labels(prometheus_config: Path | None, config: dict[str, Any]) -> ScrapeLabels:
    if prometheus_config is None:
        return ScrapeLabels(DEFAULT_TARGET_LABELS, {})
    external = (config.get("global") or {}).get("external_labels") or {}
    by_job: dict[str, frozenset[str]] = {}
    for scrape in config.get("scrape_configs") or []:
        labels: set[str] = set()
        for relabel in scrape.get("relabel_configs") or []:
            target = relabel.get("target_label")
            if target and not str(target).startswith("__"):
                labels.add(str(target))
        for static in scrape.get("static_configs") or []:
            labels |= {str(k) for k in (static.get("labels") or {})}
        job = job_label(scrape)
        by_job[job] = by_job.get(job, frozenset()) | labels
    return ScrapeLabels(DEFAULT_TARGET_LABELS | {str(k) for k in external}, by_job)


_JOB_PINNED = re.compile(r'\bjob\s*=(?!~)\s*"((?:[^"\\]|\\.)*)"')


def selected_jobs(expr: str) -> set[str] | None:
    """The jobs every selector of the expression pins with `job="…"`, so its series carry
    only those jobs' target labels (`up{job="swarm-tasks"} == 0`: task and node, never
    another job's); None when a selector may read any job or the result may come from
    a side that is not pinned (`or`, `group_right`)."""
    text = re.sub(r"#[^\n]*", "", expr)
    if re.search(r"\b(?:or|group_right)\b", _plain(expr)):
        return None
    jobs: set[str] = set()
    selectors = _SELECTOR.findall(text)
    for selector in selectors:
        pinned = _JOB_PINNED.findall(selector)
        if not pinned:
            return None
        jobs |= set(pinned)
    return jobs or None


def _plain(expr: str) -> str:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # values never name labels
    return re.sub(r"#[^\n]*", "", text).strip()


def _closing(text: str, start: int) -> int | None:
    """Index of the parenthesis closing the one at `start`."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] in "([{":
            depth += 1
        elif text[index] in ")]}":
            depth -= 1
            if depth == 0:
                return index
    return None


def _names(group: str) -> set[str]:
    return {part.strip() for part in group.split(",") if part.strip()}


_AGGREGATION = re.compile(r"^(?:sum|min|max|avg|group|stddev|stdvar|count|quantile)\b\s*")
_CLAUSE = re.compile(r"^(by|without)\s*\(([^)]*)\)\s*")


def result_labels(expr: str) -> set[str] | None:
    """The labels an expression's result keeps when its leftmost operand aggregates them
    away (`sum by (a, b) (…)`, also inside parentheses or histogram_quantile); None when
    that cannot be told without the metric's own labels."""
    text = _plain(expr)
    if re.search(r"\bor\b", text):
        return None  # a union: either side's labels
    if text.startswith("("):
        end = _closing(text, 0)
        return None if end is None else result_labels(text[1:end])
    if re.match(r"^vector\s*\(", text):
        return set()
    found = re.match(r"^histogram_quantile\s*\(", text)
    if found:
        end = _closing(text, found.end() - 1)
        inner = text[found.end():end] if end is not None else ""
        depth, comma = 0, None
        for index, char in enumerate(inner):
            depth += char in "([{"
            depth -= char in ")]}"
            if char == "," and depth == 0:
                comma = index
                break
        labels = result_labels(inner[comma + 1:]) if comma is not None else None
        return None if labels is None else labels - {"le"}
    found = _AGGREGATION.match(text)
    if not found:
        return None  # a selector or a function of one: the metric's labels, unknown here
    rest = text[found.end():]
    clause = _CLAUSE.match(rest)
    if clause:  # sum by (a) (…)
        return _names(clause.group(2)) if clause.group(1) == "by" else None
    if not rest.startswith("("):
        return None
    end = _closing(rest, 0)
    after = _CLAUSE.match(rest[end + 1:].lstrip()) if end is not None else None
    if after:  # sum (…) by (a)
        return _names(after.group(2)) if after.group(1) == "by" else None
    return set()  # sum (…): no labels left


def _expression_labels(expr: str) -> set[str]:
    text = _plain(expr)
    found: set[str] = set()
    for group in _GROUPING.findall(text):
        found |= {part.strip() for part in group.split(",") if part.strip()}
    for selector in _SELECTOR.findall(text):
        found |= set(_SELECTOR_LABEL.findall(selector))
    return found


def _joined_labels(expr: str) -> set[str]:
    """Labels a group_left/group_right join copies in from the other side."""
    found: set[str] = set()
    for group in re.findall(r"\bgroup_(?:left|right)\s*\(([^)]*)\)", _plain(expr)):
        found |= _names(group)
    return found


def load_alert_rules(paths: list[Path], prometheus_config: Path | None) -> AlertRules:
    """Alerting rules of Prometheus rule files, with the labels their alerts may carry.
    ConfigError (one line) when a file cannot be read or is not shaped like one."""
    try:
        return _load_alert_rules(paths, prometheus_config)
    except (AttributeError, TypeError, KeyError) as exc:
        shown = ", ".join(str(p) for p in [*paths, prometheus_config] if p)
        raise ConfigError(f"{shown}: not shaped like Prometheus rules (groups: [{{name, "
                          f"rules: [{{alert, expr, labels}}]}}]) or prometheus.yml: {exc}"
                          ) from exc


def _load_alert_rules(paths: list[Path], prometheus_config: Path | None) -> AlertRules:
    config = _read_prometheus_config(prometheus_config)
    target = _target_labels(prometheus_config, config)
    timing = (load_prometheus_timing(prometheus_config, config)
              if prometheus_config is not None else None)
    rules: list[AlertRule] = []
    for path in paths:
        try:
            document = yaml.compose(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the rules: {exc}".splitlines()[0]) from exc
        data = yaml.safe_load(path.read_text()) or {}
        lines = _rule_lines(document)
        for g, group in enumerate(data.get("groups") or []):
            interval = _duration(group.get("interval"), path)
            for r, rule in enumerate(group.get("rules") or []):
                if "alert" not in rule:
                    continue  # a recording rule
                expr = str(rule.get("expr", ""))
                kept = result_labels(expr)
                carried = (target.for_jobs(selected_jobs(expr)) | _expression_labels(expr)
                           if kept is None else kept | _joined_labels(expr))
                labels: dict[str, str | None] = dict.fromkeys(carried, _UNKNOWN)
                for key, value in (rule.get("labels") or {}).items():
                    text = str(value)
                    labels[str(key)] = _UNKNOWN if "{{" in text else text
                labels["alertname"] = str(rule["alert"])
                rules.append(AlertRule(
                    str(rule["alert"]), labels,
                    frozenset(str(k) for k in (rule.get("annotations") or {})),
                    f"{path}:{lines.get((g, r), 0)}", expr,
                    _duration(rule.get("for"), path) or 0.0, interval))
    return AlertRules(rules, [str(p) for p in paths], timing)


def _duration(value: Any, path: Path) -> float | None:
    if value is None:
        return None
    try:
        return parse_prometheus_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _rule_lines(document: yaml.Node | None) -> dict[tuple[int, int], int]:
    lines: dict[tuple[int, int], int] = {}
    if not isinstance(document, yaml.MappingNode):
        return lines
    for key, groups in document.value:
        if key.value != "groups" or not isinstance(groups, yaml.SequenceNode):
            continue
        for g, group in enumerate(groups.value):
            for gkey, rules in group.value if isinstance(group, yaml.MappingNode) else []:
                if gkey.value == "rules" and isinstance(rules, yaml.SequenceNode):
                    for r, rule in enumerate(rules.value):
                        lines[(g, r)] = rule.start_mark.line + 1
    return lines


# The documented layouts, as (rules directory relative to the playbooks file's directory,
# the rule files there). The repository: rules/ beside the file or one directory up
# (receiver/playbooks.yml). A host (docs/deploy.md): /etc/autofix/playbooks.yml with the
# rules copied to /etc/prometheus. Last, rules/ in the current directory: a playbook
# drafted anywhere and checked from a checkout's top (`autofix check-config /tmp/new.yml`).
RULE_LAYOUTS = (
    (".", "rules", ("alert_rules.yml", "autofix_self.yml")),
    ("..", "rules", ("alert_rules.yml", "autofix_self.yml")),
    ("..", "prometheus", ("autofix_rules.yml", "autofix_self_rules.yml")),
)
_WORKING_DIRECTORY_LAYOUT = RULE_LAYOUTS[0]


def _layout_folders(playbooks: Path) -> list[tuple[Path, tuple[str, ...]]]:
    base = playbooks.resolve().parent
    folders: list[tuple[Path, tuple[str, ...]]] = [
        ((base / up / directory).resolve(), names) for up, directory, names in RULE_LAYOUTS]
    _, directory, names = _WORKING_DIRECTORY_LAYOUT
    folders.append(((Path.cwd() / directory).resolve(), names))
    return folders


def rule_candidates(playbooks: Path) -> list[Path]:
    """Where find_rules looks, in order (the first file of each layout)."""
    return [folder / names[0] for folder, names in _layout_folders(playbooks)]


def find_rules(playbooks: Path) -> list[Path]:
    """The rule files of the first documented layout whose main file exists: its
    alert_rules.yml (autofix_rules.yml on a host) and, when present, the self-alerts file
    beside it. Empty when no layout matches."""
    for folder, names in _layout_folders(playbooks):
        if (folder / names[0]).is_file():
            return [folder / name for name in names if (folder / name).is_file()]
    return []


def prometheus_candidates(rules: Path) -> list[Path]:
    base = rules.resolve().parent
    return [base.parent / "prometheus" / "prometheus.yml", base / "prometheus.yml"]


def find_prometheus_config(rules: Path) -> Path | None:
    """prometheus/prometheus.yml next to the rules directory (the repository), or
    prometheus.yml beside the rules file (/etc/prometheus on a host)."""
    return next((c for c in prometheus_candidates(rules) if c.is_file()), None)


def template_refs(template: str) -> list[tuple[str, str]]:
    """(`labels` or `annotations`, key) a template reads unguarded: `labels.x` and
    `labels['x']`. `labels.get('x')`, `labels.x | default(...)` and `is defined` tests
    tolerate a missing key and are not listed."""
    env = ImmutableSandboxedEnvironment()
    try:
        tree = env.parse(template)
    except Exception:  # a syntax error is reported by the template check itself
        return []
    refs: list[tuple[str, str]] = []
    _walk(tree, refs, guarded=False)
    return refs


def _walk(node: nodes.Node, refs: list[tuple[str, str]], guarded: bool) -> None:
    if isinstance(node, nodes.Filter) and node.name in ("default", "d"):
        if node.node is not None:
            _walk(node.node, refs, True)
        for arg in node.args:
            _walk(arg, refs, guarded)
        return
    if isinstance(node, nodes.Test) and node.name in ("defined", "undefined"):
        _walk(node.node, refs, True)
        return
    key: str | None = None
    if isinstance(node, nodes.Getattr) and node.attr not in _DICT_METHODS:
        key = node.attr
    elif (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
          and isinstance(node.arg.value, str)):
        key = node.arg.value
    target = getattr(node, "node", None)
    if (key is not None and isinstance(target, nodes.Name)
            and target.name in ("labels", "annotations") and not guarded):
        refs.append((target.name, key))
    for child in node.iter_child_nodes():
        _walk(child, refs, guarded)


def _templates(value: Any, path: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        return [(path, value)] if "{{" in value or "{%" in value else []
    if isinstance(value, list):
        return [t for i, v in enumerate(value) for t in _templates(v, (*path, i))]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _templates(v, (*path, k))]
    return []


def check_against_rules(item: dict[str, Any], rules: AlertRules
                        ) -> list[tuple[tuple[Any, ...], str]]:
    """(path inside the playbook, message) for each problem of one raw playbook mapping.

    It works on the raw mapping so that a playbook with other errors is still checked.
    With a broken matcher only the remaining ones are used: if they match no alert, the
    full list cannot either; the label check is then skipped (it could blame labels of
    alerts the full list would not match)."""
    from receiver.playbooks.matchers import parse_matcher

    matchers: list[Matcher] = []
    complete = isinstance(item.get("matchers"), list)
    for text in item.get("matchers") or [] if complete else []:
        try:
            matchers.append(parse_matcher(text))
        except (ValueError, TypeError):
            complete = False
    matched = [rule for rule in rules.rules if rule.could_match(matchers)]
    if not matched:
        names = ", ".join(sorted({rule.name for rule in rules.rules})) or "none"
        return [(("matchers",), "no alert of " + ", ".join(rules.sources)
                 + f" can satisfy these matchers (alerts there: {names})")]
    if not complete:
        return []
    target = item.get("target", "{{ labels.container }}")
    templates = _templates(target, ("target",)) + _templates(item.get("require"), ("require",))
    for j, step in enumerate(item.get("actions") or []):
        if isinstance(step, dict) and len(step) == 1:
            name, params = next(iter(step.items()))
            templates += _templates(params, ("actions", j, name))
    problems: list[tuple[tuple[Any, ...], str]] = []
    for path, template in templates:
        for kind, key in dict.fromkeys(template_refs(template)):
            missing = [rule for rule in matched
                       if key not in (rule.labels if kind == "labels" else rule.annotations)]
            if not missing:
                continue
            known = sorted(set().union(*((rule.labels if kind == "labels"
                                          else rule.annotations) for rule in missing)))
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {kind}.{close[0]}? " if close else ""
            alerts = ", ".join(f"{rule.name} ({rule.source})" for rule in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            problems.append((path, f"{kind}.{key} is not carried by alert(s) {alerts}{more} "
                             f"that this playbook matches; {hint}(use {kind}.get('{key}') "
                             "where it may be missing)"))
    return problems


def _acts(item: dict[str, Any]) -> bool:
    """The playbook has a step other than `notify` (it changes something)."""
    for step in item.get("actions") or []:
        name = step if isinstance(step, str) else (
            next(iter(step)) if isinstance(step, dict) and len(step) == 1 else None)
        if name is not None and name != "notify":
            return True
    return False


def check_timing(item: dict[str, Any], rules: AlertRules
                 ) -> list[tuple[tuple[Any, ...], str, str]]:
    """(path, "error" or "warning", message) for each alert this playbook acts on that
    breaks the timing contract of timing_check.py; nothing without a prometheus.yml or
    for a playbook that only notifies."""
    from receiver.playbooks.matchers import parse_matcher

    if rules.timing is None or not _acts(item) or not isinstance(item.get("matchers"), list):
        return []
    try:
        matchers = [parse_matcher(text) for text in item["matchers"]]
    except (ValueError, TypeError):
        return []  # reported by the matcher check
    found: list[tuple[tuple[Any, ...], str, str]] = []
    for rule in rules.rules:
        if rule.could_match(matchers):
            found += [(("matchers",), problem.severity, problem.message)
                      for problem in timing_problems(rule.name, rule.source, rule.expr,
                                                     rule.for_s, rule.group_interval_s,
                                                     rules.timing)]
    return found
