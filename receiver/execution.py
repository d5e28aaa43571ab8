"""Execute one claimed run: guards, then each step in order, every outcome recorded.

Status changes go through `lifecycle` (compare-and-set). Outcomes of steps that touched a
target are written with `write_durably`: a database blip delays the record, never loses it,
and the (run, step) key keeps a retried write from becoming a second row.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import CursorResult, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .actions.registry import ActionContext, ActionFailed, IncidentView
from .blast_radius import StormPolicy
from .db.durable import write_durably
from .db.models import Action, Incident, Run
from .errors import DatabaseUnavailable
from .evidence.capture import Evidence
from .evidence.runtime import RunEvidence, classification_stop
from .executor import ExecutorError, TargetIdentity
from .guards import (
    GuardStop,
    Subject,
    admit,
    check_run_target,
    maintenance_stop,
    pause_stop,
    take_target,
    target_lock,
)
from .host_storm import record_storm
from .ingest import template_context
from .intent.guard import intent_guard
from .lifecycle import (
    IncidentStatus,
    RunStatus,
    active_pause,
    transition_incident,
    transition_run,
)
from .lifecycle import update_incident_if as update_incident_while
from .notify import Event
from .playbooks.config import ActionStep, Playbook
from .playbooks.templating import TemplateRenderError
from .preconditions import precondition_retry_s, precondition_stop
from .retries import RETRY_ON_SKIP, schedule_retry
from .services import Services

__all__ = ["RunInfo", "await_approval", "escalate_incident", "execute_run", "insert_action",
           "leaves_process", "record_skip"]

log = logging.getLogger("autofix.execution")
GUARD_STEP = -1  # the Action row of the guard that stopped a run
# (outcome, reason, error, detail, rendered params, duration) of one step
StepResult = tuple[str, str | None, str | None, str | None, dict[str, Any], float | None]


@dataclass(frozen=True)
class RunInfo:
    """What a run needs after its loading transaction has ended."""

    run_id: int
    incident_id: int
    playbook: str
    target: str
    trigger: str
    dry_run: bool
    reason: str | None
    fingerprint: str
    approved: bool = False  # a human approved it (mode approve), or asked for it by hand

    @classmethod
    def of(cls, run: Run, incident: Incident) -> RunInfo:
        return cls(run.id, run.incident_id, run.playbook, run.target, run.trigger,
                   run.dry_run, run.reason, incident.fingerprint,
                   run.decision == "approved" or run.trigger == "manual")


def escalate_incident(session: Session, services: Services, incident_id: int,
                      reason: str) -> None:
    """open/remediating → escalated; an incident already escalated or acknowledged keeps its
    status and records the newest reason. Resolved and closed incidents are left alone."""
    text = reason[:2000]
    moved = transition_incident(session, incident_id, "escalate",
                                escalated_at=services.clock(), escalation_reason=text)
    if not moved and not update_incident_while(
            session, incident_id, (IncidentStatus.ESCALATED, IncidentStatus.ACKNOWLEDGED),
            escalation_reason=text):
        return
    services.notifier.emit(session, Event("escalated", incident_id, {"reason": reason}))


def insert_action(session: Session, values: dict[str, Any]) -> bool:
    """Insert one Action row unless its (run, step) is recorded already; True if inserted."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql.insert(Action).on_conflict_do_nothing(
            index_elements=["run_id", "step"])
    elif dialect == "sqlite":
        statement = sqlite.insert(Action).on_conflict_do_nothing(
            index_elements=["run_id", "step"])
    else:  # pragma: no cover - only the two supported backends
        statement = insert(Action)
    result: CursorResult[Any] = session.execute(statement.values(**values))  # type: ignore[assignment]
    return result.rowcount == 1


def _closes_incident(info: RunInfo, guarded: bool) -> bool:
    """No alert will ever resolve these incidents, or there is nothing left to remediate:
    the end of their run closes them (a failed notify/check-only run of an alert excepted).
    An alert's dry run (mode observe, dry_run) changed nothing: its incident stays open
    until the alert resolves."""
    return info.trigger == "manual" or not guarded


def _close_after_run(session: Session, services: Services, info: RunInfo,
                     outcome: str, dry_run: bool) -> None:
    why = ("manual run" if info.trigger == "manual" else "dry run" if dry_run
           else "notify-only playbook")
    transition_incident(session, info.incident_id, "close", closed_at=services.clock(),
                        closed_by="autofix", next_attempt_at=None,
                        close_reason=f"{why} {info.playbook} ended: {outcome}")


def record_skip(session: Session, services: Services, info: RunInfo, stop: GuardStop,
                closes_incident: bool = False) -> None:
    now = services.clock()
    stop = replace(stop, message=services.redactor.text(stop.message, 4000))
    values: dict[str, Any] = {}
    if stop.target and stop.target != info.target:
        values["target"] = stop.target  # canonical, when resolution got that far
        info = replace(info, target=stop.target)
    # A run queued without a reason gets the skip's, so every skipped run says why.
    if not transition_run(session, info.run_id, "skip", finished_at=now,
                          error=f"{stop.reason}: {stop.message}"[:4000],
                          reason=func.coalesce(Run.reason, stop.reason), **values):
        return  # already ended elsewhere (reconciled): nothing more to record
    insert_action(session, dict(
        run_id=info.run_id, incident_id=info.incident_id, playbook=info.playbook,
        action="guard", target=info.target, params={}, outcome="skipped", reason=stop.reason,
        error=stop.message[:2000], started_at=now, finished_at=now, duration_s=0.0,
        trigger=info.trigger, step=GUARD_STEP))
    services.metrics.actions.labels(info.playbook, "guard", f"skipped:{stop.reason}").inc()
    services.metrics.runs_skipped.labels(stop.reason).inc()
    if stop.breaker is not None and stop.breaker.opened_now:
        services.metrics.database_changed()
        log.warning("breaker opened", extra={
            "target": info.target, "incident_id": info.incident_id, "run_id": info.run_id,
            "playbook": info.playbook, "reopen_count": stop.breaker.snapshot.reopen_count,
            "retry_after_s": stop.retry_after_s})
        services.notifier.emit(session, Event("breaker_opened", info.incident_id, {
            "target": info.target, "retry_after_s": stop.retry_after_s}))
    if stop.escalate:
        escalate_incident(session, services, info.incident_id, f"{stop.reason}: {stop.message}")
    if stop.storm is not None:  # the storm's one incident is the escalation
        storm = record_storm(session, services, stop.storm)
        if storm.incident_id is not None and storm.escalation is not None:
            escalate_incident(session, services, storm.incident_id, storm.escalation)
    if stop.reason in RETRY_ON_SKIP and stop.retry_after_s is not None:
        schedule_retry(session, info.trigger, info.incident_id,
                       now + timedelta(seconds=stop.retry_after_s))
    if closes_incident:
        _close_after_run(session, services, info, f"skipped ({stop.reason})", info.dry_run)
    # A stop that needs a human is a warning; cooldowns and recoveries are routine.
    log.log(logging.WARNING if stop.escalate else logging.INFO, "run skipped by a guard",
            extra={"run_id": info.run_id, "incident_id": info.incident_id,
                   "fingerprint": info.fingerprint, "target": info.target,
                   "playbook": info.playbook, "reason": stop.reason, "detail": stop.message,
                   "escalated": stop.escalate})


def _precondition(services: Services, run: Run, incident: Incident,
                  playbook: Playbook | None) -> GuardStop | None:
    if playbook is None:
        return GuardStop("playbook_missing", f"playbook {run.playbook!r} (config version "
                         f"{run.config_version}) is not loaded")
    if run.alert_status == "firing" and incident.status == IncidentStatus.RESOLVED:
        # The alert cleared while the run waited in the queue: acting now would act on
        # a resolved alert, the field's classic way to hurt a healthy container.
        return GuardStop("alert_resolved", "the alert resolved before the run started")
    if incident.status == IncidentStatus.CLOSED:
        return GuardStop("incident_closed",
                         f"incident closed by {incident.closed_by}: {incident.close_reason}")
    return None


def _recovered_since(session: Session, run: Run, incident: Incident) -> datetime:
    """A (re)start after this moment means someone else fixed it already. For a retry,
    autofix's own earlier restarts of this incident do not count as recoveries."""
    if run.trigger != "retry":
        return incident.starts_at
    last_ours = session.scalar(select(func.max(Run.finished_at)).where(
        Run.incident_id == incident.id, Run.admitted_at.is_not(None), Run.id != run.id))
    return max(incident.starts_at, last_ours) if last_ours else incident.starts_at


def execute_run(services: Services, run_id: int) -> None:
    with services.database.session("run_load") as session:
        run = session.get(Run, run_id)
        incident = session.get(Incident, run.incident_id) if run is not None else None
        if run is None or incident is None:
            # Claimed, then deleted (retention, a cascade) before it loaded: nothing to act on.
            log.warning("run vanished before it started", extra={"run_id": run_id})
            return
        info = RunInfo.of(run, incident)
        view = IncidentView(incident.id, incident.alertname, dict(incident.labels),
                            dict(incident.annotations), incident.starts_at, run.alert_status,
                            incident.fingerprint, incident.generator_url)
        recovered_since = _recovered_since(session, run, incident)
        playbook = services.config.playbook_for(run.config_version, run.playbook)
        stop = _precondition(services, run, incident, playbook)
        if stop is not None or playbook is None:
            record_skip(session, services, info, stop or GuardStop("playbook_missing", ""),
                        closes_incident=info.trigger == "manual")
            return
        dry_run = (services.settings.dry_run or playbook.dry_run or info.dry_run
                   or playbook.mode == "observe")
        if dry_run and not run.dry_run:
            run.dry_run = True  # what the run is, for the API and the CLI
            info = replace(info, dry_run=True)
        # The kill switch, then maintenance windows, hold what leaves the process; a dry
        # run or a notification goes on. The kill switch first, so that nothing below (a
        # precondition, a human asked to approve) escalates while a human has paused it all.
        # Admission checks it again: a pause may start while the guards below run.
        held = not dry_run and leaves_process(services, playbook)
        # The window's labels and the target as rendered first...
        stop = ((pause_stop(session, services.clock()) or maintenance_stop(
            session, services.clock(), view.labels, [info.target])) if held else None)
        if stop is not None:
            record_skip(session, services, info, stop, closes_incident=info.trigger == "manual")
            return
        # A dry run is not retried (it would only record the same again), nor a manual run.
        retry_s = (precondition_retry_s(session, info.incident_id)
                   if playbook.require and not dry_run else None)
    closes = _closes_incident(info, is_mutating(services, playbook))
    # Guards protect targets, resolved first to one canonical identity (guards.py); a
    # playbook that only notifies or checks needs none of them (subject None).
    subject = check_run_target(services, playbook, info.target, info.reason,
                               replace(view, starts_at=recovered_since))
    if held and isinstance(subject, Subject):
        # ...then the canonical name: a window over a name holds an alert naming an ID.
        with services.database.session("maintenance_check") as session:
            stop = maintenance_stop(session, services.clock(), view.labels,
                                    [subject.key, subject.name])
        if stop is not None:
            subject = replace(stop, target=subject.key)
    evidence = None
    if isinstance(subject, Subject) and subject.identity is not None:
        # Before any guard that counts an action: what the target looks like now, and
        # whether the playbook wants to act on that at all (skip_when / escalate_when).
        evidence = RunEvidence(services, services.executor_for(playbook), info.incident_id,
                               info.run_id, subject.name, view.generator_url)
        stop = _evidence_guard(services, playbook, evidence, subject, subject.identity)
        if stop is not None:
            subject = stop
    target = info.target
    waits = (isinstance(subject, Subject) and not dry_run and playbook.mode == "approve"
             and not info.approved)
    peeked: GuardStop | None = None
    if isinstance(subject, Subject) and not dry_run and (waits or playbook.require):
        # The admission's guards (cooldown, breaker, host storm, budgets), rolled back: a
        # human is asked, and Prometheus too, only about a run that could act. A run the
        # peek stops is stopped for real by admission below (the breaker opens there).
        with services.database.scratch_session("admission_peek") as peek:
            verdict = admit(peek, playbook, subject.key, services.clock(), exclude_run=run_id,
                            host=subject.host, storm=StormPolicy.of(services.settings))
        if isinstance(verdict, GuardStop):
            peeked = replace(verdict, target=subject.key, breaker=None)
    if playbook.require and not isinstance(subject, GuardStop) and peeked is None:
        # Just before acting (and before a human is asked to approve): Prometheus, with no
        # transaction open. An approved run comes through here again when it executes.
        acts_on = subject.name if subject else info.target
        stop = precondition_stop(services, playbook, _step_variables(view, acts_on), retry_s)
        if stop is not None:
            subject = replace(stop, target=subject.key) if subject else stop
    if waits and isinstance(subject, Subject) and peeked is not None:
        # Nobody is asked about a run that cannot act; the breaker counts a run only when
        # it is approved and admitted (the rolled-back breaker did not open).
        subject = peeked
    with target_lock(services.database), services.database.session("run_admit") as session:
        if isinstance(subject, GuardStop):
            record_skip(session, services, info, subject, closes)
            _evidence_for_a_human(session, subject, evidence)
            return
        if subject is not None:
            run = session.get(Run, run_id)
            if run is None:
                log.warning("run vanished before admission", extra={"run_id": run_id})
                return
            if not take_target(session, run, subject.key):
                # An alias of this target is running: wait for it. The canonical target
                # now stored makes claim_next hold this run until that one ends.
                transition_run(session, run_id, "requeue", started_at=None, worker=None,
                               heartbeat_at=None)
                return
            target = subject.key
            info = replace(info, target=target)
        if waits:
            await_approval(session, services, info, playbook)
            if evidence is not None:  # what the approver should see before deciding
                evidence.release_event(session)
            return
        if subject is not None and not dry_run:
            now = services.clock()
            decision = admit(session, playbook, target, now, exclude_run=run_id,
                             host=subject.host, storm=StormPolicy.of(services.settings))
            if isinstance(decision, GuardStop):
                record_skip(session, services, info, decision, closes)
                _evidence_for_a_human(session, decision, evidence)
                return
            session.execute(update(Run).where(Run.id == run_id)
                            .values(admitted_at=now, host=subject.host))
            services.metrics.database_changed()  # the breaker gauge reads the admission
        elif not dry_run and leaves_process(services, playbook):
            # A check-only playbook is not admitted, but its steps reach out too: the kill
            # switch holds it (its incident stays open, so the resume queues it again).
            paused = pause_stop(session, services.clock())
            if paused is not None:
                record_skip(session, services, info, paused)
                return
        if not dry_run:  # a dry run remediates nothing: its incident stays open
            transition_incident(session, info.incident_id, "start")
        services.notifier.emit(session, Event("playbook_started", info.incident_id, {
            "playbook": playbook.name, "target": target, "trigger": info.trigger,
            "dry_run": dry_run}))
        if evidence is not None:
            evidence.release_event(session)
    status, error = _run_steps(services, info, playbook, view, dry_run,
                               subject.name if subject else target, evidence)
    _finish(services, info, playbook, status, error, dry_run, closes, subject is not None)


def await_approval(session: Session, services: Services, info: RunInfo,
                   playbook: Playbook) -> None:
    """Mode approve: the guards passed; nothing touches the target until a human approves
    (approvals.py), denies, or `approval_timeout` passes."""
    now = services.clock()
    due = now + timedelta(seconds=playbook.approval_timeout_s)
    if not transition_run(session, info.run_id, "await_approval", approval_due_at=due,
                          worker=None, heartbeat_at=None):
        return
    services.notifier.emit(session, Event("approval_requested", info.incident_id, {
        "playbook": playbook.name, "target": info.target, "run_id": info.run_id,
        "due": due.isoformat()}))
    log.info("run awaits approval", extra={
        "run_id": info.run_id, "incident_id": info.incident_id, "target": info.target,
        "playbook": playbook.name, "due": due.isoformat()})
def _evidence_for_a_human(session: Session, stop: GuardStop,
                          evidence: RunEvidence | None) -> None:
    """A stop that calls a human (escalate_when, an open breaker, an operator's stop or
    pause) shows what was seen; a quiet skip (a cooldown, a recovery) posts nothing."""
    if stop.escalate and evidence is not None:
        evidence.release_event(session)


def _evidence_guard(services: Services, playbook: Playbook, evidence: RunEvidence,
                    subject: Subject, identity: TargetIdentity) -> GuardStop | None:
    # Never act on a container stopped or paused on purpose, or when that cannot be told.
    stop, known = intent_guard(services, playbook, identity, subject.name)
    if not playbook.capture:
        return stop
    first_change = next((index for index, step in enumerate(playbook.actions)
                         if (spec := services.registry.get(step.action)) is None
                         or spec.mutating), 0)
    captured, _ = evidence.capture(None, step=first_change, source="implicit",
                                   hold_event=True, cause=known.cause if known else None)
    return stop or classification_stop(playbook, captured)


def leaves_process(services: Services, playbook: Playbook) -> bool:
    specs = (services.registry.get(step.action) for step in playbook.actions)
    return any(spec is None or spec.leaves_process for spec in specs)


def is_mutating(services: Services, playbook: Playbook) -> bool:
    specs = (services.registry.get(step.action) for step in playbook.actions)
    return any(spec is None or spec.mutating for spec in specs)


def _run_steps(services: Services, info: RunInfo, playbook: Playbook, view: IncidentView,
               dry_run: bool, acts_on: str, evidence: RunEvidence | None
               ) -> tuple[str, str | None]:
    """Run the steps in order on `acts_on`; (final run status, error of the failed step).
    With `evidence` (a container target), every step that changes the target after the
    first is preceded by a capture too, unless a `capture` step ran since the last one."""
    escalations: list[str] = []
    notes: list[tuple[str, str]] = []
    current = {"step": 0}
    executor = services.executor_for(playbook)
    evidence = evidence or RunEvidence(services, executor, info.incident_id, info.run_id,
                                       acts_on, view.generator_url)

    def capture(budget_s: float | None) -> tuple[Evidence, int | None]:
        return evidence.capture(budget_s, step=current["step"], source="step")

    context = ActionContext(
        target=acts_on, playbook=playbook.name, run_id=info.run_id, incident=view,
        executor=executor, settings=services.settings,
        escalate=escalations.append, notify=lambda kind, text: notes.append((kind, text)),
        capture=capture)
    captured = True  # the capture before admission stands for the first mutating step
    template_vars = _step_variables(view, acts_on)
    budget = services.settings.record_retry_s
    ids = {"run_id": info.run_id, "incident_id": info.incident_id}
    for index, step in enumerate(playbook.actions):
        current["step"] = index
        spec = services.registry.get(step.action)
        mutating = spec is not None and spec.mutating
        if mutating and not captured and playbook.capture and not dry_run:
            evidence.capture(None, step=index, source="implicit")
        captured = (captured and not mutating) or step.action == "capture"

        def mark_step(session: Session, step_index: int = index) -> None:
            session.execute(update(Run).where(Run.id == info.run_id,
                                              Run.status == RunStatus.RUNNING)
                            .values(current_step=step_index))

        # The first step was admitted a moment ago; a later step that reaches outside
        # autofix (not only one that changes a target: an http call carries credentials)
        # checks the kill switch again, so that a pause stops a run between its steps too.
        paused = None if dry_run or index == 0 else _pause_before(services, step)
        result: StepResult = ("skipped", "paused", paused, None,
                              services.redactor.params(dict(step.params)), None)
        if paused is None:
            write_durably(services.database, "step_start", mark_step, budget, **ids)
            result = _run_step(services, context, step, template_vars, dry_run)
        outcome, reason, error, detail, params, duration = result
        now = services.clock()
        values = dict(
            run_id=info.run_id, incident_id=info.incident_id, playbook=playbook.name,
            action=step.action, target=info.target,
            params={**params, **({"detail": detail} if detail else {})}, outcome=outcome,
            reason=reason, error=error, trigger=info.trigger, step=index,
            started_at=now if duration is None else now - timedelta(seconds=duration),
            finished_at=now, duration_s=duration)
        pending_escalations = [*escalations]
        if outcome == "failed":
            pending_escalations.append(f"step {index + 1} ({step.action}) failed: {error}")
        if paused is not None:  # stopped half-way: a human should look at the target
            pending_escalations.append(f"step {index + 1} ({step.action}) not started: "
                                       f"{paused}")

        def record(session: Session, values: dict[str, Any] = values, step_index: int = index,
                   to_escalate: list[str] = pending_escalations) -> bool:
            if not insert_action(session, values):
                return False
            services.notifier.emit(session, Event("action_result", info.incident_id, {
                "playbook": playbook.name, "action": values["action"], "target": info.target,
                "outcome": values["outcome"], "error": values["error"],
                "duration_s": values["duration_s"], "step": step_index}))
            for kind, text in notes:
                services.notifier.emit(session, Event("note", info.incident_id,
                                                      {"kind": kind, "text": text}))
            for reason_text in to_escalate:
                escalate_incident(session, services, info.incident_id, reason_text)
            return True

        if write_durably(services.database, "action_record", record, budget,
                         action=step.action, outcome=outcome, **ids):
            services.metrics.actions.labels(playbook.name, step.action, outcome).inc()
            if duration is not None:
                services.metrics.action_duration.labels(step.action).observe(duration)
        notes.clear()
        escalations.clear()
        if outcome == "failed":
            return RunStatus.FAILED, f"step {index + 1} ({step.action}): {error}"
        if paused is not None:
            return RunStatus.SKIPPED, f"step {index + 1} ({step.action}): {paused}"
    return RunStatus.SUCCEEDED, None


def _step_variables(view: IncidentView, acts_on: str) -> dict[str, Any]:
    """What a step's params (and `require:`) render with."""
    variables = template_context(view.labels, view.annotations, view.status)
    variables["target"] = acts_on
    return variables


def _pause_before(services: Services, step: ActionStep) -> str | None:
    """Why a step that leaves the process may not start now (the kill switch is on)."""
    spec = services.registry.get(step.action)
    if spec is not None and not spec.leaves_process:
        return None
    try:
        with services.database.session("pause_check") as session:
            pause = active_pause(session, services.clock())
    except DatabaseUnavailable:
        return None  # as for any step during a blip: the admitted run goes on
    return None if pause is None else f"automation paused by {pause.paused_by}: {pause.reason}"


def _finish(services: Services, info: RunInfo, playbook: Playbook, status: str,
            error: str | None, dry_run: bool, closes: bool, guarded: bool) -> None:
    def finish(session: Session) -> bool:
        now = services.clock()
        events: dict[str, str] = {RunStatus.SUCCEEDED: "succeed", RunStatus.SKIPPED: "skip"}
        event = events.get(status, "fail")
        # Only a pause stops a run half-way (skipped): the run says so, as a guard's would.
        why = {"reason": func.coalesce(Run.reason, "paused")} if event == "skip" else {}
        if not transition_run(session, info.run_id, event, finished_at=now, error=error,
                              current_step=None, **why):
            return False
        # A failed notify/check-only run of an alert stays escalated for a human (its alert
        # still resolves it), and one a pause stopped half-way stays open for the resume to
        # queue again; a manual run closes whatever happened. An alert's dry run is neither
        # closed on failure nor retried: its incident waits for the alert to resolve.
        if closes and (info.trigger == "manual"
                       or status not in (RunStatus.FAILED, RunStatus.SKIPPED)):
            _close_after_run(session, services, info, status, dry_run)
        elif status == RunStatus.FAILED and not closes and not dry_run:
            # Still firing after a failed attempt: try again after the cooldown; the
            # breaker bounds how often (its open period doubles, like CrashLoopBackOff).
            schedule_retry(session, info.trigger, info.incident_id,
                           now + timedelta(seconds=max(playbook.cooldown_s, 1.0)))
        return True

    finished = write_durably(services.database, "run_finish", finish,
                             services.settings.record_retry_s, run_id=info.run_id)
    log.info("run finished", extra={
        "run_id": info.run_id, "incident_id": info.incident_id, "target": info.target,
        "fingerprint": info.fingerprint, "status": status, "error": error,
        "playbook": playbook.name, "recorded": finished, "guarded": guarded})


_ERROR_CHARS = 2000


def _run_step(services: Services, context: ActionContext, step: ActionStep,
              template_vars: dict[str, Any], dry_run: bool) -> StepResult:
    """(outcome, reason, error, detail, rendered params, duration), redacted: the error
    (an exec step's output, say), detail and params are stored, served and sent to Slack."""
    outcome, reason, error, detail, params, duration = _run_step_unredacted(
        services, context, step, template_vars, dry_run)
    redactor = services.redactor
    return (outcome, reason, error and redactor.text(error, _ERROR_CHARS),
            detail and redactor.text(detail, _ERROR_CHARS), redactor.params(params),
            duration)


def _run_step_unredacted(services: Services, context: ActionContext, step: ActionStep,
                         template_vars: dict[str, Any], dry_run: bool) -> StepResult:
    spec = services.registry.get(step.action)
    if spec is None:
        return "failed", "unknown_action", f"unknown action {step.action!r}", None, {}, None
    try:
        rendered = services.renderer.render_tree(step.params, template_vars)
        params = spec.params.model_validate(rendered)
    except (TemplateRenderError, ValidationError) as exc:
        return "failed", "invalid_params", str(exc), None, dict(step.params), None
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
    return outcome, reason, error, detail, dumped, time.monotonic() - started

