"""The kill switch: while a pause is in force no step that leaves the process starts, on
any worker or replica (the state is a database row, checked by the admission guard and
before each step). Runs skip with reason `paused`; alerts are still recorded,
notifications still sent, dry runs go on. The resume queues once more every run skipped
`paused` during the pause whose incident is still open (its alert still fires). Audited,
told to the notification channels, exported as `autofix_paused`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from receiver.domain.errors import BadRequest, Conflict
from receiver.engine.dependents import DEPENDENT
from receiver.engine.execution import is_mutating
from receiver.engine.retries import RETRY_TRIGGERS
from receiver.engine.services import Services
from receiver.notify import Event
from receiver.store.lifecycle import (
    NEW_RUN_STATUS,
    RETRYABLE_INCIDENT_STATUSES,
    RunStatus,
    active_pause,
    end_pause,
    start_pause,
)
from receiver.store.models import Action, AuditEntry, Incident, Pause, Run

__all__ = ["PauseState", "current_pause", "end_lapsed_pauses", "pause_automation",
           "requeue_paused_runs", "resume_automation"]

log = logging.getLogger("autofix.pause")


@dataclass(frozen=True)
class PauseState:
    paused: bool
    pause_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    reason: str | None = None

    @classmethod
    def of(cls, row: Pause | None) -> PauseState:
        if row is None:
            return cls(False)
        return cls(True, row.id, row.paused_at, row.until, row.paused_by, row.reason)


def current_pause(services: Services, session: Session | None = None) -> PauseState:
    if session is not None:
        return PauseState.of(active_pause(session, services.clock()))
    with services.database.session("pause_read") as own:
        return PauseState.of(active_pause(own, services.clock()))


def pause_automation(services: Services, actor: str, reason: str,
                     until: datetime | None) -> PauseState:
    """Pause every step that leaves the process until resumed (or `until`). 409 while
    paused already."""
    now = services.clock()
    if until is not None and until <= now:
        raise BadRequest("until must be in the future", field="until")
    end_lapsed_pauses(services)  # a lapsed pause queues its skipped runs before its slot goes
    try:
        with services.database.session("pause") as session:
            row = start_pause(session, now, actor, reason, until)
            if row is None:
                raise Conflict("automation is paused already; resume it first", None,
                               reason="paused", **_described(active_pause(session, now)))
            state = PauseState.of(row)
            session.add(AuditEntry(actor=actor, verb="pause", subject="automation",
                                   reason=reason if until is None
                                   else f"{reason} (until {until.isoformat()})"))
            services.notifier.emit(session, Event("paused", 0, {
                "actor": actor, "reason": reason, "until": until and until.isoformat()}))
    except IntegrityError:  # a concurrent pause took the one slot first
        raise Conflict("automation is paused already; resume it first",
                       reason="paused") from None
    services.metrics.database_changed()
    log.warning("automation paused", extra={"actor": actor, "reason": reason,
                                            "until": until and until.isoformat()})
    return state


def resume_automation(services: Services, actor: str, reason: str) -> PauseState:
    """End the pause in force. 409 when automation is not paused."""
    now = services.clock()
    with services.database.session("resume") as session:
        ended = end_pause(session, now, actor)
        if ended is None:
            raise Conflict("automation is not paused", reason="not_paused")
        session.add(AuditEntry(actor=actor, verb="resume", subject="automation",
                               reason=reason))
        services.notifier.emit(session, Event("resumed", 0, {"actor": actor,
                                                             "reason": reason}))
        # In the resume's own transaction: the compare-and-set above lets one resume win,
        # so each skipped run is queued again exactly once.
        requeued = requeue_paused_runs(session, services, ended, actor)
    services.metrics.database_changed()
    log.warning("automation resumed", extra={"actor": actor, "reason": reason,
                                             "pause_id": ended, "requeued_runs": requeued})
    if requeued:
        services.wakeup.set()
    return PauseState(False)


def end_lapsed_pauses(services: Services) -> list[int]:
    """A pause whose `until` passed ends like a resume: one worker (compare-and-set) ends
    its row and queues its skipped runs again. Every worker's heartbeat calls this; the
    new runs' ids."""
    now = services.clock()
    with services.database.session("pause_lapse") as session:
        lapsed = select(Pause.id).where(Pause.active == 1, Pause.until <= now).limit(1)
        if session.scalar(lapsed) is None:  # the usual case: read only, no write lock
            return []
        ended = session.execute(
            update(Pause).where(Pause.active == 1, Pause.until <= now)
            .values(active=None, resumed_at=Pause.until, resumed_by="until")
            .returning(Pause.id).execution_options(synchronize_session=False)).scalars().all()
        requeued = [run_id for pause_id in ended
                    for run_id in requeue_paused_runs(session, services, pause_id,
                                                      "autofix (pause until passed)")]
    if requeued:
        log.info("a pause ended by its until; skipped runs queued again",
                 extra={"requeued_runs": requeued})
        services.wakeup.set()
    return requeued


def requeue_paused_runs(session: Session, services: Services, pause_id: int,
                        actor: str) -> list[int]:
    """Queue a new run for each alert run skipped `paused` during the pause `pause_id` that
    is still its incident's newest run, the incident still open (the alert still fires).
    Each is audited (`resume_requeue`). The new runs' ids."""
    pause = session.get(Pause, pause_id)
    if pause is None:
        return []
    queued: list[int] = []
    for old, _ in session.execute(newest_held_runs("paused", since=pause.paused_at)).all():
        run_id = queue_again(session, services, old, "paused", f"resume: run {old.id} was "
                             "skipped while paused", actor, "resume_requeue")
        if run_id is not None:
            queued.append(run_id)
    return queued


def newest_held_runs(reason: str, since: datetime | None = None) -> Select[tuple[Run, Any]]:
    """(run, its incident's labels) of each alert run a guard skipped with `reason` (the
    kill switch, a maintenance window) that is still its incident's newest run, the
    incident still open: the alert still fires, so the hold's end must queue it again.
    A dependent's run too, whether or not the alert resolved since (its parent's restart
    usually resolves it): the rest of its chain goes on from it."""
    newer = aliased(Run)
    return (select(Run, Incident.labels).join(Incident, Incident.id == Run.incident_id)
            .where(Run.status == RunStatus.SKIPPED,
                   or_(and_(Run.trigger.in_(RETRY_TRIGGERS), Incident.resolved_at.is_(None)),
                       Run.trigger == DEPENDENT),
                   *([Run.finished_at >= since] if since is not None else []),
                   Incident.status.in_(RETRYABLE_INCIDENT_STATUSES),
                   exists().where(Action.run_id == Run.id, Action.reason == reason),
                   ~exists().where(newer.incident_id == Run.incident_id, newer.id > Run.id))
            .order_by(Run.id))


def queue_again(session: Session, services: Services, old: Run, held_by: str, why: str,
                actor: str, verb: str) -> int | None:
    """A retry run for a run a hold skipped with reason `held_by` (a dependent's run: the
    same dependent's, carrying its chain and approval), audited as `verb`; None when its
    playbook was removed by a reload since (nothing to run)."""
    config = services.config.current
    playbook = config.playbooks.by_name(old.playbook)
    if playbook is None:
        return None
    dependent = old.trigger == DEPENDENT
    inherited: dict[str, Any] = {}
    if dependent and old.decision == "approved":
        inherited = {"decision": old.decision, "decided_at": old.decided_at,
                     "decided_by": old.decided_by}
    run = Run(incident_id=old.incident_id, playbook=old.playbook, target=old.target,
              trigger=DEPENDENT if dependent else "retry", alert_status="firing",
              status=NEW_RUN_STATUS,
              reason=why + ("; its chain goes on" if dependent else "; the alert still fires"),
              queued_at=services.clock(), dry_run=old.dry_run,
              config_version=old.config_version if dependent else config.version_id,
              lane="act" if dependent or is_mutating(services, playbook) else "light",
              priority=playbook.priority, chain=dict(old.chain) if dependent and old.chain
              else None, **inherited)
    session.add(run)
    session.flush()
    session.add(AuditEntry(actor=actor, verb=verb, subject=old.target[:255],
                           reason=f"incident {old.incident_id}: run {old.id} skipped "
                           f"{held_by}, queued again as run {run.id}"))
    return run.id


def _described(row: Pause | None) -> dict[str, object]:
    if row is None:
        return {}
    return {"paused_by": row.paused_by, "since": row.paused_at.isoformat(),
            "until": row.until and row.until.isoformat()}
