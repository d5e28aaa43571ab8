"""The kill switch: while a pause is in force no mutating step starts, on any worker or
replica (the state is a database row, checked by the admission guard). Runs skip with
reason `paused`; alerts are still recorded and notifications still sent. Audited, told
to the notification channels, exported as `autofix_paused`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db.models import AuditEntry, Pause
from .errors import BadRequest, Conflict
from .lifecycle import active_pause, end_pause, start_pause
from .notify import Event
from .services import Services

__all__ = ["PauseState", "current_pause", "pause_automation", "resume_automation"]

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
    """Pause every mutating step until resumed (or `until`). 409 while paused already."""
    now = services.clock()
    if until is not None and until <= now:
        raise BadRequest("until must be in the future", field="until")
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
    services.metrics.paused.set(1)
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
    services.metrics.paused.set(0)
    log.warning("automation resumed", extra={"actor": actor, "reason": reason,
                                             "pause_id": ended})
    return PauseState(False)


def _described(row: Pause | None) -> dict[str, object]:
    if row is None:
        return {}
    return {"paused_by": row.paused_by, "since": row.paused_at.isoformat(),
            "until": row.until and row.until.isoformat()}
