"""The circuit breaker as a pure state machine: both sides of every transition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from receiver.engine.breaker import BreakerSnapshot, decide
from receiver.playbooks.config import BreakerPolicy

POLICY = BreakerPolicy(max_actions=3, window="10m", open_for="1m", open_for_max="4m",
                       reset_after="10m")
T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_closed_admits_until_max_actions_then_opens() -> None:
    snap = BreakerSnapshot()
    for count in range(3):
        decision = decide(snap, POLICY, count, at(count))
        assert decision.allow
        snap = decision.snapshot
    opened = decide(snap, POLICY, 3, at(4))
    assert not opened.allow and opened.opened_now and opened.reason == "breaker_open"
    assert opened.snapshot.state == "open" and opened.retry_after_s == 60


def test_open_denies_until_the_period_ends_then_one_trial() -> None:
    opened = decide(BreakerSnapshot(), POLICY, 3, at(0)).snapshot
    assert not decide(opened, POLICY, 0, at(59.9)).allow
    trial = decide(opened, POLICY, 0, at(60))
    assert trial.allow and trial.snapshot.state == "half_open"
    second = decide(trial.snapshot, POLICY, 0, at(61))
    assert not second.allow and second.opened_now
    assert second.snapshot.reopen_count == 2 and second.retry_after_s == 120


def test_open_period_doubles_up_to_the_cap() -> None:
    snap = decide(BreakerSnapshot(), POLICY, 3, at(0)).snapshot
    now, periods = 0.0, []
    for _ in range(4):
        now = (snap.open_until - T0).total_seconds()
        trial = decide(snap, POLICY, 0, at(now))
        reopened = decide(trial.snapshot, POLICY, 0, at(now + 1))
        periods.append(reopened.retry_after_s)
        snap = reopened.snapshot
    assert periods == [120, 240, 240, 240]


def test_quiet_after_the_trial_closes_and_forgets() -> None:
    snap = decide(BreakerSnapshot(), POLICY, 3, at(0)).snapshot
    trial = decide(snap, POLICY, 0, at(60)).snapshot
    just_before = decide(trial, POLICY, 0, at(60 + 599))
    assert not just_before.allow  # not yet quiet for reset_after: re-opens
    after = decide(trial, POLICY, 0, at(60 + 600))
    assert after.allow and after.snapshot.state == "closed"
    assert after.snapshot.reopen_count == 0


def test_closed_breaker_forgets_old_openings_after_quiet() -> None:
    snap = BreakerSnapshot(state="closed", reopen_count=3, last_admitted_at=at(0))
    assert decide(snap, POLICY, 0, at(599)).snapshot.reopen_count == 3
    assert decide(snap, POLICY, 0, at(600)).snapshot.reopen_count == 0
