"""What operators do by hand: manual runs (the same guards as alerts, answered
synchronously), breaker resets, acknowledging and closing incidents. All audited."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from typing import NoReturn, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from receiver.actions.registry import IncidentView
from receiver.domain.errors import BadRequest, Conflict, Forbidden, NotFound
from receiver.engine.blast_radius import StormPolicy
from receiver.engine.breaker import BreakerSnapshot
from receiver.engine.execution import is_mutating, leaves_process
from receiver.engine.guards import (
    GuardStop,
    admit,
    check_run_target,
    check_target,
    maintenance_stop,
    pick_host,
)
from receiver.engine.services import Services
from receiver.playbooks.config import Playbook
from receiver.playbooks.ingest import resolve_target
from receiver.store.lifecycle import (
    BREAKER_TRANSITIONS,
    NEW_RUN_STATUS,
    IncidentStatus,
    new_incident_status,
    transition_incident,
)
from receiver.store.models import AuditEntry, Breaker, Incident, Run

RowT = TypeVar("RowT", Incident, Run)

__all__ = ["ManualRun", "acknowledge_incident", "close_incident", "fresh_or_404", "reset_breaker",
           "start_manual_run"]

log = logging.getLogger("autofix.manual")
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
    now = services.clock()
    view = IncidentView(0, labels.get("alertname", ""), labels, {}, now)
    # The checks ask the target's host on this request thread: bounded per host, so a
    # hung host cannot hold every thread (the rest get 503 at once, as dependents do).
    picked = pick_host(services, playbook, target, view)
    with services.host_calls.calling(picked[0] if isinstance(picked, tuple) else None):
        subject = check_run_target(services, playbook, target, None, view)
        if subject is None:  # by hand, even a notify-only playbook names an allowed target
            subject = check_target(target, services.executor_for(playbook),
                                   services.settings, now)
    if isinstance(subject, GuardStop):
        _raise_for(subject)
    # Canonical: the run, its lock and the audit name the target.
    rendered, target = target, subject.key
    # A dry run touches nothing, so it goes on while automation is paused.
    dry = (dry_run or playbook.dry_run or playbook.mode == "observe"
           or services.settings.dry_run)
    with services.database.scratch_session("manual_peek") as session:
        held = None if dry or not leaves_process(services, playbook) else maintenance_stop(
            session, now, labels, list(dict.fromkeys([rendered, target, subject.name])))
        if held is not None:
            _raise_for(replace(held, message=f"{held.message}; a manual run inside a "
                               "maintenance window is held too: end the window first "
                               "(POST /api/v1/maintenance/<id>/end), or ask for a dry run"))
        decision = admit(session, playbook, target, now, exclude_run=None, check_pause=not dry,
                         host=None if dry else subject.host,
                         storm=StormPolicy.of(services.settings))
        if isinstance(decision, GuardStop):
            _raise_for(decision)
    with services.database.session("manual_run") as session:
        incident = Incident(
            fingerprint=f"manual-{uuid.uuid4().hex[:24]}", starts_at=now,
            alertname=labels.get("alertname", f"manual:{playbook.name}")[:255],
            severity=labels.get("severity", "")[:64], container=labels.get("container", "")[:255],
            target=target, playbook=playbook.name, labels=labels,
            annotations={"reason": reason, "requested_by": actor}, generator_url="",
            status=new_incident_status(resolved=False), notification_count=1, first_seen=now,
            last_seen=now, trigger="manual")
        session.add(incident)
        session.flush()
        run = Run(incident_id=incident.id, playbook=playbook.name, target=target,
                  trigger="manual", alert_status="firing", reason=reason, requested_by=actor,
                  status=NEW_RUN_STATUS, queued_at=now, dry_run=dry_run,
                  config_version=services.config.current.version_id,
                  lane="act" if is_mutating(services, playbook) else "light",
                  priority=playbook.priority)
        session.add(run)
        session.add(AuditEntry(actor=actor, verb="manual_run", subject=target,
                               reason=f"{playbook.name}: {reason}"))
        session.flush()
        created = ManualRun(incident.id, run.id, target)
    log.info("manual run requested", extra={
        "incident_id": created.incident_id, "run_id": created.run_id, "target": target,
        "playbook": playbook.name, "actor": actor, "reason": reason, "dry_run": dry_run})
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


def reset_breaker(services: Services, target: str, actor: str,
                  reason: str) -> tuple[str, BreakerSnapshot]:
    """Close the breaker; only admissions after this moment count toward it again.

    Breakers are keyed by canonical name: an alias (ID, ID prefix) is resolved first; the
    name is returned with the new state."""
    now = services.clock()
    target = _canonical(services, target)
    with services.database.session("breaker_reset") as session:
        row = session.scalars(select(Breaker).where(Breaker.target == target)
                              .with_for_update()).first()
        if row is None:
            raise NotFound(f"no breaker state for {target!r}")
        row.state = BREAKER_TRANSITIONS["reset"].to
        row.opened_at, row.open_until, row.reopen_count = None, None, 0
        row.reset_at = row.updated_at = now
        session.add(AuditEntry(actor=actor, verb="breaker_reset", subject=target,
                               reason=reason))
        snapshot = BreakerSnapshot(row.state, None, None, 0, row.last_admitted_at, now)
    services.metrics.database_changed()
    log.info("breaker reset", extra={"target": target, "actor": actor, "reason": reason})
    return target, snapshot


def _canonical(services: Services, target: str) -> str:
    """The canonical name of a target reference on the first backend that knows it; the
    reference itself when none can say (gone, ambiguous, down, or not a target name at
    all, e.g. http:host:port)."""
    identity = services.executors.canonical(target)
    return identity.name if identity is not None else target


def acknowledge_incident(services: Services, incident_id: int, actor: str,
                         reason: str) -> Incident:
    """A human is on it. Idempotent; 409 once the incident is resolved or closed."""
    with services.database.session("incident_ack") as session:
        moved = transition_incident(session, incident_id, "acknowledge",
                                    acknowledged_at=services.clock(), acknowledged_by=actor)
        incident = _incident_or_404(session, incident_id)
        if not moved and incident.status != IncidentStatus.ACKNOWLEDGED:
            raise Conflict(f"incident {incident_id} is {incident.status}",
                           reason="incident_" + incident.status)
        if moved:
            session.add(AuditEntry(actor=actor, verb="incident_acknowledge",
                                   subject=str(incident_id), reason=reason))
    log.info("incident acknowledged", extra={"incident_id": incident_id, "actor": actor,
                                             "changed": moved})
    return incident


def close_incident(services: Services, incident_id: int, actor: str, reason: str) -> Incident:
    """Close an incident by hand: no more retries. 409 if resolved or closed already."""
    with services.database.session("incident_close") as session:
        moved = transition_incident(session, incident_id, "close",
                                    closed_at=services.clock(), closed_by=actor,
                                    close_reason=reason, next_attempt_at=None)
        incident = _incident_or_404(session, incident_id)
        if not moved:
            raise Conflict(f"incident {incident_id} is {incident.status}",
                           reason="incident_" + incident.status)
        session.add(AuditEntry(actor=actor, verb="incident_close", subject=str(incident_id),
                               reason=reason))
    log.info("incident closed", extra={"incident_id": incident_id, "actor": actor})
    return incident


def _incident_or_404(session: Session, incident_id: int) -> Incident:
    return fresh_or_404(session, Incident, incident_id, "incident")


def fresh_or_404(session: Session, model: type[RowT], row_id: int, noun: str) -> RowT:
    """The row as the database has it now (a compare-and-set may just have changed it)."""
    session.expire_all()
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"no {noun} {row_id}")
    return row
