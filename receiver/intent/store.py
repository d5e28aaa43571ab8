"""The follower's lease and coverage per Docker daemon, and the per-container records, in
the database (shared by every worker and receiver). Lease changes are compare-and-set."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from receiver.intent.decide import Coverage, Record
from receiver.intent.events import SeenEvent, apply_event
from receiver.store.lifecycle import compare_and_set
from receiver.store.models import EventsFollower, TargetTransition

__all__ = ["claim_lease", "continue_window", "end_window", "load", "record_event", "renew_lease",
           "start_window"]

_RECORD_COLUMNS = ("name", "action", "cause", "detail", "at", "started_at", "died_at",
                   "exit_code", "operator_request", "start_window", "window")


def claim_lease(session: Session, daemon_id: str, holder: str, now: datetime,
                lease_s: float) -> bool:
    """Take (or keep) the daemon's lease: True for the one holder; another may take it
    only once it has expired."""
    dialect = session.get_bind().dialect.name
    values = dict(daemon_id=daemon_id, holder=holder, lease_until=now, windows=0)
    if dialect == "postgresql":
        session.execute(postgresql.insert(EventsFollower).values(**values)
                        .on_conflict_do_nothing(index_elements=["daemon_id"]))
    elif dialect == "sqlite":
        session.execute(sqlite.insert(EventsFollower).values(**values)
                        .on_conflict_do_nothing(index_elements=["daemon_id"]))
    else:  # pragma: no cover - only the two supported backends
        session.execute(insert(EventsFollower).values(**values))
    return compare_and_set(
        session, EventsFollower,
        [EventsFollower.daemon_id == daemon_id,
         or_(EventsFollower.holder == holder, EventsFollower.lease_until < now)],
        holder=holder, lease_until=now + timedelta(seconds=lease_s))


def renew_lease(session: Session, daemon_id: str, holder: str, now: datetime,
                lease_s: float, covered_until: datetime | None) -> bool:
    """Extend the lease (and the window, while following); False once someone else holds
    it."""
    values: dict[str, Any] = {"lease_until": now + timedelta(seconds=lease_s)}
    if covered_until is not None:
        values["covered_until"] = covered_until
    return compare_and_set(session, EventsFollower, _held(daemon_id, holder), **values)


def start_window(session: Session, daemon_id: str, holder: str, since: datetime) -> bool:
    """A new unbroken window from `since` (the daemon's clock, once the stream is open)."""
    return compare_and_set(session, EventsFollower, _held(daemon_id, holder),
                           covered_since=since, covered_until=since,
                           windows=EventsFollower.windows + 1)


def continue_window(session: Session, daemon_id: str, holder: str, since: datetime) -> bool:
    """The same window goes on (the gap was replayed): only if it is still the row's."""
    return compare_and_set(session, EventsFollower, _held(daemon_id, holder),
                           where=[EventsFollower.covered_since == since],
                           covered_until=EventsFollower.covered_until)


def _held(daemon_id: str, holder: str) -> list[Any]:
    return [EventsFollower.daemon_id == daemon_id, EventsFollower.holder == holder]


def end_window(session: Session, daemon_id: str, holder: str, now: datetime) -> None:
    """The stream ended: let the lease go (the window keeps its last covered_until)."""
    session.execute(update(EventsFollower)
                    .where(EventsFollower.daemon_id == daemon_id,
                           EventsFollower.holder == holder)
                    .values(lease_until=now))


def record_event(session: Session, daemon_id: str, event: SeenEvent,
                 window: datetime) -> None:
    row = session.get(TargetTransition, event.container_id)
    if row is not None and event.at < row.at:
        return  # older than what is recorded (a lease handed over mid-stream)
    current = None if row is None else {c: getattr(row, c) for c in _RECORD_COLUMNS}
    values = apply_event(current, event, window)
    if values is None:
        session.execute(delete(TargetTransition)
                        .where(TargetTransition.container_id == event.container_id))
        return
    if row is None:
        row = TargetTransition(container_id=event.container_id, daemon_id=daemon_id)
        session.add(row)
    row.daemon_id = daemon_id
    for column in _RECORD_COLUMNS:
        setattr(row, column, values.get(column))
    row.detail = row.detail or ""
    row.updated_at = event.at


def load(session: Session, daemon_id: str, container_id: str, now: datetime
         ) -> tuple[Record | None, Coverage | None]:
    row = session.get(TargetTransition, container_id)
    follower = session.get(EventsFollower, daemon_id)
    record = None if row is None else Record(row.action, row.cause, row.detail, row.at,
                                             row.started_at, row.died_at)
    coverage = None if follower is None else Coverage(
        follower.covered_since, follower.covered_until, follower.lease_until >= now)
    return record, coverage
