"""Filing a notification's alerts: as it is received, or later for a large one.

A notification of more than AUTOFIX_INGEST_DEFER_ALERTS alerts is acknowledged once it is
stored as received (pending); a worker's drainer then files its alerts exactly as the
webhook would have. The claim is a compare-and-set from `pending` inside the filing
transaction: a worker that dies mid-way rolls back, and the notification is still pending
for the next drainer. On PostgreSQL one drainer files at a time (an advisory lock), so two
storms of the same group never upsert the same incidents against each other.
"""

from __future__ import annotations

import logging
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from .config_store import LoadedConfig
from .db.ingest_store import IngestResult, file_occurrences
from .db.models import Notification
from .errors import AutofixError, DatabaseUnavailable
from .ingest import Occurrence, plan_occurrences
from .notify import Event
from .notify.groups import record_group
from .payload import WebhookPayload
from .services import Services

__all__ = ["FAILED", "FILED", "PENDING", "drain_one", "file_alerts", "pending_count"]

log = logging.getLogger("autofix.filing")

PENDING, FILED, FAILED = "pending", "filed", "failed"
# pg_try_advisory_xact_lock key: "autofix ingest drain".
_DRAIN_LOCK = 0x6175746F66697801


def file_alerts(svc: Services, session: Session, payload: WebhookPayload,
                occurrences: list[Occurrence], notification_id: int, now: datetime,
                config: LoadedConfig) -> IngestResult:
    """Incidents, runs, resolved messages and the group's message, in `session`."""
    result = file_occurrences(session, notification_id, len(payload.alerts), occurrences,
                              now, config.version_id)
    for incident_id in result.resolved_ids:
        # Only an incident with a thread of its own gets its own "resolved" message; the
        # others are reported in their group's message.
        playbook = config.playbooks.by_name(result.resolved_playbooks.get(incident_id) or "")
        if playbook is not None and not playbook.notify_only:
            svc.notifier.emit(session, Event("resolved", incident_id))
    group_id = record_group(session, payload, occurrences, config.playbooks, svc.renderer,
                            now)
    if group_id is not None:
        svc.notifier.emit_group(session, group_id)
    return result


def drain_one(svc: Services) -> int | None:
    """File the oldest pending notification; its id, or None when there is none to take.

    Raises DatabaseUnavailable (it stays pending). Any other failure marks it failed with
    the reason, so one bad notification never blocks the ones behind it."""
    config = svc.config.refreshed()
    notification_id: int | None = None
    try:
        with svc.database.session("ingest_drain") as session:
            claimed = _claim_oldest(session)
            if claimed is None:
                return None
            notification_id, raw, received_at = claimed
            result = _file_stored(svc, session, raw, notification_id, received_at, config)
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        if notification_id is None:
            raise
        _give_up(svc, notification_id, exc)
        return notification_id
    svc.metrics.deferred.labels(FILED).inc()
    if result.duplicates:
        svc.metrics.duplicates.inc(result.duplicates)
    if result.runs_queued:
        svc.wakeup.set()
    log.info("deferred notification filed", extra={
        "notification_id": notification_id, "alerts": result.alerts, "new": result.new,
        "duplicates": result.duplicates, "resolved": result.resolved,
        "runs_queued": result.runs_queued})
    return notification_id


def pending_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Notification)
                          .where(Notification.ingest_state == PENDING)) or 0


def _claim_oldest(session: Session) -> tuple[int, object, datetime] | None:
    if session.scalars(select(Notification.id).where(Notification.ingest_state == PENDING)
                       .limit(1)).first() is None:
        return None  # the idle poll: one indexed read, no lock
    if session.get_bind().dialect.name == "postgresql" and not session.execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _DRAIN_LOCK}).scalar():
        return None  # another drainer is filing; it takes the next one too
    oldest = (select(Notification.id).where(Notification.ingest_state == PENDING)
              .order_by(Notification.id).limit(1).with_for_update(skip_locked=True))
    # The compare-and-set is the transaction's first statement: on SQLite it takes the
    # write lock at once, so a second process waits, then finds nothing pending to take.
    row = session.execute(
        update(Notification).where(Notification.id == oldest.scalar_subquery(),
                                   Notification.ingest_state == PENDING)
        .values(ingest_state=FILED)
        .returning(Notification.id, Notification.payload, Notification.received_at)
        .execution_options(synchronize_session=False)).first()
    return None if row is None else (row.id, row.payload, row.received_at)


def _file_stored(svc: Services, session: Session, raw: object, notification_id: int,
                 received_at: datetime, config: LoadedConfig) -> IngestResult:
    payload = WebhookPayload.model_validate(raw)
    occurrences = plan_occurrences(payload, config.playbooks, svc.renderer,
                                   svc.registry.light_actions())
    # Filed as of its receipt: first_seen is when Alertmanager told us.
    return file_alerts(svc, session, payload, occurrences, notification_id, received_at,
                       config)


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


def _mark_failed(svc: Services, notification_id: int, reason: str) -> None:
    with svc.database.session("ingest_drain") as session:
        session.execute(update(Notification).where(
            Notification.id == notification_id, Notification.ingest_state == PENDING)
            .values(ingest_state=FAILED, ingest_error=reason))
    svc.metrics.deferred.labels(FAILED).inc()
