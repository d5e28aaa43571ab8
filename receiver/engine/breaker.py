"""Circuit breaker per target, as a pure state machine over a stored snapshot.

closed ──(max_actions admitted in window)──▶ open ──(open period over)──▶ half_open
half_open: one trial is admitted; another attempt before `reset_after` of quiet re-opens
with a doubled period (capped), like CrashLoopBackOff. `reset_after` of quiet closes it.
The states and their transitions are lifecycle's (BreakerState, BREAKER_TRANSITIONS).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from receiver.playbooks.config import BreakerPolicy
from receiver.store.lifecycle import BREAKER_TRANSITIONS, NEW_BREAKER_STATE, BreakerState

__all__ = ["BreakerDecision", "BreakerSnapshot", "current_state", "decide", "gauge_value"]

GAUGE: dict[str, int] = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
_TRIP, _PERIOD_OVER, _TRIAL_HELD = (BREAKER_TRANSITIONS[event]
                                    for event in ("trip", "period_over", "trial_held"))


@dataclass(frozen=True)
class BreakerSnapshot:
    state: str = NEW_BREAKER_STATE
    opened_at: datetime | None = None
    open_until: datetime | None = None
    reopen_count: int = 0
    last_admitted_at: datetime | None = None
    reset_at: datetime | None = None  # an operator's reset: earlier admissions do not count


@dataclass(frozen=True)
class BreakerDecision:
    allow: bool
    snapshot: BreakerSnapshot
    reason: str | None = None
    retry_after_s: float | None = None
    opened_now: bool = False


def gauge_value(state: str) -> int:
    return GAUGE.get(state, 0)


def current_state(state: str, open_until: datetime | None, now: datetime) -> str:
    """The stored state as the next attempt will find it: an open breaker whose period is
    over is half-open (its next run is the trial)."""
    if state in _PERIOD_OVER.allowed_from and open_until is not None and now >= open_until:
        return _PERIOD_OVER.to
    return state


def count_window_start(snapshot: BreakerSnapshot, policy: BreakerPolicy,
                       now: datetime) -> datetime:
    """Admissions counted toward max_actions: in the window, since the breaker last opened
    and since an operator last reset it."""
    start = now - timedelta(seconds=policy.window_s)
    for since in (snapshot.opened_at, snapshot.reset_at):
        if since is not None and since > start:
            start = since
    return start


def decide(snapshot: BreakerSnapshot, policy: BreakerPolicy, recent_admissions: int,
           now: datetime) -> BreakerDecision:
    snap = _age(snapshot, policy, now)
    if snap.state == BreakerState.OPEN:
        # An open breaker always has open_until (_open sets both); the guard keeps -O honest.
        wait_s = (snap.open_until - now).total_seconds() if snap.open_until else 0.0
        return BreakerDecision(False, snap, "breaker_open", wait_s)
    if snap.state == BreakerState.HALF_OPEN:
        trial_taken = (snap.last_admitted_at is not None and snap.open_until is not None
                       and snap.last_admitted_at >= snap.open_until)
        if not trial_taken:
            return BreakerDecision(True, replace(snap, last_admitted_at=now))
        return _open(snap, policy, now)
    if recent_admissions >= policy.max_actions:
        return _open(snap, policy, now)
    return BreakerDecision(True, replace(snap, last_admitted_at=now))


def _age(snap: BreakerSnapshot, policy: BreakerPolicy, now: datetime) -> BreakerSnapshot:
    """Apply what time alone changes: the open period ending, a quiet period closing."""
    snap = replace(snap, state=current_state(snap.state, snap.open_until, now))
    quiet = (snap.last_admitted_at is None
             or now - snap.last_admitted_at >= timedelta(seconds=policy.reset_after_s))
    if snap.state in _TRIAL_HELD.allowed_from and quiet and snap.last_admitted_at is not None \
            and snap.open_until is not None and snap.last_admitted_at >= snap.open_until:
        return BreakerSnapshot(_TRIAL_HELD.to, last_admitted_at=snap.last_admitted_at,
                               reset_at=snap.reset_at)
    if snap.state == BreakerState.CLOSED and quiet and snap.reopen_count:
        return replace(snap, reopen_count=0)
    return snap


def _open(snap: BreakerSnapshot, policy: BreakerPolicy, now: datetime) -> BreakerDecision:
    count = snap.reopen_count + 1
    period = min(policy.open_s * 2 ** (count - 1), policy.open_max_s)
    until = now + timedelta(seconds=period)
    opened = BreakerSnapshot(_TRIP.to, now, until, count, snap.last_admitted_at, snap.reset_at)
    return BreakerDecision(False, opened, "breaker_open", period, opened_now=True)
