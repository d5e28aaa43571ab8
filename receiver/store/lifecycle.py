"""The one owner of every stored state (incident, run, outbox row, deferred notification,
breaker): the states, their initial values, the allowed transitions, and each transition as
a compare-and-set.

Every state change is `UPDATE … WHERE id = :id AND status IN (:allowed)` (guarded_update),
and `compare_and_set` alone reads its row count. Nothing else assigns a state, so a resolve
racing a runner can never be overwritten (the README draws the same tables).

Incidents are created `open`, `resolved` (first seen resolved) or `closed` (a notify-only
playbook's: nothing will act on it, see closed_on_arrival)::

    open ──start──▶ remediating ──escalate──▶ escalated
      │  (any of open, remediating, escalated) ──acknowledge──▶ acknowledged
      │  (any not terminal) ──close──▶ closed        (human, or the end of a run
      │                                                no alert will resolve)
      └─ (any, closed included) ──resolve──▶ resolved  (Alertmanager; wins over all)
    resolved ──escalate_after_resolve──▶ escalated  (its own chain of dependents or
                                                      rollback ended needing a human)

An incident resolved once is never resolved again by a repeat of the same resolved
notification: what its own chain or rollback escalated afterwards waits for a human
(acknowledge, close), and a new firing of the alert is a new occurrence, a new incident.

Runs::

    queued ──claim──▶ running ──finish──▶ succeeded | failed | skipped
    queued ──skip──▶ skipped                 running ──interrupt──▶ interrupted
    running ──requeue──▶ queued              (an alias of its target is running)
    running ──await_approval──▶ awaiting_approval ──approve──▶ queued  (guards again)
                                  awaiting_approval ──deny──▶ denied
                                  awaiting_approval ──expire──▶ expired

Outbox rows (created pending)::   pending ──send──▶ sent      pending ──fail──▶ failed

Deferred notifications (`ingest_state`; NULL when filed as received, created pending when
too large)::   pending ──file──▶ filed      pending ──fail──▶ failed

Breakers (per target, no row until the first admission: closed)::

    closed ──trip──▶ open ──(period over)──▶ half_open ──trial held──▶ closed
    half_open ──trip──▶ open              (any) ──reset (operator)──▶ closed

The kill switch (a `pauses` row in force) is changed here too: `pause` inserts the one
active row (a unique constraint refuses a second), `resume` ends it by compare-and-set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, case, literal, or_, select, update
from sqlalchemy.orm import Session

from receiver.store.models import Incident, Pause, Run

__all__ = [
    "BREAKER_TRANSITIONS", "FINISHED_INCIDENT_STATUSES", "INCIDENT_TRANSITIONS",
    "INGEST_TRANSITIONS", "NEW_BREAKER_STATE", "NEW_OUTBOX_STATUS", "NEW_RUN_STATUS",
    "OPEN_INCIDENT_STATUSES", "OUTBOX_TRANSITIONS", "RETRYABLE_INCIDENT_STATUSES",
    "RUN_TRANSITIONS", "BreakerState", "IncidentStatus", "IngestState", "OutboxStatus",
    "RunStatus", "Transition", "active_pause", "closed_on_arrival", "compare_and_set",
    "end_pause", "guarded_update", "new_incident_status", "resolved_status", "rows_changed",
    "start_pause", "transition_incident", "transition_incidents", "transition_run",
    "transition_run_if", "update_incident_if",
]


class IncidentStatus(StrEnum):
    OPEN = "open"
    REMEDIATING = "remediating"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"
    RESOLVED = "resolved"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"
    AWAITING_APPROVAL = "awaiting_approval"
    DENIED = "denied"
    EXPIRED = "expired"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class IngestState(StrEnum):
    """A deferred notification's `ingest_state` (migration 0009); NULL: filed as received."""

    PENDING = "pending"
    FILED = "filed"
    FAILED = "failed"


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


@dataclass(frozen=True)
class Transition:
    allowed_from: frozenset[str]
    to: str


_I = IncidentStatus
_R = RunStatus
_NOT_TERMINAL = frozenset({_I.OPEN, _I.REMEDIATING, _I.ESCALATED, _I.ACKNOWLEDGED})

INCIDENT_TRANSITIONS: dict[str, Transition] = {
    "start": Transition(frozenset({_I.OPEN}), _I.REMEDIATING),
    "escalate": Transition(frozenset({_I.OPEN, _I.REMEDIATING}), _I.ESCALATED),
    "acknowledge": Transition(frozenset({_I.OPEN, _I.REMEDIATING, _I.ESCALATED}),
                              _I.ACKNOWLEDGED),
    "close": Transition(_NOT_TERMINAL, _I.CLOSED),
    # Applied by ingest's upsert in the same statement that records the resolution.
    "resolve": Transition(_NOT_TERMINAL | {_I.CLOSED}, _I.RESOLVED),
    # The alert resolved (the target's restart cleared it), then what the run set going
    # failed: a dependent not restarted, a rollback's outcome. A human must hear it.
    "escalate_after_resolve": Transition(frozenset({_I.RESOLVED}), _I.ESCALATED),
}

RUN_TRANSITIONS: dict[str, Transition] = {
    "claim": Transition(frozenset({_R.QUEUED}), _R.RUNNING),
    "succeed": Transition(frozenset({_R.RUNNING}), _R.SUCCEEDED),
    "fail": Transition(frozenset({_R.RUNNING}), _R.FAILED),
    "skip": Transition(frozenset({_R.QUEUED, _R.RUNNING}), _R.SKIPPED),
    "interrupt": Transition(frozenset({_R.RUNNING}), _R.INTERRUPTED),
    # An alias of its target turned out to be running: back in the queue, behind it.
    "requeue": Transition(frozenset({_R.RUNNING}), _R.QUEUED),
    # Mode `approve`: the guards passed, nothing touched; a human decides exactly once.
    "await_approval": Transition(frozenset({_R.RUNNING}), _R.AWAITING_APPROVAL),
    "approve": Transition(frozenset({_R.AWAITING_APPROVAL}), _R.QUEUED),
    "deny": Transition(frozenset({_R.AWAITING_APPROVAL}), _R.DENIED),
    "expire": Transition(frozenset({_R.AWAITING_APPROVAL}), _R.EXPIRED),
}

OUTBOX_TRANSITIONS: dict[str, Transition] = {
    "send": Transition(frozenset({OutboxStatus.PENDING}), OutboxStatus.SENT),
    # Given up: not retryable, out of attempts, or its last attempt's sender died.
    "fail": Transition(frozenset({OutboxStatus.PENDING}), OutboxStatus.FAILED),
}

INGEST_TRANSITIONS: dict[str, Transition] = {
    "file": Transition(frozenset({IngestState.PENDING}), IngestState.FILED),
    "fail": Transition(frozenset({IngestState.PENDING}), IngestState.FAILED),
}

_B = BreakerState
# breaker.py's pure state machine applies these to a snapshot; guards.save_breaker and
# manual.reset_breaker write the result to the row they hold locked.
BREAKER_TRANSITIONS: dict[str, Transition] = {
    "trip": Transition(frozenset({_B.CLOSED, _B.HALF_OPEN}), _B.OPEN),
    "period_over": Transition(frozenset({_B.OPEN}), _B.HALF_OPEN),
    "trial_held": Transition(frozenset({_B.HALF_OPEN}), _B.CLOSED),
    "reset": Transition(frozenset(_B), _B.CLOSED),
}

# Initial states: a run is queued, an outbox row pending, a target's breaker closed.
NEW_RUN_STATUS = RunStatus.QUEUED
NEW_OUTBOX_STATUS = OutboxStatus.PENDING
NEW_BREAKER_STATE = BreakerState.CLOSED


def new_incident_status(resolved: bool) -> IncidentStatus:
    """An incident first seen firing is open; first seen resolved, resolved (a notify-only
    playbook's is created closed instead: closed_on_arrival)."""
    return IncidentStatus.RESOLVED if resolved else IncidentStatus.OPEN


# Counted by autofix_open_incidents and the dashboards' "open" panels.
OPEN_INCIDENT_STATUSES: tuple[str, ...] = tuple(sorted(_NOT_TERMINAL))
# A still-firing incident autofix keeps trying (CrashLoopBackOff): not resolved, not closed.
RETRYABLE_INCIDENT_STATUSES: tuple[str, ...] = OPEN_INCIDENT_STATUSES
# Nothing will act on these again: the only incidents retention may delete. An escalated
# incident waits for a human (and may have a retry scheduled), so it is not among them.
FINISHED_INCIDENT_STATUSES: tuple[str, ...] = (_I.CLOSED.value, _I.RESOLVED.value)


def guarded_update(model: Any, row: int | Sequence[ColumnElement[bool]],
                   transition: Transition | None = None, *, column: str = "status",
                   where: Sequence[ColumnElement[bool]] = (), **values: Any) -> Update:
    """UPDATE model SET values [, column = transition.to] WHERE <row> [AND column IN
    transition.allowed_from] AND <where>: the one shape of a conditional update. `row` is
    an id or the conditions that pick the row(s). Add `.returning(...)` to read the row."""
    picked = [model.id == row] if isinstance(row, int) else list(row)
    if transition is not None:
        state = getattr(model, column)
        picked.append(state.in_(sorted(transition.allowed_from)))
        values = {**values, column: transition.to}
    return (update(model).where(*picked, *where).values(**values)
            .execution_options(synchronize_session=False))


def rows_changed(result: Any) -> int:
    """How many rows an UPDATE or DELETE changed (0 when the driver cannot tell)."""
    return int(getattr(result, "rowcount", 0) or 0)


def compare_and_set(session: Session, model: Any, row: int | Sequence[ColumnElement[bool]],
                    transition: Transition | None = None, *, column: str = "status",
                    where: Sequence[ColumnElement[bool]] = (), **values: Any) -> bool:
    """guarded_update, executed: True when exactly one row changed (the caller won)."""
    statement = guarded_update(model, row, transition, column=column, where=where, **values)
    return rows_changed(session.execute(statement)) == 1


def resolved_status(column: Any, resolved_at: Any) -> Any:
    """The "resolve" transition as a column expression, for ingest's upsert (one statement
    on conflict: its WHERE cannot hold the transition, the row must still be returned).
    `resolved_at` is the row's: an incident resolved once (then escalated by its own chain
    or rollback, escalate_after_resolve) is not resolved again by a repeated notification."""
    resolve = INCIDENT_TRANSITIONS["resolve"]
    # One bound literal each, not an expanding IN: ingest compiles the statement once.
    allowed = [literal(status.value if isinstance(status, StrEnum) else status)
               for status in sorted(resolve.allowed_from)]
    return case((and_(column.in_(allowed), resolved_at.is_(None)), literal(str(resolve.to))),
                else_=column)


def _apply(session: Session, model: Any, row_id: int, transition: Transition,
           values: dict[str, Any], where: Sequence[ColumnElement[bool]] = ()) -> bool:
    return compare_and_set(session, model, row_id, transition, where=where, **values)


def transition_incident(session: Session, incident_id: int, event: str,
                        **values: Any) -> bool:
    """Apply `event` to the incident if its current status allows it; True if it did."""
    return _apply(session, Incident, incident_id, INCIDENT_TRANSITIONS[event], values)


def transition_incidents(session: Session, incident_ids: list[int], event: str,
                         **values: Any) -> int:
    """Apply `event` to many incidents at once; how many it applied to."""
    statement = guarded_update(Incident, [Incident.id.in_(incident_ids)],
                               INCIDENT_TRANSITIONS[event], **values)
    return rows_changed(session.execute(statement))


def closed_on_arrival(now: datetime, reason: str) -> dict[str, Any]:
    """Columns of an incident created already closed: what "close" would set, written by
    the insert itself (nothing will act on it), so a storm costs no second write per alert."""
    return {"status": INCIDENT_TRANSITIONS["close"].to, "closed_at": now,
            "closed_by": "autofix", "close_reason": reason}


def transition_run(session: Session, run_id: int, event: str, **values: Any) -> bool:
    """Apply `event` to the run if its current status allows it; True if it did."""
    return _apply(session, Run, run_id, RUN_TRANSITIONS[event], values)


def transition_run_if(session: Session, run_id: int, event: str,
                      where: Sequence[ColumnElement[bool]], /, **values: Any) -> bool:
    """`transition_run`, only while every `where` still holds: checked in the same UPDATE,
    so what the caller read (a worker, a stale heartbeat) cannot have changed since."""
    return _apply(session, Run, run_id, RUN_TRANSITIONS[event], values, where)


def update_incident_if(session: Session, incident_id: int, statuses: tuple[str, ...],
                       **values: Any) -> bool:
    """Change non-status fields only while the incident is in one of `statuses`."""
    return compare_and_set(session, Incident, incident_id,
                           where=[Incident.status.in_(statuses)], **values)


def _in_force(now: datetime) -> list[Any]:
    return [Pause.active == 1, or_(Pause.until.is_(None), Pause.until > now)]


def active_pause(session: Session, now: datetime) -> Pause | None:
    """The pause in force at `now`, if any (a pause whose `until` passed is over)."""
    return session.scalars(select(Pause).where(*_in_force(now)).limit(1)).first()


def start_pause(session: Session, now: datetime, actor: str, reason: str,
                until: datetime | None) -> Pause | None:
    """Insert the one pause in force; None when one is in force already. A concurrent
    insert loses on the unique constraint (IntegrityError at flush: the caller's 409).

    A pause whose `until` passed is ended first (by compare-and-set), so its slot is free."""
    session.execute(update(Pause).where(Pause.active == 1, Pause.until <= now)
                    .values(active=None, resumed_at=Pause.until, resumed_by="until")
                    .execution_options(synchronize_session=False))
    if active_pause(session, now) is not None:
        return None
    pause = Pause(paused_at=now, paused_by=actor, reason=reason, until=until, active=1)
    session.add(pause)
    session.flush()
    return pause


def end_pause(session: Session, now: datetime, actor: str) -> int | None:
    """End the pause in force; its id, or None when none was (a concurrent resume won)."""
    statement = (update(Pause).where(*_in_force(now))
                 .values(active=None, resumed_at=now, resumed_by=actor)
                 .returning(Pause.id).execution_options(synchronize_session=False))
    return session.execute(statement).scalars().first()
