"""Filing a notification's alerts: as it is received, or later for a large one.

A notification of more than AUTOFIX_INGEST_DEFER_ALERTS alerts is acknowledged once it is
stored as received (pending); a worker's drainer then files its alerts exactly as the
webhook files a small one. A drainer first claims the oldest unclaimed one (a short
transaction: attempts + 1 and a lease), then files it in a second transaction that starts
with a compare-and-set from `pending`. A drainer that dies mid-way rolls that back; after
the lease another drainer tries again, and after MAX_ATTEMPTS attempts that never ended it
is failed with the reason instead of killing workers forever. On PostgreSQL drainers file
one at a time (an advisory lock), so two storms of the same group never upsert the same
incidents against each other.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from receiver.domain.errors import AutofixError, DatabaseUnavailable
from receiver.domain.payload import WebhookPayload
from receiver.engine.services import Services
from receiver.notify import Event
from receiver.notify.groups import group_values
from receiver.playbooks.ingest import Occurrence, plan_occurrences
from receiver.store.config_store import LoadedConfig
from receiver.store.group_store import upsert_group
from receiver.store.ingest_store import (
    IngestResult,
    file_occurrences,
    store_and_upsert,
    store_notification,
)
from receiver.store.lifecycle import INGEST_TRANSITIONS, IngestState, guarded_update
from receiver.store.models import Notification

__all__ = ["drain_one", "file_alerts", "pending_count", "store_and_file"]

log = logging.getLogger("autofix.filing")

# A claim older than this is taken to be a dead drainer's (filing 10,000 alerts takes
# seconds, waiting for the drain lock behind others a few times that).
LEASE_S = 120.0
MAX_ATTEMPTS = 3
# pg_advisory_xact_lock key ("autofix ingest drain"): drainers file one at a time.
_DRAIN_LOCK = 0x6175746F66697801


def store_and_file(svc: Services, session: Session, payload: WebhookPayload, raw_text: str,
                   occurrences: list[Occurrence], now: datetime,
                   config: LoadedConfig) -> IngestResult:
    """The webhook's transaction: the notification row as received, then its alerts filed
    as file_alerts files them (on PostgreSQL the row and the upserts in one statement)."""
    group = group_values(payload, occurrences, config.playbooks, svc.renderer, now)
    stored = store_and_upsert(session, payload, raw_text, now, occurrences, group)
    if stored is None:
        notification_id = store_notification(session, payload, raw_text, now)
        return _file(svc, session, payload, occurrences, notification_id, now, config, group)
    result = file_occurrences(session, stored.notification_id, len(payload.alerts),
                              occurrences, now, config.version_id, stored.incidents)
    _emit(svc, session, config, result, stored.group_id)
    return result


def file_alerts(svc: Services, session: Session, payload: WebhookPayload,
                occurrences: list[Occurrence], notification_id: int, now: datetime,
                config: LoadedConfig) -> IngestResult:
    """Incidents, runs, resolved messages and the group's message, in `session`."""
    group = group_values(payload, occurrences, config.playbooks, svc.renderer, now)
    return _file(svc, session, payload, occurrences, notification_id, now, config, group)


def _file(svc: Services, session: Session, payload: WebhookPayload,
          occurrences: list[Occurrence], notification_id: int, now: datetime,
          config: LoadedConfig, group: dict[str, Any] | None) -> IngestResult:
    # Incidents before the group's row: the lock order every path keeps.
    result = file_occurrences(session, notification_id, len(payload.alerts), occurrences,
                              now, config.version_id)
    _emit(svc, session, config, result, None if group is None else upsert_group(session, group))
    return result


def _emit(svc: Services, session: Session, config: LoadedConfig, result: IngestResult,
          group_id: int | None) -> None:
    for incident_id in result.resolved_ids:
        # Only an incident with a thread of its own gets its own "resolved" message; the
        # others are reported in their group's message.
        playbook = config.playbooks.by_name(result.resolved_playbooks.get(incident_id) or "")
        if playbook is not None and not playbook.notify_only:
            svc.notifier.emit(session, Event("resolved", incident_id))
    if group_id is not None:
        svc.notifier.emit_group(session, group_id)


def drain_one(svc: Services) -> int | None:
    """File the oldest pending notification no other drainer holds; its id, or None when
    there is none to take.

    Raises DatabaseUnavailable (it stays pending, and is tried again after its lease). Any
    other failure marks it failed with the reason, so one bad notification never blocks
    the ones behind it."""
    now = svc.clock()
    with svc.database.session("ingest_claim") as session:
        claimed = _claim_oldest(session, now)
    if claimed is None:
        return None
    notification_id, attempts = claimed
    if attempts > MAX_ATTEMPTS:
        reason = (f"not filed after {MAX_ATTEMPTS} attempts that never ended (the worker "
                  "stopped, or the database failed each time)")
        log.error("deferred notification not filed", extra={
            "notification_id": notification_id, "reason": reason})
        _mark_failed(svc, notification_id, reason)
        return notification_id
    config = svc.config.refreshed()
    try:
        with svc.database.session("ingest_drain") as session:
            result = _file_claimed(svc, session, notification_id, config)
    except DatabaseUnavailable:
        _release(svc, notification_id)
        raise
    except Exception as exc:
        _give_up(svc, notification_id, exc)
        return notification_id
    if result is None:
        return None  # filed by another drainer whose lease this one outlived
    svc.metrics.deferred.labels(IngestState.FILED).inc()
    if result.duplicates:
        svc.metrics.duplicates.inc(result.duplicates)
    if result.runs_queued:
        svc.wakeup.set()
    log.info("deferred notification filed", extra={
        "notification_id": notification_id, "alerts": result.alerts, "new": result.new,
        "duplicates": result.duplicates, "resolved": result.resolved,
        "runs_queued": result.runs_queued, "attempt": attempts})
    return notification_id


def pending_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Notification)
                          .where(Notification.ingest_state == IngestState.PENDING)) or 0


def _claim_oldest(session: Session, now: datetime) -> tuple[int, int] | None:
    """(id, attempts so far, this one included) of the oldest pending notification that no
    live drainer holds, now leased to this one."""
    pending = Notification.ingest_state == IngestState.PENDING
    if session.scalars(select(Notification.id).where(pending).limit(1)).first() is None:
        return None  # the idle poll: one indexed read
    free = or_(Notification.ingest_claimed_at.is_(None),
               Notification.ingest_claimed_at < now - timedelta(seconds=LEASE_S))
    oldest = (select(Notification.id).where(pending, free).order_by(Notification.id)
              .limit(1).with_for_update(skip_locked=True))
    # A compare-and-set, and the transaction's first write: on SQLite it takes the write
    # lock, so a second process waits, then finds the row leased.
    row = session.execute(
        guarded_update(Notification, [Notification.id == oldest.scalar_subquery(), pending,
                                      free],
                       ingest_attempts=Notification.ingest_attempts + 1, ingest_claimed_at=now)
        .returning(Notification.id, Notification.ingest_attempts)).first()
    return None if row is None else (row.id, row.ingest_attempts)


def _file_claimed(svc: Services, session: Session, notification_id: int,
                  config: LoadedConfig) -> IngestResult | None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DRAIN_LOCK})
    row = session.execute(
        guarded_update(Notification, notification_id, INGEST_TRANSITIONS["file"],
                       column="ingest_state")
        .returning(Notification.payload, Notification.received_at)).first()
    if row is None:
        return None
    payload = WebhookPayload.model_validate(row.payload)
    occurrences = plan_occurrences(payload, config.playbooks, svc.renderer,
                                   svc.registry.light_actions())
    # Filed as of its receipt: first_seen is when Alertmanager told us.
    return file_alerts(svc, session, payload, occurrences, notification_id,
                       row.received_at, config)


def _give_up(svc: Services, notification_id: int, error: Exception) -> None:
    """Failed for good, with the reason: a value the database refuses (BadRequest), a
    payload that no longer validates, or a bug. Left pending it would be retried forever."""
    if isinstance(error, ValidationError):
        reason = "payload: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
        log.error("deferred notification not filed", extra={
            "notification_id": notification_id, "reason": reason})
    elif isinstance(error, AutofixError | ValueError):
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        log.error("deferred notification not filed", extra={
            "notification_id": notification_id, "reason": reason})
    else:
        reason = f"{type(error).__name__}: {error}"
        log.exception("deferred notification not filed", extra={
            "notification_id": notification_id})
    _mark_failed(svc, notification_id, reason[:2000])


def _release(svc: Services, notification_id: int) -> None:
    """Best effort after a database failure: let the next poll retry it without waiting
    out the lease (if the database is still away, the lease ends it anyway)."""
    with contextlib.suppress(DatabaseUnavailable), \
            svc.database.session("ingest_claim") as session:
        session.execute(guarded_update(
            Notification, notification_id,
            where=[Notification.ingest_state == IngestState.PENDING], ingest_claimed_at=None))


def _mark_failed(svc: Services, notification_id: int, reason: str) -> None:
    with svc.database.session("ingest_drain") as session:
        marked = session.execute(
            guarded_update(Notification, notification_id, INGEST_TRANSITIONS["fail"],
                           column="ingest_state", ingest_error=reason)
            .returning(Notification.id)).first()
    # Not counted when another drainer filed it first: the failed count pages someone.
    if marked is not None:
        svc.metrics.deferred.labels(IngestState.FAILED).inc()
