"""Blast radius: how many mutating actions autofix may take at once, counted in the database.

Two limits, both checked in the admission transaction after the cooldown and the breaker
(guards.admit), each under a lock of its own so that workers and replicas count the same
rows: a PostgreSQL transaction-scoped advisory lock per key; on SQLite the process lock
guards.target_lock already serialises admissions.

- The host storm guard: more than `targets` distinct targets of one host admitted within
  `window_s` means the host itself is suspect, not each container; autofix stops acting on
  that host while the storm holds (receiver/engine/host_storm.py files its one incident).
- Action budgets (a playbook's `budget:`): at most N mutating runs per period in the
  fleet, in this playbook, or on this host.

A run counts once admitted (`runs.admitted_at`) with a host (`runs.host`): only mutating,
non-dry runs get one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, distinct, func, select, text, true
from sqlalchemy.orm import Session

from receiver.config.settings import Settings
from receiver.playbooks.config import Budget, Playbook
from receiver.store.models import HostStorm, Run

__all__ = ["BudgetUsage", "BudgetUse", "Exceeded", "HostUse", "Report", "StormHit",
           "StormPolicy", "budget_key", "budget_stop", "budget_usage", "lock", "report",
           "storm_in_force", "storm_stop"]


@dataclass(frozen=True)
class StormPolicy:
    targets: int  # more distinct targets than this in the window is a storm; 0: off
    window_s: float

    @classmethod
    def of(cls, settings: Settings) -> StormPolicy:
        return cls(settings.host_storm_targets, settings.host_storm_window_s)

    @property
    def enabled(self) -> bool:
        return self.targets > 0


@dataclass(frozen=True)
class StormHit:
    """A run the storm held back: what host_storm.record_storm writes down."""

    host: str
    target: str
    acted: tuple[str, ...]  # targets admitted on the host within the window
    until: datetime  # the storm holds at least until then


@dataclass(frozen=True)
class Exceeded:
    reason: str  # host_storm or budget_exhausted
    message: str
    retry_after_s: float
    escalate: bool
    storm: StormHit | None = None


@dataclass(frozen=True)
class BudgetUsage:
    budget: Budget
    key: str  # the scope's key: "fleet", the playbook's name, or the host
    used: int
    oldest: datetime | None  # the oldest counted action; it leaves the window at oldest+per

    @property
    def frees_at(self) -> datetime | None:
        return None if self.oldest is None else self.oldest + timedelta(
            seconds=self.budget.per_s)


def lock(session: Session, key: str) -> None:
    """Held until the transaction ends (PostgreSQL); SQLite relies on the process lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                        {"key": f"autofix-blast:{key}"})


def _counted(since: datetime, exclude_run: int | None) -> list[ColumnElement[bool]]:
    return [Run.host.is_not(None), Run.admitted_at.is_not(None), Run.admitted_at > since,
            Run.id != (exclude_run or -1)]


def storm_in_force(session: Session, host: str | None, now: datetime) -> list[HostStorm]:
    """Storms still holding (one host, or every host), newest first."""
    where = HostStorm.host == host if host is not None else true()
    return list(session.scalars(select(HostStorm).where(where, HostStorm.until > now)
                                .order_by(HostStorm.until.desc())))


def storm_stop(session: Session, policy: StormPolicy, host: str, target: str, now: datetime,
               exclude_run: int | None) -> Exceeded | None:
    """Stop the run when a storm holds on its host, or when its target would be one more
    distinct target than the host may have acted on within the window."""
    if not policy.enabled:
        return None
    lock(session, f"storm:{host}")
    window = timedelta(seconds=policy.window_s)
    since = now - window
    acted = tuple(sorted(session.scalars(
        select(Run.target).distinct().where(Run.host == host, *_counted(since, exclude_run)))))
    storms = storm_in_force(session, host, now)
    if storms:
        storm = storms[0]
        return Exceeded(
            "host_storm", f"host storm on {host} since {storm.started_at.isoformat()}: no "
            f"mutating action there until {storm.until.isoformat()} (incident "
            f"{storm.incident_id}); {target} is left as it is", (storm.until - now)
            .total_seconds(), escalate=False,
            storm=StormHit(host, target, acted, now + window))
    if target in acted or len(acted) < policy.targets:
        return None
    return Exceeded(
        "host_storm", f"{len(acted)} distinct targets on {host} acted on in the last "
        f"{policy.window_s:g}s ({', '.join(acted)}), the most AUTOFIX_HOST_STORM_TARGETS "
        f"allows: host storm, no further mutating action there for {policy.window_s:g}s; "
        f"{target} is left as it is", policy.window_s, escalate=False,
        storm=StormHit(host, target, acted, now + window))


def budget_key(budget: Budget, playbook: str, host: str | None) -> str | None:
    """The scope's key; None for a host budget of a run without a host."""
    if budget.scope == "fleet":
        return "fleet"
    if budget.scope == "playbook":
        return playbook
    return host


def _budget_scope(budget: Budget, key: str) -> list[ColumnElement[bool]]:
    if budget.scope == "playbook":
        return [Run.playbook == key]
    if budget.scope == "host":
        return [Run.host == key]
    return []


def budget_usage(session: Session, budget: Budget, key: str, now: datetime,
                 exclude_run: int | None = None) -> BudgetUsage:
    since = now - timedelta(seconds=budget.per_s)
    used, oldest = session.execute(
        select(func.count(), func.min(Run.admitted_at))
        .where(*_budget_scope(budget, key), *_counted(since, exclude_run))).one()
    return BudgetUsage(budget, key, int(used or 0), oldest)


def _next_slot(session: Session, usage: BudgetUsage, now: datetime,
               exclude_run: int | None) -> datetime:
    """When one more action fits: once all but `actions - 1` counted actions have left the
    window (more than one when the budget was lowered by a reload)."""
    budget = usage.budget
    since = now - timedelta(seconds=budget.per_s)
    leaving = session.scalar(
        select(Run.admitted_at).where(*_budget_scope(budget, usage.key),
                                      *_counted(since, exclude_run))
        .order_by(Run.admitted_at).offset(usage.used - budget.actions).limit(1))
    return (leaving or now) + timedelta(seconds=budget.per_s)


def budget_stop(session: Session, playbook: Playbook, host: str, now: datetime,
                exclude_run: int | None) -> Exceeded | None:
    """The first of the playbook's budgets this run would exceed, or None. Locks are taken
    in one global order (sorted keys), so two admissions never deadlock."""
    keyed = [(budget, key) for budget in playbook.budgets
             if (key := budget_key(budget, playbook.name, host)) is not None]
    for lock_key in sorted({f"budget:{b.scope}:{key}" for b, key in keyed}):
        lock(session, lock_key)
    for budget, key in keyed:
        usage = budget_usage(session, budget, key, now, exclude_run)
        if usage.used < budget.actions:
            continue
        frees_at = _next_slot(session, usage, now, exclude_run)
        scope = "fleet" if budget.scope == "fleet" else f"{budget.scope} {key}"
        return Exceeded(
            "budget_exhausted", f"{usage.used} of {budget.actions} actions in "
            f"{_duration(budget.per_s)} (scope {scope}) used; next at "
            f"{frees_at.isoformat()}", max((frees_at - now).total_seconds(), 0.0),
            escalate=True)
    return None


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _hosts_in_window(session: Session, since: datetime) -> list[tuple[str, int, datetime]]:
    """(host, distinct targets, oldest admission) of every host acted on since `since`."""
    rows = session.execute(
        select(Run.host, func.count(distinct(Run.target)), func.min(Run.admitted_at))
        .where(*_counted(since, None)).group_by(Run.host).order_by(Run.host)).all()
    return [(str(host), int(count), oldest) for host, count, oldest in rows if oldest]


@dataclass(frozen=True)
class BudgetUse:
    playbook: str
    key: str | None  # None: a host budget no host has used yet
    usage: BudgetUsage


@dataclass(frozen=True)
class HostUse:
    host: str
    targets: int  # distinct targets acted on within the storm window
    frees_at: datetime  # when the oldest counted action leaves the window


@dataclass(frozen=True)
class Report:
    budgets: list[BudgetUse]
    policy: StormPolicy
    hosts: list[HostUse]
    storms: list[HostStorm]  # in force


def report(session: Session, playbooks: list[Playbook], policy: StormPolicy,
           now: datetime) -> Report:
    """What GET /api/v1/budgets shows (api/schemas.py BudgetsOut): every budget's use per
    scope key, the host storm guard's count per host, and the storms in force."""
    budgets: list[BudgetUse] = []
    for playbook in playbooks:
        for budget in playbook.budgets:
            if budget.scope == "host":
                since = now - timedelta(seconds=budget.per_s)
                keys: list[str | None] = [host for host, _, _ in
                                          _hosts_in_window(session, since)] or [None]
            else:
                keys = [budget_key(budget, playbook.name, None)]
            for key in keys:
                usage = (budget_usage(session, budget, key, now) if key is not None
                         else BudgetUsage(budget, "", 0, None))
                budgets.append(BudgetUse(playbook.name, key, usage))
    window = timedelta(seconds=policy.window_s)
    hosts = [HostUse(host, count, oldest + window)
             for host, count, oldest in _hosts_in_window(session, now - window)]
    return Report(budgets, policy, hosts, storm_in_force(session, None, now))
