"""CrashLoopBackOff for a still-firing incident: autofix tries again on its own.

Alertmanager re-sends the same occurrence (same startsAt) while an alert keeps firing, and
ingest deduplicates it, so no new run would ever come. When a run for an alert fails, or is
held back by the cooldown, an open breaker or a `require:` that does not hold
(preconditions.py), its incident gets `next_attempt_at`; when that time comes, one
worker (compare-and-set on the timestamp) queues a `retry` run, which passes every guard
again. The breaker bounds the attempts and doubles its open period up
to `open_for_max`. Resolved and closed incidents are never retried.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from receiver.engine.services import Services
from receiver.store.lifecycle import (
    NEW_RUN_STATUS,
    RETRYABLE_INCIDENT_STATUSES,
    compare_and_set,
)
from receiver.store.models import Incident, Run

__all__ = ["ESCALATED_ONCE", "RETRY_ON_SKIP", "RETRY_TRIGGERS", "queue_due_retries",
           "schedule_retry"]

log = logging.getLogger("autofix.retries")
RETRY_TRIGGERS = ("alert", "retry")  # a manual run is never repeated on its own
# budget_exhausted: a budget is a rate, so the run waits for the oldest counted action to
# leave the window (its incident is escalated meanwhile). host_storm is not retried: after
# a storm, restarting that host's containers would be a guess (host_storm.py).
RETRY_ON_SKIP = ("breaker_open", "cooldown", "precondition_failed", "budget_exhausted")
# A retry skipped again for these does not page again: the first skip escalated, and while a
# budget is used up every blocked incident retries when one slot frees (one acts, the rest
# would each re-escalate: a page per incident per slot).
ESCALATED_ONCE = ("budget_exhausted",)


def schedule_retry(session: Session, trigger: str, incident_id: int, at: datetime) -> bool:
    """Set the incident's next attempt, if it came from an alert and may still be retried:
    never once its alert resolved (escalated since by its own chain, it waits for a human)."""
    if trigger not in RETRY_TRIGGERS:
        return False
    return compare_and_set(session, Incident, incident_id,
                           where=[Incident.status.in_(RETRYABLE_INCIDENT_STATUSES),
                                  Incident.resolved_at.is_(None)], next_attempt_at=at)


def queue_due_retries(services: Services, limit: int = 100) -> list[int]:
    """Queue one retry run per incident whose next attempt is due. Safe on every worker."""
    now = services.clock()
    queued: list[int] = []
    with services.database.session("retries") as session:
        due = session.execute(
            select(Incident.id, Incident.next_attempt_at, Incident.playbook, Incident.target)
            .where(Incident.next_attempt_at <= now, Incident.resolved_at.is_(None),
                   Incident.status.in_(RETRYABLE_INCIDENT_STATUSES))
            .order_by(Incident.next_attempt_at).limit(limit)).all()
        for incident_id, seen, playbook, target in due:
            claimed = compare_and_set(session, Incident, incident_id,
                                      where=[Incident.next_attempt_at == seen],
                                      next_attempt_at=None)
            if not claimed or not playbook:
                continue
            found = services.config.current.playbooks.by_name(playbook)
            run_id = session.execute(insert(Run).values(
                incident_id=incident_id, playbook=playbook, target=target or "",
                trigger="retry", alert_status="firing", status=NEW_RUN_STATUS,
                reason=f"retry: the alert is still firing (due {seen})",
                queued_at=now, dry_run=False,
                config_version=services.config.current.version_id, lane="act",
                priority=found.priority if found else 0,
            ).returning(Run.id)).scalar_one()
            queued.append(run_id)
    if queued:
        log.info("queued retries of still-firing incidents", extra={"run_ids": queued})
        services.wakeup.set()
    return queued
