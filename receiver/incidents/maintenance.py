"""Maintenance windows: while one is in force, runs whose alert labels or target match all
its matchers skip with reason `maintenance` (recorded, not escalated, not retried); alerts
are still recorded. A window may be scheduled ahead. When it ends (by hand, or when
`ends_at` passes) each alert run it held whose incident still fires is queued once more,
as the kill switch's resume does, unless another window still holds it. Creating and
ending a window are audited; the dashboards draw each as an annotation region."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from receiver.domain.errors import Conflict, NotFound, Unprocessable
from receiver.engine.blast_radius import lock
from receiver.engine.guards import maintenance_stop
from receiver.engine.services import Services
from receiver.incidents.pause import newest_held_runs, queue_again
from receiver.playbooks.matchers import parse_matcher
from receiver.store.lifecycle import compare_and_set
from receiver.store.models import AuditEntry, MaintenanceWindow

__all__ = ["MAX_MATCHERS", "MAX_WINDOW", "WindowState", "check_window", "end_lapsed_windows",
           "end_window", "list_windows", "start_window"]

log = logging.getLogger("autofix.maintenance")
MAX_WINDOW = timedelta(days=30)
MAX_MATCHERS = 20
LAPSED_BY = "ends_at"  # ended_by of a window that ended by its ends_at
SWEEP_AFTER_END_S = 120.0  # how long an ended window's held runs are looked for again


@dataclass(frozen=True)
class WindowState:
    id: int
    matchers: list[str]
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    created_by: str
    reason: str
    ended_at: datetime | None
    ended_by: str | None
    state: str  # scheduled, active or ended

    @classmethod
    def of(cls, row: MaintenanceWindow, now: datetime) -> WindowState:
        over = row.ended_at is not None or row.ends_at <= now
        state = "ended" if over else "active" if row.starts_at <= now else "scheduled"
        return cls(row.id, list(row.matchers), row.starts_at, row.ends_at, row.created_at,
                   row.created_by, row.reason, row.ended_at, row.ended_by, state)


def check_window(matchers: list[str], starts_at: datetime, ends_at: datetime,
                 now: datetime) -> tuple[list[str], datetime]:
    """The matchers as stored (normalised) and the start (a start in the past is now);
    Unprocessable says what is wrong."""
    if not matchers:
        raise Unprocessable("a maintenance window needs at least one matcher; to stop all "
                            "automation use the kill switch (POST /api/v1/pause)",
                            field="matchers")
    if len(matchers) > MAX_MATCHERS:
        raise Unprocessable(f"at most {MAX_MATCHERS} matchers", field="matchers")
    parsed = []
    for index, text in enumerate(matchers):
        try:
            parsed.append(parse_matcher(text))
        except ValueError as exc:
            raise Unprocessable(f"matchers[{index}]: {exc}", field=f"matchers.{index}") from None
    if all(m.matches({}) for m in parsed):
        # Alertmanager's rule: a missing label is "", so these hold every alert that
        # lacks the labels named; that is the kill switch's job, not a window's.
        raise Unprocessable("these matchers also match an alert without any of their labels, "
                            "so the window would hold everything; name a label value (e.g. "
                            "container=~\"shop-.*\"), or use the kill switch "
                            "(POST /api/v1/pause)", field="matchers")
    if ends_at <= now:
        raise Unprocessable("ends_at is in the past", field="ends_at")
    if ends_at <= starts_at:
        raise Unprocessable("ends_at must be after starts_at", field="ends_at")
    start = max(starts_at, now)
    if ends_at - start > MAX_WINDOW:
        raise Unprocessable(f"a maintenance window lasts at most {MAX_WINDOW.days} days; "
                            "create another when this one ends", field="ends_at")
    return [str(m) for m in parsed], start


def start_window(services: Services, matchers: list[str], starts_at: datetime | None,
                 ends_at: datetime, actor: str, reason: str) -> WindowState:
    now = services.clock()
    stored, start = check_window(matchers, starts_at or now, ends_at, now)
    with services.database.session("maintenance_start") as session:
        row = MaintenanceWindow(matchers=stored, starts_at=start, ends_at=ends_at,
                                created_at=now, created_by=actor, reason=reason)
        session.add(row)
        session.flush()
        session.add(AuditEntry(
            actor=actor, verb="maintenance_start", subject=f"maintenance {row.id}",
            reason=f"{reason} ({', '.join(stored)}; {start.isoformat()} to "
            f"{ends_at.isoformat()})"))
        state = WindowState.of(row, now)
    log.warning("maintenance window created", extra={
        "window_id": state.id, "actor": actor, "reason": reason, "matchers": stored,
        "starts_at": start.isoformat(), "ends_at": ends_at.isoformat()})
    return state


def list_windows(services: Services, include_ended: bool, limit: int) -> list[WindowState]:
    """Windows in force or scheduled, soonest first; with `include_ended`, every window,
    newest first."""
    now = services.clock()
    query = select(MaintenanceWindow)
    if include_ended:
        query = query.order_by(MaintenanceWindow.id.desc())
    else:
        query = query.where(MaintenanceWindow.ended_at.is_(None),
                            MaintenanceWindow.ends_at > now).order_by(
            MaintenanceWindow.starts_at, MaintenanceWindow.id)
    with services.database.session("maintenance_list") as session:
        return [WindowState.of(row, now) for row in session.scalars(query.limit(limit))]


def end_window(services: Services, window_id: int, actor: str, reason: str) -> WindowState:
    """End a window in force, or cancel a scheduled one. 404 unknown, 409 already over."""
    now = services.clock()
    with services.database.session("maintenance_end") as session:
        # Compare-and-set: of two concurrent ends (or an end and the lapse) one wins.
        ended = compare_and_set(session, MaintenanceWindow, window_id,
                                where=[MaintenanceWindow.ended_at.is_(None),
                                       MaintenanceWindow.ends_at > now],
                                ended_at=now, ended_by=actor)
        session.expire_all()
        row = session.get(MaintenanceWindow, window_id)
        if row is None:
            raise NotFound(f"no maintenance window {window_id}")
        if not ended:
            when = (row.ended_at or row.ends_at).isoformat()
            raise Conflict(f"maintenance window {window_id} is over already (ended {when}"
                           f"{f' by {row.ended_by}' if row.ended_by else ''})",
                           reason="maintenance_over")
        session.add(AuditEntry(actor=actor, verb="maintenance_end",
                               subject=f"maintenance {window_id}", reason=reason))
        requeued = requeue_held_runs(session, services, row, actor)
        state = WindowState.of(row, now)
    log.warning("maintenance window ended", extra={
        "window_id": window_id, "actor": actor, "reason": reason, "requeued_runs": requeued})
    if requeued:
        services.wakeup.set()
    return state


def end_lapsed_windows(services: Services) -> list[int]:
    """A window whose ends_at passed ends like one ended by hand: one worker (compare-and-
    set) marks it and queues the runs it held. Every worker's heartbeat calls this; the new
    runs' ids."""
    now = services.clock()
    lapsed = (MaintenanceWindow.ended_at.is_(None), MaintenanceWindow.ends_at <= now)
    # A run that read the windows just before one ended records its skip just after the
    # end queued the held runs: windows ended lately are swept again, so it is not lost.
    lately = (MaintenanceWindow.ended_at > now - timedelta(seconds=SWEEP_AFTER_END_S),
              MaintenanceWindow.ended_at <= now)
    with services.database.session("maintenance_lapse") as session:
        if session.scalar(select(MaintenanceWindow.id).where(*lapsed).limit(1)) is None:
            recent = session.scalars(select(MaintenanceWindow).where(*lately)
                                     .order_by(MaintenanceWindow.ended_at.desc())).first()
            # The usual case: read only, no write lock.
            swept = (requeue_held_runs(session, services, recent,
                                       "autofix (maintenance window ended)")
                     if recent is not None else [])
            if swept:
                services.wakeup.set()
            return swept
        ended = session.execute(
            update(MaintenanceWindow).where(*lapsed)
            .values(ended_at=MaintenanceWindow.ends_at, ended_by=LAPSED_BY)
            .returning(MaintenanceWindow.id)
            .execution_options(synchronize_session=False)).scalars().all()
        requeued: list[int] = []
        for window_id in ended:
            row = session.get(MaintenanceWindow, window_id)
            if row is not None:
                requeued += requeue_held_runs(session, services, row,
                                              "autofix (maintenance window ended)")
    if requeued:
        log.info("a maintenance window ended by its ends_at; held runs queued again",
                 extra={"requeued_runs": requeued})
        services.wakeup.set()
    return requeued


def requeue_held_runs(session: Session, services: Services, window: MaintenanceWindow,
                      actor: str) -> list[int]:
    """Queue a new run for each alert run skipped `maintenance` that is still its incident's
    newest run, the incident still open (the alert still fires), unless a window in force
    holds it. Not only the runs this window held: a run held by two overlapping windows
    was passed over when the first ended, and must go when the last does. Each is audited
    (`maintenance_requeue`). The new runs' ids."""
    lock(session, "maintenance-requeue")  # two ends (or an end and a sweep) queue once
    now = services.clock()
    queued: list[int] = []
    for old, labels in session.execute(newest_held_runs("maintenance")).all():
        if maintenance_stop(session, now, dict(labels or {}), [old.target]) is not None:
            continue  # another window still holds it; its end queues it
        run_id = queue_again(session, services, old, "maintenance",
                             f"maintenance window {window.id} ended: run {old.id} was held "
                             "by a maintenance window", actor,
                             "maintenance_requeue")
        if run_id is not None:
            queued.append(run_id)
    return queued
