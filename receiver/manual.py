"""Manual runs and breaker resets: the same guards as alerts, answered synchronously."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import NoReturn

from .actions.registry import IncidentView
from .breaker import BreakerSnapshot
from .db.models import AuditEntry, Breaker, Incident, Run, utcnow
from .errors import BadRequest, Conflict, Forbidden, NotFound
from .guards import GuardStop, admit, check_run_target, check_target
from .ingest import resolve_target
from .playbooks.config import Playbook
from .services import Services

__all__ = ["ManualRun", "reset_breaker", "start_manual_run"]

_NOT_FOUND = {"target_not_found"}
_FORBIDDEN = {"target_not_allowed"}
_BAD = {"invalid_target", "target_ambiguous"}


@dataclass(frozen=True)
class ManualRun:
    incident_id: int
    run_id: int
    target: str


def start_manual_run(services: Services, playbook: Playbook, labels: dict[str, str],
                     reason: str, actor: str, dry_run: bool) -> ManualRun:
    target, error = resolve_target(playbook.target, labels, {}, services.renderer)
    if target is None:
        raise BadRequest(f"cannot resolve the target from labels: {error}")
    now = utcnow()
    view = IncidentView(0, labels.get("alertname", ""), labels, {}, now)
    subject = check_run_target(services, playbook, target, None, view)
    if subject is None:  # as ever: by hand, even a notify-only playbook names an allowed target
        subject = check_target(target, services.executor, services.settings, now)
    if isinstance(subject, GuardStop):
        _raise_for(subject)
    target = subject.key  # canonical: the run, its lock and the audit name the target
    with services.database.scratch_session("manual_peek") as session:
        decision = admit(session, playbook, target, now, exclude_run=None)
        if isinstance(decision, GuardStop):
            _raise_for(decision)
    with services.database.session("manual_run") as session:
        incident = Incident(
            fingerprint=f"manual-{uuid.uuid4().hex[:24]}", starts_at=now,
            alertname=labels.get("alertname", f"manual:{playbook.name}")[:255],
            severity=labels.get("severity", "")[:64], container=labels.get("container", "")[:255],
            target=target, playbook=playbook.name, labels=labels,
            annotations={"reason": reason, "requested_by": actor}, generator_url="",
            status="open", notification_count=1, first_seen=now, last_seen=now,
            trigger="manual")
        session.add(incident)
        session.flush()
        run = Run(incident_id=incident.id, playbook=playbook.name, target=target,
                  trigger="manual", alert_status="firing", reason=reason, requested_by=actor,
                  status="queued", queued_at=now, dry_run=dry_run)
        session.add(run)
        session.add(AuditEntry(actor=actor, verb="manual_run", subject=target,
                               reason=f"{playbook.name}: {reason}"))
        session.flush()
        created = ManualRun(incident.id, run.id, target)
    services.wakeup.set()
    return created


def _raise_for(stop: GuardStop) -> NoReturn:
    details = {"reason": stop.reason}
    if stop.reason in _NOT_FOUND:
        raise NotFound(stop.message, **details)
    if stop.reason in _FORBIDDEN:
        raise Forbidden(stop.message, **details)
    if stop.reason in _BAD:
        raise BadRequest(stop.message, **details)
    raise Conflict(stop.message, retry_after_s=stop.retry_after_s, **details)


def reset_breaker(services: Services, target: str, actor: str, reason: str) -> BreakerSnapshot:
    with services.database.session("breaker_reset") as session:
        row = session.get(Breaker, target)
        if row is None:
            raise NotFound(f"no breaker state for {target!r}")
        row.state, row.opened_at, row.open_until, row.reopen_count = "closed", None, None, 0
        row.updated_at = utcnow()
        session.add(AuditEntry(actor=actor, verb="breaker_reset", subject=target,
                               reason=reason))
        snapshot = BreakerSnapshot(row.state, None, None, 0, row.last_admitted_at)
    services.metrics.breaker_state.labels(target).set(0)
    return snapshot
