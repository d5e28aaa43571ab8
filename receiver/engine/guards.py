"""The guards every run passes before it may touch a target, in the documented order.

0 resolve the target (name, ID, ID prefix...) to one canonical identity: every guard below
keys on its canonical name and checks its ID · 1 target allowed (opt-in label, never
protected, never autofix itself) · 2 target exists · 3 not already recovering ·
(the kill switch: nothing mutating is admitted while automation is paused) ·
(maintenance windows: nothing that leaves the process runs on what one matches) ·
4 cooldown per (playbook, target) · 5 circuit breaker per target · then, for a run that
changes a target, the blast radius (blast_radius.py): the playbook's action budgets, then
the host storm guard. README "Guards: the decision order" is this order with every reason.
6 (global concurrency) and 7 (one run per target) are enforced when a worker claims a run,
and 7 again once the run's target is canonical (take_target).

What a name, an ID or "already recovering" mean is the backend's business (executor/):
nothing here belongs to one backend.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from receiver.actions.registry import IncidentView
from receiver.config.settings import Settings
from receiver.engine.blast_radius import Exceeded, StormHit, StormPolicy, budget_stop, storm_stop
from receiver.engine.breaker import BreakerDecision, BreakerSnapshot, count_window_start, decide
from receiver.executor import (
    Executor,
    ExecutorError,
    TargetAmbiguous,
    TargetIdentity,
    TargetNotFound,
)
from receiver.playbooks.config import Playbook
from receiver.playbooks.ingest import resolve_host, resolve_target, template_context
from receiver.playbooks.matchers import Matcher, parse_matcher
from receiver.playbooks.templating import TemplateRenderError
from receiver.store.engine import Database
from receiver.store.lifecycle import RunStatus, active_pause
from receiver.store.models import Breaker, MaintenanceWindow, Run

if TYPE_CHECKING:
    from receiver.engine.services import Services

__all__ = ["GuardStop", "Subject", "admit", "check_run_target", "check_target", "endpoint_key",
           "load_breaker", "maintenance_stop", "on_host", "pause_stop", "pick_host",
           "take_target", "target_lock",
           "window_holds", "windows_in_force"]

_KEY_MAX = 255  # runs.target and breakers.target
_sqlite_target_lock = threading.Lock()


@dataclass(frozen=True)
class GuardStop:
    """Why a run may not proceed. `reason` is machine-readable."""

    reason: str
    message: str
    retry_after_s: float | None = None
    escalate: bool = False
    breaker: BreakerDecision | None = None
    target: str | None = None  # the canonical target, when resolution got that far
    storm: StormHit | None = None  # a host storm held the run back (host_storm.py)


@dataclass(frozen=True)
class Subject:
    """What a run is guarded as. `key` is the run's target for every guard (breaker,
    cooldown, the per-target lock, metrics); `name` is what the steps act on and what
    `{{ target }}` renders. For a container both are its canonical name; for an http-only
    playbook the key is `http:<host>:<port>` (its first http step's URL) and the name the
    playbook's target rendered from the labels. `host` is where a container lives (what
    budgets and the host storm guard count); None for a run that changes no target.
    `fleet_host` is the configured host it lives on when its backend has several (then
    `key` is `<fleet_host>/<name>`: one container name on two hosts is two targets); None
    with one host, whose keys stay the plain name."""

    key: str
    name: str
    identity: TargetIdentity | None = None
    host: str | None = None
    fleet_host: str | None = None


def pick_host(services: Services, playbook: Playbook, target: str, view: IncidentView
              ) -> tuple[str | None, str] | GuardStop:
    """(the host, the target without a `<host>/` prefix). None with one host or a backend
    without hosts. With several, a stored key `<host>/<name>` (a retry, a manual run naming
    it) carries its host; else the playbook's `host` rendered for the alert, which must
    name a configured host: never a guess."""
    hosts = services.executors.hosts(playbook.executor)
    if len(hosts) <= 1:
        return None, target
    prefix, slash, rest = target.partition("/")
    if slash and prefix in hosts:
        return prefix, rest
    host = resolve_host(playbook.host, view.labels, view.annotations, services.renderer)
    if host not in hosts:
        said = f"names host {host!r}" if host else "names no host"
        return GuardStop("unknown_host", f"the alert {said} (the playbook's host "
                         f"{playbook.host!r}); the configured hosts are {', '.join(hosts)}",
                         escalate=True)
    return host, target


def on_host(found: GuardStop | Subject, host: str | None, target: str) -> GuardStop | Subject:
    """A target's stop or subject keyed `<host>/<name>` when several hosts are configured
    (a stop before resolution: the name as the alert gave it)."""
    if host is None:
        return found
    if isinstance(found, Subject):
        return replace(found, key=f"{host}/{found.key}", fleet_host=host)
    return replace(found, target=f"{host}/{found.target or target}")


def check_run_target(services: Services, playbook: Playbook, target: str,
                     target_error: str | None, view: IncidentView,
                     lookback_s: float | None = None) -> GuardStop | Subject | None:
    """Guards 0-3 for a run. A playbook that changes a container is guarded as that container;
    one that only calls URLs, per URL host; one that only checks or notifies needs no guard
    (None)."""
    specs = [services.registry.get(step.action) for step in playbook.actions]
    if any(spec is None or spec.mutating for spec in specs):
        if not target and target_error:
            # The target template could not be rendered for this alert (a missing label, a
            # template error): nobody can act, so a human is told rather than the
            # incident staying open in silence.
            return GuardStop("invalid_target", f"no target for this alert: {target_error}",
                             escalate=True)
        picked = pick_host(services, playbook, target, view)
        if isinstance(picked, GuardStop):
            return picked
        host, target = picked
        try:
            executor = services.executor_for(playbook, host)
        except ExecutorError as exc:  # a run planned when its backend was still enabled
            return GuardStop("executor_unavailable", str(exc), escalate=True)
        return on_host(check_target(target, executor, services.settings, view.starts_at,
                                    lookback_s), host, target)
    for step, spec in zip(playbook.actions, specs, strict=True):
        if spec is not None and spec.endpoint is not None:
            # `{{ target }}` is the playbook's target from the labels, never the stored key.
            name = resolve_target(playbook.target, view.labels, view.annotations,
                                  services.renderer)[0] or ""
            variables = template_context(view.labels, view.annotations, view.status)
            variables["target"] = name
            try:
                url = services.renderer.render(str(step.params.get(spec.endpoint, "")),
                                               variables)
            except TemplateRenderError as exc:
                return GuardStop("invalid_target", str(exc)[:2000])
            key = endpoint_key(url)
            if key is None:
                return GuardStop("invalid_target", f"{step.action}: no host:port in {url!r}")
            return Subject(key, name)
    return None


def endpoint_key(url: str) -> str | None:
    """`http:<host>:<port>` for an http(s) URL (the default port made explicit), else None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme not in ("http", "https") or not host:
        return None
    host = f"[{host}]" if ":" in host else host
    default = 443 if parts.scheme == "https" else 80
    key = f"http:{host}:{default if port is None else port}"
    return key if len(key) <= _KEY_MAX else None


def check_target(target: str, executor: Executor, settings: Settings,
                 incident_starts_at: datetime, lookback_s: float | None = None
                 ) -> GuardStop | Subject:
    """Guards 0-3, which need the backend. Returns the resolved target when they all pass.
    `lookback_s` replaces AUTOFIX_RECOVERY_LOOKBACK_S (a dependent's run: 0)."""
    if not target or not executor.validate_target_syntax(target):
        # Nothing can be done for this alert as it is: a human must look.
        return GuardStop("invalid_target",
                         f"target {target!r} is not a valid {executor.backend} target name",
                         escalate=True)
    protected = settings.protected_containers
    if target in protected:  # refused even while absent, before asking the backend
        return GuardStop("target_not_allowed", f"{target} is protected from autofix")
    try:
        identity = executor.resolve(target)
    except TargetNotFound:
        return GuardStop("target_not_found", f"no {executor.backend} target named {target!r}")
    except TargetAmbiguous as exc:
        return GuardStop("target_ambiguous", f"{target!r} names several targets: {exc}")
    except ExecutorError as exc:
        return GuardStop("executor_unavailable", str(exc), escalate=True)
    name = identity.name
    seen = name if target == name else f"{name} (named {target!r})"
    try:
        if any(executor.refers_to(entry, identity) for entry in protected):
            return GuardStop("target_not_allowed", f"{seen} is protected from autofix",
                             target=name)
        if executor.is_self(identity):
            return GuardStop("target_not_allowed", f"{seen} is autofix itself", target=name)
        state = executor.inspect(identity.id)  # checked by ID: the one just resolved
        host = executor.host_of(identity)
    except TargetNotFound:
        return GuardStop("target_not_found", f"{seen} disappeared while being checked",
                         target=name)
    except ExecutorError as exc:
        return GuardStop("executor_unavailable", str(exc), escalate=True, target=name)
    if state.labels.get(settings.opt_in_label, "").lower() != "true":
        return GuardStop("target_not_allowed",
                         f"{seen} lacks the label {settings.opt_in_label}=true", target=name)
    why = executor.already_recovering(state, incident_starts_at,
                                      timedelta(seconds=settings.recovery_lookback_s
                                                if lookback_s is None else lookback_s))
    if why is not None:
        return GuardStop("already_recovered", why, target=name)
    return Subject(name, name, identity, host)


@contextlib.contextmanager
def target_lock(database: Database) -> Iterator[None]:
    """Around the transaction that calls take_target: on SQLite (one process) a process lock;
    PostgreSQL takes an advisory lock per key inside the transaction instead."""
    with _sqlite_target_lock if database.is_sqlite else contextlib.nullcontext():
        yield


def take_target(session: Session, run: Run, key: str) -> bool:
    """Store the run's canonical target. False when another run is already running on it:
    two aliases of one container (name, ID prefix) can both be claimed before either is
    resolved, since a webhook never asks the backend. The caller then re-queues the run;
    with its canonical target stored, claim_next makes it wait like any run on a busy target."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                        {"key": f"autofix-target:{key}"})
    run.target = key
    session.flush()
    other = session.scalar(select(Run.id).where(
        Run.status == RunStatus.RUNNING, Run.target == key, Run.id != run.id).limit(1))
    return other is None


def load_breaker(session: Session, target: str) -> BreakerSnapshot:
    """The target's breaker, row-locked on PostgreSQL until the caller's transaction ends."""
    row = session.scalars(select(Breaker).where(Breaker.target == target)
                          .with_for_update()).first()
    if row is None:
        return BreakerSnapshot()
    return BreakerSnapshot(row.state, row.opened_at, row.open_until, row.reopen_count,
                           row.last_admitted_at, row.reset_at)


def save_breaker(session: Session, target: str, snapshot: BreakerSnapshot,
                 now: datetime) -> None:
    row = session.get(Breaker, target)
    if row is None:
        row = Breaker(target=target)
        session.add(row)
    row.state, row.opened_at, row.open_until = (snapshot.state, snapshot.opened_at,
                                                snapshot.open_until)
    row.reopen_count, row.last_admitted_at = snapshot.reopen_count, snapshot.last_admitted_at
    row.reset_at = snapshot.reset_at
    row.updated_at = now


def pause_stop(session: Session, now: datetime) -> GuardStop | None:
    """The kill switch: a stop while a pause is in force, else None."""
    pause = active_pause(session, now)
    if pause is None:
        return None
    # Not escalated nor retried now: a pause is a human's decision, already known; its
    # resume queues the run again if the alert still fires (pause.resume_automation).
    ends = f" until {pause.until.isoformat()}" if pause.until else ""
    return GuardStop("paused", f"automation paused by {pause.paused_by} since "
                     f"{pause.paused_at.isoformat()}{ends}: {pause.reason}")


def windows_in_force(session: Session, now: datetime) -> list[MaintenanceWindow]:
    """Maintenance windows in force at `now`: started, not past `ends_at`, not ended."""
    return list(session.scalars(select(MaintenanceWindow).where(
        MaintenanceWindow.starts_at <= now, MaintenanceWindow.ends_at > now,
        MaintenanceWindow.ended_at.is_(None)).order_by(MaintenanceWindow.id)))


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> Matcher:
    return parse_matcher(text)  # validated when the window was created


def window_holds(matchers: list[str], labels: dict[str, str], targets: list[str]) -> bool:
    """Whether every matcher holds over the alert's labels, or over them with `target`
    set to one of the run's target names (as rendered, canonical): a window written
    against the canonical name holds an alert that names the container by ID."""
    parsed = [_parsed(text) for text in matchers]
    candidates = [labels, *({**labels, "target": name} for name in targets if name)]
    return any(all(m.matches(candidate) for m in parsed) for candidate in candidates)


def maintenance_stop(session: Session, now: datetime, labels: dict[str, str],
                     targets: list[str]) -> GuardStop | None:
    """A stop while a maintenance window in force matches the run, else None."""
    for window in windows_in_force(session, now):
        if window_holds(window.matchers, labels, targets):
            # Neither escalated nor retried: the window is a human's plan, already known;
            # its end queues the run again if the alert still fires (maintenance.py).
            return GuardStop("maintenance", f"maintenance window {window.id} by "
                             f"{window.created_by} until {window.ends_at.isoformat()}: "
                             f"{window.reason} (matchers: {', '.join(window.matchers)})")
    return None


def admit(session: Session, playbook: Playbook, target: str, now: datetime,
          exclude_run: int | None, *, check_pause: bool = True, host: str | None = None,
          storm: StormPolicy | None = None, admits: bool = True
          ) -> GuardStop | BreakerDecision:
    """The kill switch (unless `check_pause` is False: a dry run), then guards 4-5, inside
    the caller's transaction; on success the breaker is updated (unless `admits` is False:
    the caller will not act on a pass). With a `host` (a run that changes a target), the
    playbook's budgets and the host storm guard (`storm`) next."""
    paused = pause_stop(session, now) if check_pause else None
    if paused is not None:
        return paused
    last = session.scalar(
        select(func.max(Run.admitted_at)).where(
            Run.playbook == playbook.name, Run.target == target, Run.admitted_at.is_not(None),
            Run.id != (exclude_run or -1)))
    if last is not None and playbook.cooldown_s > 0:
        until = last + timedelta(seconds=playbook.cooldown_s)
        if now < until:
            return GuardStop("cooldown", f"{playbook.name} acted on {target} at "
                             f"{last.isoformat()}; cooldown {playbook.cooldown_s:g}s",
                             (until - now).total_seconds())
    snapshot = load_breaker(session, target)
    window_start = count_window_start(snapshot, playbook.circuit_breaker, now)
    recent = session.scalar(
        select(func.count()).select_from(Run).where(
            Run.target == target, Run.admitted_at.is_not(None), Run.admitted_at > window_start,
            Run.id != (exclude_run or -1))) or 0
    decision = decide(snapshot, playbook.circuit_breaker, recent, now)
    if not decision.allow:
        save_breaker(session, target, decision.snapshot, now)
        return GuardStop(decision.reason or "breaker_open",
                         f"circuit breaker for {target} is open "
                         f"({decision.snapshot.reopen_count} opening(s)); "
                         f"{recent} action(s) since {window_start.isoformat()}",
                         decision.retry_after_s, escalate=True, breaker=decision)
    if host is not None:
        # Not admitted after all: the breaker must not count this run (left unsaved).
        exceeded = (budget_stop(session, playbook, host, now, exclude_run)
                    or (storm_stop(session, storm, host, target, now, exclude_run)
                        if storm is not None else None))
        if exceeded is not None:
            return _stop_of(exceeded, target)
    if admits:
        save_breaker(session, target, decision.snapshot, now)
    return decision


def _stop_of(exceeded: Exceeded, target: str) -> GuardStop:
    return GuardStop(exceeded.reason, exceeded.message, exceeded.retry_after_s,
                     escalate=exceeded.escalate, target=target, storm=exceeded.storm)
