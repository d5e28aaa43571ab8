"""Execute one claimed run: guards, then each step in order, every outcome recorded."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from .actions.registry import ActionContext, ActionFailed, IncidentView
from .breaker import BreakerDecision, gauge_value
from .db.models import Action, Incident, Run, utcnow
from .executor import ExecutorError
from .guards import GuardStop, admit, check_run_target, take_target, target_lock
from .ingest import template_context
from .notify import Event
from .playbooks.config import ActionStep, Playbook
from .playbooks.templating import TemplateRenderError
from .services import Services

__all__ = ["escalate_incident", "execute_run", "record_skip"]

log = logging.getLogger("autofix.execution")


def escalate_incident(session: Session, services: Services, incident_id: int,
                      reason: str) -> None:
    incident = session.get(Incident, incident_id)
    if incident is None or incident.status == "resolved":
        return
    if incident.status != "escalated":
        incident.status, incident.escalated_at = "escalated", utcnow()
    incident.escalation_reason = reason[:2000]
    services.notifier.emit(session, Event("escalated", incident_id, {"reason": reason}))


def record_skip(session: Session, services: Services, run: Run, stop: GuardStop) -> None:
    if stop.target:
        run.target = stop.target  # canonical, when resolution got that far
    now = utcnow()
    session.add(Action(run_id=run.id, incident_id=run.incident_id, playbook=run.playbook,
                       action="guard", target=run.target, params={}, outcome="skipped",
                       reason=stop.reason, error=stop.message[:2000], started_at=now,
                       finished_at=now, duration_s=0.0, trigger=run.trigger))
    run.status, run.finished_at, run.error = "skipped", now, f"{stop.reason}: {stop.message}"
    services.metrics.actions.labels(run.playbook, "guard", f"skipped:{stop.reason}").inc()
    if stop.breaker is not None and stop.breaker.opened_now:
        services.metrics.breaker_state.labels(run.target).set(2)
        services.notifier.emit(session, Event("breaker_opened", run.incident_id, {
            "target": run.target, "retry_after_s": stop.retry_after_s}))
    if stop.escalate:
        escalate_incident(session, services, run.incident_id, f"{stop.reason}: {stop.message}")
    incident = session.get(Incident, run.incident_id)
    log.info("run skipped", extra={"run_id": run.id, "incident_id": run.incident_id,
                                   "fingerprint": incident.fingerprint if incident else None,
                                   "target": run.target, "reason": stop.reason})


def execute_run(services: Services, run_id: int) -> None:
    with services.database.session("run_load") as session:
        run = session.get(Run, run_id)
        assert run is not None
        incident = session.get(Incident, run.incident_id)
        assert incident is not None
        view = IncidentView(incident.id, incident.alertname, dict(incident.labels),
                            dict(incident.annotations), incident.starts_at, run.alert_status,
                            incident.fingerprint)
        playbook = services.config.current.playbooks.by_name(run.playbook)
        if playbook is None:
            record_skip(session, services, run, GuardStop(
                "playbook_missing", f"playbook {run.playbook!r} is not loaded"))
            return
        if run.alert_status == "firing" and incident.status == "resolved":
            # The alert cleared while the run waited in the queue: acting now would act on
            # a resolved alert, the field's classic way to hurt a healthy container.
            record_skip(session, services, run, GuardStop(
                "alert_resolved", "the alert resolved before the run started"))
            return
        trigger, target, run_dry_run = run.trigger, run.target, run.dry_run
        run_reason = run.reason
    dry_run = services.settings.dry_run or playbook.dry_run or run_dry_run
    # Guards protect targets, resolved first to one canonical identity (guards.py); a
    # playbook that only notifies or checks needs none of them (subject None).
    subject = check_run_target(services, playbook, target, run_reason, view)
    with target_lock(services.database), services.database.session("run_admit") as session:
        run = session.get(Run, run_id)
        assert run is not None
        if isinstance(subject, GuardStop):
            record_skip(session, services, run, subject)
            return
        if subject is not None:
            if not take_target(session, run, subject.key):
                # An alias of this target is running: wait for it. The canonical target
                # now stored makes claim_next hold this run until that one ends.
                run.status, run.started_at, run.worker = "queued", None, None
                return
            target = subject.key
        if subject is not None and not dry_run:
            decision = admit(session, playbook, target, utcnow(), exclude_run=run_id)
            if isinstance(decision, GuardStop):
                record_skip(session, services, run, decision)
                return
            run.admitted_at = utcnow()
            _publish_breaker(services, target, decision)
        incident = session.get(Incident, run.incident_id)
        if incident is not None and incident.status == "open":
            incident.status = "remediating"
        services.notifier.emit(session, Event("playbook_started", run.incident_id, {
            "playbook": playbook.name, "target": target, "trigger": trigger,
            "dry_run": dry_run}))
    _run_steps(services, run_id, playbook, view, subject.name if subject else target, trigger,
               dry_run)


def _publish_breaker(services: Services, target: str, decision: BreakerDecision) -> None:
    services.metrics.breaker_state.labels(target).set(gauge_value(decision.snapshot.state))


def _run_steps(services: Services, run_id: int, playbook: Playbook, view: IncidentView,
               target: str, trigger: str, dry_run: bool) -> None:
    escalations: list[str] = []
    notes: list[tuple[str, str]] = []
    context = ActionContext(
        target=target, playbook=playbook.name, run_id=run_id, incident=view,
        executor=services.executor, settings=services.settings,
        escalate=escalations.append, notify=lambda kind, text: notes.append((kind, text)))
    template_vars = template_context(view.labels, view.annotations, view.status)
    template_vars["target"] = target
    final_status = "succeeded"
    for index, step in enumerate(playbook.actions):
        outcome, reason, error, detail, params, duration = _run_step(
            services, context, step, template_vars, dry_run)
        with services.database.session("action_record") as session:
            now = utcnow()
            session.add(Action(
                run_id=run_id, incident_id=view.id, playbook=playbook.name, action=step.action,
                target=target, params={**params, **({"detail": detail} if detail else {})},
                outcome=outcome, reason=reason, error=error, trigger=trigger,
                started_at=now if duration is None else _ago(now, duration), finished_at=now,
                duration_s=duration))
            services.metrics.actions.labels(playbook.name, step.action, outcome).inc()
            if duration is not None:
                services.metrics.action_duration.labels(step.action).observe(duration)
            services.notifier.emit(session, Event("action_result", view.id, {
                "playbook": playbook.name, "action": step.action, "target": target,
                "outcome": outcome, "error": error, "duration_s": duration, "step": index}))
            for kind, text in notes:
                services.notifier.emit(session, Event("note", view.id, {"kind": kind,
                                                                      "text": text}))
            notes.clear()
            for reason_text in escalations:
                escalate_incident(session, services, view.id, reason_text)
            escalations.clear()
            if outcome == "failed":
                final_status = "failed"
                escalate_incident(session, services, view.id,
                                  f"step {index + 1} ({step.action}) failed: {error}")
        if outcome == "failed":
            break
    with services.database.session("run_finish") as session:
        run = session.get(Run, run_id)
        if run is not None:
            run.status, run.finished_at = final_status, utcnow()
    log.info("run finished", extra={"run_id": run_id, "incident_id": view.id, "target": target,
                                    "fingerprint": view.fingerprint, "status": final_status})


def _run_step(services: Services, context: ActionContext, step: ActionStep,
              template_vars: dict[str, Any], dry_run: bool
              ) -> tuple[str, str | None, str | None, str | None, dict[str, Any], float | None]:
    """(outcome, reason, error, detail, rendered params, duration)."""
    spec = services.registry.get(step.action)
    if spec is None:
        return "failed", "unknown_action", f"unknown action {step.action!r}", None, {}, None
    try:
        rendered = services.renderer.render_tree(step.params, template_vars)
        params = spec.params.model_validate(rendered)
    except (TemplateRenderError, ValidationError) as exc:
        return "failed", "invalid_params", str(exc)[:2000], None, dict(step.params), None
    dumped = params.model_dump(mode="json")
    if dry_run:
        return "dry_run", None, None, f"would run {step.action}", dumped, 0.0
    started = time.monotonic()
    try:
        detail = spec.run(context, params)
        outcome, reason, error = "succeeded", None, None
    except ActionFailed as exc:
        detail, outcome, reason, error = None, "failed", exc.reason, str(exc)
    except ExecutorError as exc:
        detail, outcome, reason, error = None, "failed", "executor_error", str(exc)
    except Exception as exc:  # recorded and counted; never crashes the worker
        log.exception("action raised", extra={
            "action": step.action, "target": context.target, "incident_id": context.incident.id,
            "fingerprint": context.incident.fingerprint})
        detail, outcome, reason, error = None, "failed", "exception", f"{type(exc).__name__}: {exc}"
    return outcome, reason, error and error[:2000], detail, dumped, time.monotonic() - started


def _ago(now: datetime, seconds: float) -> datetime:
    return now - timedelta(seconds=seconds)
