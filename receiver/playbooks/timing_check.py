"""The timing contract between action rules and Prometheus' scrape and evaluation intervals.

`autofix check-config` checks every alert that a playbook acts on (a playbook with a step
other than `notify`) against the prometheus.yml that scrapes its series: an alert that
one failed scrape can fire would restart a healthy container. The exact condition is
documented in docs/detection-budget.md ("The timing contract"):

* A scrape that fails at time s writes `up = 0` with timestamp s and marks the target's
  series stale; the next scrape (s + interval) replaces it once it has answered, within
  the timeout. So an evaluation at timestamp t sees the failure only for
  s <= t < s + scrape_interval + scrape_timeout: one failed scrape is visible for less
  than V = scrape_interval + scrape_timeout (+ the longest range window W of the
  expression, which keeps the failed sample in view W longer).
* A rule fires after it has been true at consecutive evaluations spanning `for:`;
  evaluations come every evaluation_interval E, so the hold it needs is
  E * ceil(for / E) (0 without `for:`).
* Hence: an expression that a failed scrape can make true (it reads `up`, or uses
  `absent`, `absent_over_time` or `unless`, which see stale series as missing) is safe
  iff E * ceil(for / E) >= V. Otherwise one failed scrape can fire it: an error.
* Every range window `[w]` of an acted-on rule must hold two samples even when one
  scrape in it fails (rate(), deriv() return nothing from fewer, and `for:` starts
  over): w >= 3 * scrape_interval. Otherwise: an error.

The jobs an expression reaches are those its selectors pin with `job="…"`; when a selector
does not pin one, every job of the prometheus.yml. A pinned job the prometheus.yml does not
scrape is a warning (the alert can never fire there).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from receiver.domain.errors import ConfigError

__all__ = ["JobTiming", "PrometheusTiming", "Severity", "TimingProblem", "job_label",
           "load_prometheus_timing", "parse_prometheus_duration", "timing_problems"]

Severity = str  # "error" or "warning"

# Prometheus' own defaults (2.42 config/config.go).
DEFAULT_SCRAPE_INTERVAL_S = 60.0
DEFAULT_SCRAPE_TIMEOUT_S = 10.0
DEFAULT_EVALUATION_INTERVAL_S = 60.0

_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
           "y": 31536000.0}
_DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_RANGE = re.compile(r"\[\s*((?:\d+(?:ms|s|m|h|d|w|y))+)\s*(?::[^\]]*)?\]")
# Reading `up`, or a function/operator that turns a stale (missing) series into a result.
_FAILURE_SENSITIVE = re.compile(r"(?<![\w:])up\b(?!\s*\()|\babsent(?:_over_time)?\s*\(|"
                                r"\bunless\b")
_JOB_PINNED = re.compile(r'\bjob\s*=(?!~)\s*"((?:[^"\\]|\\.)*)"')
_SELECTOR = re.compile(r"\{([^{}]*)\}")


def parse_prometheus_duration(text: Any) -> float:
    """Seconds of a Prometheus duration (`1m30s`, `1500ms`); ValueError otherwise."""
    value = str(text).strip()
    if not _DURATION.match(value):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(value))


def _seconds(text: float) -> str:
    """2.0 → 2s, 1.5 → 1500ms, 90.0 → 1m30s."""
    if text < 1 or (text != int(text) and text < 60):
        return f"{round(text * 1000)}ms"
    whole = int(text)
    minutes, seconds = divmod(whole, 60)
    if minutes and seconds:
        return f"{minutes}m{seconds}s"
    return f"{minutes}m" if minutes else f"{seconds}s"


def job_label(scrape: dict[str, Any]) -> str:
    """The `job` label a scrape config's series carry: its job_name, unless a relabel rule
    sets `job` to a fixed value (a fleet's per-host jobs are all `containers`,
    docs/examples/prometheus-fleet.yml); the last such rule wins, as in Prometheus."""
    job = str(scrape.get("job_name", ""))
    for relabel in scrape.get("relabel_configs") or []:
        if (relabel.get("target_label") == "job" and not relabel.get("source_labels")
                and relabel.get("action", "replace") == "replace"
                and "$" not in str(relabel.get("replacement", "$1"))):
            job = str(relabel["replacement"])
    return job


@dataclass(frozen=True)
class JobTiming:
    interval_s: float
    timeout_s: float


@dataclass(frozen=True)
class PrometheusTiming:
    """What one prometheus.yml sets: the global evaluation interval and each job's scrape."""
    source: str
    evaluation_interval_s: float
    jobs: dict[str, JobTiming]


def load_prometheus_timing(path: Path, config: dict[str, Any]) -> PrometheusTiming:
    """Each job's scrape interval and timeout with Prometheus' inheritance: a job without
    its own takes the global ones, and an inherited timeout longer than the job's interval
    becomes the interval. ConfigError (one line) on a duration Prometheus would refuse."""
    try:
        glob = config.get("global") or {}
        interval = parse_prometheus_duration(glob.get("scrape_interval", "1m"))
        timeout = (parse_prometheus_duration(glob["scrape_timeout"]) if "scrape_timeout" in glob
                   else min(DEFAULT_SCRAPE_TIMEOUT_S, interval))
        evaluation = parse_prometheus_duration(glob.get("evaluation_interval", "1m"))
        jobs: dict[str, JobTiming] = {}
        for scrape in config.get("scrape_configs") or []:
            job_interval = (parse_prometheus_duration(scrape["scrape_interval"])
                            if "scrape_interval" in scrape else interval)
            job_timeout = (parse_prometheus_duration(scrape["scrape_timeout"])
                           if "scrape_timeout" in scrape else min(timeout, job_interval))
            job, mine = job_label(scrape), JobTiming(job_interval, job_timeout)
            # Several scrape configs, one job label (a fleet): the slowest one counts.
            jobs[job] = max(jobs.get(job, mine), mine,
                            key=lambda t: (t.interval_s + t.timeout_s, t.interval_s))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return PrometheusTiming(str(path), evaluation, jobs)


@dataclass(frozen=True)
class TimingProblem:
    severity: Severity
    message: str


def _reached_jobs(expr: str, timing: PrometheusTiming) -> tuple[dict[str, JobTiming], list[str]]:
    """(jobs whose scrapes the expression reads, pinned jobs the prometheus.yml lacks)."""
    text = re.sub(r"#[^\n]*", "", expr)
    pinned: set[str] = set()
    for selector in _SELECTOR.findall(text):
        found = _JOB_PINNED.findall(selector)
        if not found:
            return dict(timing.jobs), []  # a selector that may read any job
        pinned |= set(found)
    if not pinned:
        return dict(timing.jobs), []
    missing = sorted(pinned - set(timing.jobs))
    return {job: timing.jobs[job] for job in sorted(pinned) if job in timing.jobs}, missing


def _plain(expr: str) -> str:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return re.sub(r"#[^\n]*", "", text)


def timing_problems(name: str, source: str, expr: str, for_s: float,
                    group_interval_s: float | None, timing: PrometheusTiming
                    ) -> list[TimingProblem]:
    """The timing contract for one alerting rule that a playbook acts on."""
    jobs, missing = _reached_jobs(expr, timing)
    problems = [TimingProblem("warning", f"{name} ({source}) selects job=\"{job}\", which "
                              f"{timing.source} does not scrape: it can never fire there")
                for job in missing]
    evaluation = group_interval_s or timing.evaluation_interval_s
    hold = evaluation * math.ceil(for_s / evaluation) if for_s > 0 else 0.0
    plain = _plain(expr)
    windows = [parse_prometheus_duration(w) for w in _RANGE.findall(plain)]
    window = max(windows, default=0.0)
    sensitive = bool(_FAILURE_SENSITIVE.search(plain))
    where = (f"evaluated every {_seconds(evaluation)}"
             + (", the group's interval" if group_interval_s else
                f", {timing.source}'s evaluation_interval"))
    failing = []
    for job, scrape in jobs.items():
        visible = scrape.interval_s + scrape.timeout_s + window
        if sensitive and hold < visible:
            failing.append((job, scrape, visible))
    for job, scrape, visible in failing[:3]:
        window_text = f" + range window {_seconds(window)}" if window else ""
        problems.append(TimingProblem("error", (
            f"{name} ({source}) can fire on ONE failed scrape of job {job}: its for: "
            f"{_seconds(for_s)} ({where}) holds {_seconds(hold)}, less than the "
            f"{_seconds(visible)} a failed scrape stays visible (scrape_interval "
            f"{_seconds(scrape.interval_s)} + scrape_timeout {_seconds(scrape.timeout_s)}"
            f"{window_text}, {timing.source}). Fix: set the rule's for: to at least "
            f"{_seconds(visible)}, or scrape job {job} so that scrape_interval + "
            f"scrape_timeout{window_text and ' + window'} <= {_seconds(hold)} "
            "(docs/detection-budget.md, the timing contract)")))
    if len(failing) > 3:
        problems.append(TimingProblem("error", f"{name}: and {len(failing) - 3} more job(s) "
                                      "where one failed scrape can fire it"))
    for job, scrape in jobs.items():
        short = [w for w in windows if w < 3 * scrape.interval_s]
        if short:
            problems.append(TimingProblem("error", (
                f"{name} ({source}): range window [{_seconds(min(short))}] holds fewer than "
                f"2 samples of job {job} (scrape_interval {_seconds(scrape.interval_s)}) "
                "once one scrape fails, so rate()/deriv() return nothing and for: starts "
                f"over. Fix: a window of at least {_seconds(3 * scrape.interval_s)} "
                "(3 scrape intervals)")))
            break
    return problems
