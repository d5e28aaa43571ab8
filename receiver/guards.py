"""The guards every run passes before it may touch a target, in the documented order.

1 target allowed (opt-in label, never protected containers) · 2 target exists ·
3 not already recovering · 4 cooldown per (playbook, target) · 5 circuit breaker per target.
6 (global concurrency) and 7 (one run per target) are enforced when a worker claims a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .breaker import BreakerDecision, BreakerSnapshot, count_window_start, decide
from .db.models import Breaker, Run
from .executor import Executor, ExecutorError, TargetNotFound, TargetState
from .playbooks.config import Playbook
from .playbooks.templating import is_valid_container_name
from .settings import Settings

__all__ = ["GuardStop", "admit", "check_target", "load_breaker"]


@dataclass(frozen=True)
class GuardStop:
    """Why a run may not proceed. `reason` is machine-readable."""

    reason: str
    message: str
    retry_after_s: float | None = None
    escalate: bool = False
    breaker: BreakerDecision | None = None


def check_target(target: str, executor: Executor, settings: Settings,
                 incident_starts_at: datetime, own_ids: frozenset[str]) -> GuardStop | TargetState:
    """Guards 1-3, which need the backend. Returns the target's state when they all pass."""
    if not target or not is_valid_container_name(target):
        # Nothing can be done for this alert as it is: a human must look.
        return GuardStop("invalid_target", f"target {target!r} is not a valid container name",
                         escalate=True)
    if target in settings.protected_containers:
        return GuardStop("target_not_allowed", f"{target} is protected from autofix")
    try:
        state = executor.inspect(target)
    except TargetNotFound:
        return GuardStop("target_not_found", f"no container named {target!r}")
    except ExecutorError as exc:
        return GuardStop("executor_unavailable", str(exc), escalate=True)
    if any(state.id.startswith(own) for own in own_ids if own):
        return GuardStop("target_not_allowed", f"{target} is autofix itself")
    if state.labels.get(settings.opt_in_label, "").lower() != "true":
        return GuardStop("target_not_allowed",
                         f"{target} lacks the label {settings.opt_in_label}=true")
    if state.status == "restarting":
        return GuardStop("already_recovered", f"{target} is being restarted by Docker")
    if state.running and state.started_at is not None:
        if state.started_at > incident_starts_at:
            return GuardStop("already_recovered",
                             f"{target} (re)started at {state.started_at.isoformat()}, after "
                             f"the alert began at {incident_starts_at.isoformat()}")
        # Docker's restart policy acts within ~100 ms of a crash, before Prometheus can
        # even notice, so its restart predates the alert; RestartCount tells it apart.
        lookback = timedelta(seconds=settings.recovery_lookback_s)
        if state.restart_count > 0 and state.started_at >= incident_starts_at - lookback:
            return GuardStop("already_recovered",
                             f"Docker's restart policy restarted {target} at "
                             f"{state.started_at.isoformat()} (restart #{state.restart_count})")
    return state


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


def admit(session: Session, playbook: Playbook, target: str, now: datetime,
          exclude_run: int | None) -> GuardStop | BreakerDecision:
    """Guards 4-5 inside the caller's transaction; on success the breaker is updated."""
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
    save_breaker(session, target, decision.snapshot, now)
    if not decision.allow:
        return GuardStop(decision.reason or "breaker_open",
                         f"circuit breaker for {target} is open "
                         f"({decision.snapshot.reopen_count} opening(s)); "
                         f"{recent} action(s) since {window_start.isoformat()}",
                         decision.retry_after_s, escalate=True, breaker=decision)
    return decision
