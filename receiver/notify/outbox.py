"""The outbox: `emit` writes rows in the caller's transaction; a sender thread delivers them.

Delivery is at-least-once. A claim takes one due row (PostgreSQL: FOR UPDATE SKIP LOCKED,
so every worker's sender can run; SQLite: a process lock, one worker) and leases it by
moving `next_attempt_at` forward, then commits, so no transaction is open during network
I/O and a sender that dies mid-send leaves the row to be retried when the lease ends.

Rows of one (incident, channel) go out in id order: a row is due only when no earlier row
of its incident and channel is still pending. On threaded channels (Slack bot), a message
replies to the incident's first top-level message, whose `ts` is stored on its row.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import event as sa_event
from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session, aliased

from receiver.config.settings import Settings
from receiver.domain.errors import DatabaseUnavailable
from receiver.domain.redaction import Redactor
from receiver.notify.channels import (
    Channel,
    SendFailed,
    build_channels,
    channel_names,
    redact,
    secret_fragments,
)
from receiver.notify.events import NOTICE_KINDS, Event, EventKind
from receiver.notify.groups import GroupInfo
from receiver.notify.messages import IncidentInfo
from receiver.store.engine import Database
from receiver.store.lifecycle import (
    NEW_OUTBOX_STATUS,
    OUTBOX_TRANSITIONS,
    OutboxStatus,
    compare_and_set,
)
from receiver.store.models import AlertGroup, Incident, Outbox, utcnow
from receiver.telemetry.metrics import Metrics

__all__ = ["OutboxNotifier", "OutboxSender", "build_notifier", "start_sender"]

log = logging.getLogger("autofix.notify")
_sqlite_claim_lock = threading.Lock()
_ERROR_MAX = 2000


class OutboxNotifier:
    """Writes one outbox row per configured channel; with no channel it writes nothing."""

    def __init__(self, channels: list[str], clock: Callable[[], datetime] = utcnow) -> None:
        self.channels = list(channels)
        self.clock = clock  # create_app hands it services.now
        self.wakeup = threading.Event()  # set after a commit that added rows

    def emit(self, session: Session, event: Event) -> None:
        if not self.channels:
            return
        # Plain JSON now, so a detail the database cannot store never fails the caller.
        details = json.loads(json.dumps(event.details, default=str))
        now = self.clock()
        for channel in self.channels:
            session.add(Outbox(incident_id=event.incident_id or None, channel=channel,
                               kind=event.kind, details=details, status=NEW_OUTBOX_STATUS,
                               attempts=0, created_at=now, next_attempt_at=now))
        if not session.info.get("autofix_outbox_wake"):
            session.info["autofix_outbox_wake"] = True
            sa_event.listen(session, "after_commit", self._wake)

    def emit_group(self, session: Session, group_id: int) -> None:
        if not self.channels:
            return
        from receiver.notify.groups import emit_group

        if emit_group(session, group_id, self.channels, self.clock()) and \
                not session.info.get("autofix_outbox_wake"):
            session.info["autofix_outbox_wake"] = True
            sa_event.listen(session, "after_commit", self._wake)

    def _wake(self, session: Session) -> None:
        session.info.pop("autofix_outbox_wake", None)
        self.wakeup.set()


def build_notifier(settings: Settings) -> OutboxNotifier:
    return OutboxNotifier(channel_names(settings))


@dataclass(frozen=True)
class _Claim:
    row_id: int
    channel: str
    event: Event
    incident: IncidentInfo | None
    attempts: int
    thread_ts: str | None
    done: bool = False  # settled during the claim: nothing to send
    group: GroupInfo | None = None  # a notification group's message (no incident)


class OutboxSender:
    """One per process: claims due rows, sends them, records the outcome, retries later."""

    def __init__(self, database: Database, settings: Settings, metrics: Metrics,
                 channels: dict[str, Channel], worker: str,
                 wakeup: threading.Event | None = None,
                 clock: Callable[[], datetime] = utcnow, *,
                 redactor: Redactor | None = None) -> None:
        self.database = database
        self.clock = clock
        self.settings = settings
        self.metrics = metrics
        self.channels = channels
        self.worker = worker
        self.wakeup = wakeup or threading.Event()
        self._secrets = secret_fragments(settings)
        # The app's redactor (create_app); what a message shows passes through it.
        self.redactor = redactor or Redactor(settings.redact_patterns)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="autofix-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.send_one():
                    continue
            except DatabaseUnavailable:
                pass
            except Exception:  # never let one bad row kill the sender
                log.exception("notification sender error")
            self.wakeup.wait(self.settings.notify_poll_s)
            self.wakeup.clear()

    def run_once(self) -> int:
        """Send every row due now, in this thread (tests); how many attempts were made."""
        attempts = 0
        while self.send_one():
            attempts += 1
        return attempts

    # -- one row ---------------------------------------------------------------------------

    def send_one(self) -> bool:
        claim = self._claim()
        if claim is None:
            return False
        if not claim.done:
            self._deliver(claim)
        return True

    def _lease(self) -> timedelta:
        return timedelta(seconds=self.settings.notify_timeout_s * 2 + 30)

    def _claim(self) -> _Claim | None:
        guard = _sqlite_claim_lock if self.database.is_sqlite else contextlib.nullcontext()
        with guard, self.database.session("notify_claim") as session:
            now = self.clock()
            earlier = aliased(Outbox)
            # An incident's rows, and a group's rows, go out in order (NULLs never match).
            blocked = exists().where(or_(earlier.incident_id == Outbox.incident_id,
                                         earlier.group_id == Outbox.group_id),
                                     earlier.channel == Outbox.channel,
                                     earlier.id < Outbox.id,
                                     earlier.status == OutboxStatus.PENDING)
            row = session.scalars(
                select(Outbox).where(Outbox.status == OutboxStatus.PENDING,
                                     Outbox.next_attempt_at <= now,
                                     ~blocked)
                .order_by(Outbox.id).limit(1).with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            if row.attempts >= self.settings.notify_max_attempts:
                # Its last attempt was claimed by a sender that died before recording it
                # (the row is locked: FOR UPDATE, or the SQLite claim lock).
                row.status = OUTBOX_TRANSITIONS["fail"].to
                row.last_error = "; ".join(filter(None, [row.last_error,
                                                          "last attempt interrupted"]))
                self.metrics.notification_sends.labels(row.channel, "failed").inc()
                return _Claim(row.id, row.channel, Event(_kind(row.kind), row.incident_id or 0),
                              None, row.attempts, None, done=True)
            row.attempts += 1
            row.next_attempt_at = now + self._lease()
            row.claimed_by = self.worker
            if row.group_id is not None:
                group = session.get(AlertGroup, row.group_id)
                return _Claim(row.id, row.channel, Event("group", 0, {"group_id": row.group_id}),
                              None, row.attempts, _group_root(session, row),
                              group=GroupInfo.from_row(group) if group else None)
            if row.incident_id is None:  # a notice about autofix itself (kill switch)
                return _Claim(row.id, row.channel, Event(_kind(row.kind), 0, dict(row.details)),
                              None, row.attempts, None)
            incident = session.get(Incident, row.incident_id)
            channel = self.channels.get(row.channel)
            thread_ts = None
            if channel is not None and channel.threaded:
                thread_ts = _thread_root(session, row)
            return _Claim(row.id, row.channel, Event(_kind(row.kind), row.incident_id or 0,
                                                     dict(row.details)),
                          IncidentInfo.from_row(incident) if incident else None,
                          row.attempts, thread_ts)

    def _deliver(self, claim: _Claim) -> None:
        channel = self.channels.get(claim.channel)
        if channel is None:
            self._record_failure(claim, f"channel {claim.channel!r} is not configured here",
                                 retryable=False)
            return
        if claim.event.kind == "group" and claim.group is None:
            self._record_failure(claim, "group no longer exists", retryable=False)
            return
        claim = self._redacted(claim)
        notice = claim.event.kind in NOTICE_KINDS
        incident = claim.incident
        if claim.event.kind != "group" and incident is None and not notice:
            self._record_failure(claim, "incident no longer exists", retryable=False)
            return
        try:
            if notice:
                delivery = channel.send_notice(claim.event, delivery_id=claim.row_id)
            elif claim.group is not None:
                delivery = channel.send_group(claim.group, update_ts=claim.thread_ts,
                                              delivery_id=claim.row_id)
            elif incident is None:  # checked above; recorded as a failure, never asserted
                raise RuntimeError("incident no longer exists")
            else:
                delivery = channel.send(claim.event, incident,
                                        thread_ts=claim.thread_ts, delivery_id=claim.row_id)
        except SendFailed as exc:
            self._record_failure(claim, str(exc), retryable=exc.retryable,
                                 retry_after_s=exc.retry_after_s)
            return
        except Exception as exc:  # a bug building the message: retrying will not help
            log.exception("notification could not be built", extra=self._context(claim))
            self._record_failure(claim, f"{type(exc).__name__}: {exc}", retryable=False)
            return
        with self.database.session("notify_record") as session:
            recorded = compare_and_set(
                session, Outbox, claim.row_id, OUTBOX_TRANSITIONS["send"],
                where=self._still_ours(claim), sent_at=self.clock(), last_error=None,
                slack_ts=delivery.ts,
                thread_ts=None if claim.group is not None else claim.thread_ts)
        self.metrics.notification_sends.labels(claim.channel, "sent").inc()
        log.info("notification sent", extra={**self._context(claim), "outcome": "sent",
                                              "recorded": recorded})

    def _redacted(self, claim: _Claim) -> _Claim:
        """The claim with everything a message shows redacted: event details (an action's
        error, an exec step's output), the alert's labels, annotations and generatorURL."""
        tree = self.redactor.tree
        incident = claim.incident and replace(
            claim.incident, labels=tree(dict(claim.incident.labels)),
            annotations=tree(dict(claim.incident.annotations)),
            generator_url=self.redactor.url(claim.incident.generator_url))
        group = claim.group and replace(claim.group, group_labels=tree(claim.group.group_labels),
                                        summary=tree(claim.group.summary))
        return replace(claim, event=replace(claim.event, details=tree(claim.event.details)),
                       incident=incident, group=group)

    def _record_failure(self, claim: _Claim, error: str, *, retryable: bool,
                        retry_after_s: float | None = None) -> None:
        error = self.redactor.text(redact(error, self._secrets), _ERROR_MAX)
        give_up = not retryable or claim.attempts >= self.settings.notify_max_attempts
        now = self.clock()
        values: dict[str, Any] = {"last_error": error}
        if give_up:
            outcome = "failed"
        else:
            delay = self._backoff(claim.attempts)
            if retry_after_s is not None:
                delay = min(retry_after_s, self.settings.notify_backoff_max_s)
            values["next_attempt_at"] = now + timedelta(seconds=delay)
            outcome = "retried"
        with self.database.session("notify_record") as session:
            compare_and_set(session, Outbox, claim.row_id,
                            OUTBOX_TRANSITIONS["fail"] if give_up else None,
                            where=self._still_ours(claim), **values)
        self.metrics.notification_sends.labels(claim.channel, outcome).inc()
        extra = {**self._context(claim), "outcome": outcome, "error": error}
        if give_up:
            log.error("notification failed; giving up", extra=extra)
        else:
            log.warning("notification failed; will retry",
                        extra={**extra, "retry_in_s": round(float(
                            (values["next_attempt_at"] - now).total_seconds()), 3)})

    def _still_ours(self, claim: _Claim) -> list[Any]:
        """The claim still holds: no other sender claimed the row since (its lease ended)."""
        return [Outbox.claimed_by == self.worker, Outbox.attempts == claim.attempts]

    def _backoff(self, attempts: int) -> float:
        base = self.settings.notify_backoff_s * 2 ** max(0, attempts - 1)
        return float(min(base, self.settings.notify_backoff_max_s))

    def _context(self, claim: _Claim) -> dict[str, Any]:
        incident = claim.incident
        return {"incident_id": claim.event.incident_id, "outbox_id": claim.row_id,
                "channel": claim.channel, "kind": claim.event.kind, "attempt": claim.attempts,
                "fingerprint": incident.fingerprint if incident else None,
                "target": (claim.event.details.get("target")
                           or (incident.target if incident else None))}


def _thread_root(session: Session, row: Outbox) -> str | None:
    """The ts of the incident's top-level message on this channel, once one was sent."""
    return session.scalar(
        select(Outbox.slack_ts).where(
            Outbox.incident_id == row.incident_id, Outbox.channel == row.channel,
            Outbox.status == OutboxStatus.SENT, Outbox.slack_ts.is_not(None),
            Outbox.thread_ts.is_(None))
        .order_by(Outbox.id).limit(1))


def _group_root(session: Session, row: Outbox) -> str | None:
    """The ts of the group's message on this channel, once one was posted: updated in
    place from then on."""
    return session.scalar(
        select(Outbox.slack_ts).where(
            Outbox.group_id == row.group_id, Outbox.channel == row.channel,
            Outbox.status == OutboxStatus.SENT, Outbox.slack_ts.is_not(None))
        .order_by(Outbox.id).limit(1))


def _kind(text: str) -> EventKind:
    return cast(EventKind, text)  # stored by emit from an Event; messages handle any kind


def start_sender(database: Database, settings: Settings, metrics: Metrics, notifier: object,
                 worker: str, redactor: Redactor | None = None,
                 clock: Callable[[], datetime] = utcnow) -> OutboxSender | None:
    """Start this process's sender, or None when no channel is configured."""
    channels = build_channels(settings)
    if not channels:
        return None
    wakeup = notifier.wakeup if isinstance(notifier, OutboxNotifier) else None
    sender = OutboxSender(database, settings, metrics, channels, worker, wakeup, clock,
                          redactor=redactor)
    sender.start()
    return sender


