"""Execute one claimed run: guards, then each step in order, every outcome recorded.

Status changes go through `lifecycle` (compare-and-set). Outcomes of steps that touched a
target are written with `write_durably`: a database blip delays the record, never loses it,
and the (run, step) key keeps a retried write from becoming a second row.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from receiver.actions.registry import ActionContext, ActionFailed, IncidentView
from receiver.domain.errors import DatabaseUnavailable
from receiver.engine.admission import (
    AwaitApproval,
    Candidate,
    Decision,
    Proceed,
    Requeue,
    RunInfo,
    Skip,
    Vanished,
    admission,
    held,
    held_by_canonical_name,
    is_mutating,
    leaves_process,
    load_candidate,
    operator_intent_and_evidence,
    peek_admission,
    preconditions,
    step_variables,
    still_stands,
    target_guards,
)
from receiver.engine.dependents import (
    DEPENDENT,
    Chain,
    chain_closes,
    first_look,
    next_after_run,
    next_after_skip,
)
from receiver.engine.evidence_step import RunEvidence
from receiver.engine.guards import GuardStop, maintenance_stop, target_lock
from receiver.engine.host_slots import host_of, take_host_slot
from receiver.engine.host_storm import record_storm
from receiver.engine.new_image import rollback_finished, rollback_refused
from receiver.engine.retries import ESCALATED_ONCE, RETRY_ON_SKIP, schedule_retry
from receiver.engine.services import Services
from receiver.evidence.capture import Evidence
from receiver.executor import ExecutorError
from receiver.notify import Event
from receiver.playbooks.config import ActionStep, Playbook
from receiver.playbooks.templating import TemplateRenderError
from receiver.store.durable import write_durably
from receiver.store.lifecycle import (
    IncidentStatus,
    RunStatus,
    active_pause,
    rows_changed,
    transition_incident,
    transition_run,
)
from receiver.store.lifecycle import update_incident_if as update_incident_while
from receiver.store.models import Action, Incident, Run

# is_mutating and leaves_process live in admission.py; imported from here too.
__all__ = ["Decision", "RunInfo", "StepResult", "await_approval", "escalate_incident",
           "escalate_outcome", "execute_run", "insert_action", "is_mutating", "leaves_process",
           "record_skip"]

log = logging.getLogger("autofix.execution")
GUARD_STEP = -1  # the Action row of the guard that stopped a run
# Stops of a target's run that are about its chain, not its alert: they reach a human even
# once the alert resolved.
_OUTCOME_STOPS = ("dependency_cycle", "dependents_unknown")


@dataclass(frozen=True)
class StepResult:
    """What one step did: its outcome (succeeded, failed, skipped, dry_run), the reason and
    error of a failure or skip, what the action reported, its rendered params, and how long
    it ran (None: it never started)."""

    outcome: str
    reason: str | None = None
    error: str | None = None
    detail: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None


def escalate_incident(session: Session, services: Services, incident_id: int,
                      reason: str, *, after_resolve: bool = False) -> bool:
    """open/remediating → escalated; an incident already escalated or acknowledged keeps its
    status and records the newest reason. Resolved and closed incidents are left alone,
    unless `after_resolve` (escalate_outcome): True when the `escalated` event was emitted."""
    text = reason[:2000]
    now = services.clock()
    moved = transition_incident(session, incident_id, "escalate", escalated_at=now,
                                escalation_reason=text)
    if not moved and after_resolve:
        moved = transition_incident(session, incident_id, "escalate_after_resolve",
                                    escalated_at=now, escalation_reason=text,
                                    next_attempt_at=None)
    keeps = (IncidentStatus.ESCALATED, IncidentStatus.ACKNOWLEDGED,
             *((IncidentStatus.CLOSED,) if after_resolve else ()))
    if not moved and not update_incident_while(session, incident_id, keeps,
                                               escalation_reason=text):
        return False
    services.notifier.emit(session, Event("escalated", incident_id, {"reason": reason}))
    return True


def escalate_outcome(session: Session, services: Services, incident_id: int,
                     reason: str) -> None:
    """What a run set going ended needing a human (a dependent not restarted, a cycle, a
    rollback's outcome): escalated even when the alert resolved meanwhile (the target's
    restart usually resolves it first), and said to a closed incident's channel too."""
    escalate_incident(session, services, incident_id, reason, after_resolve=True)


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
    return rows_changed(session.execute(statement.values(**values))) == 1


def _close_after_run(session: Session, services: Services, info: RunInfo,
                     outcome: str, dry_run: bool) -> None:
    why = ("manual run" if info.trigger == "manual" else "dry run" if dry_run
           else "the dependents of a manual run:" if info.trigger == DEPENDENT
           else "notify-only playbook")
    transition_incident(session, info.incident_id, "close", closed_at=services.clock(),
                        closed_by="autofix", next_attempt_at=None,
                        close_reason=f"{why} {info.playbook} ended: {outcome}")


def record_skip(session: Session, services: Services, info: RunInfo, stop: GuardStop,
                closes_incident: bool = False, outcome: bool = False) -> None:
    """`outcome`: the stop ends what a run set going (a rollback), escalated even once the
    alert resolved, as a dependent's stop, a cycle and an unreadable list are."""
    now = services.clock()
    outcome = outcome or info.trigger == DEPENDENT or stop.reason in _OUTCOME_STOPS
    stop = replace(stop, message=services.redactor.text(stop.message, 4000))
    values: dict[str, Any] = {}
    if stop.target and stop.target != info.target:
        values["target"] = stop.target  # canonical, when resolution got that far
        info = replace(info, target=stop.target)
    # A run queued without a reason gets the skip's, so every skipped run says why.
    if not transition_run(session, info.run_id, "skip", finished_at=now,
                          error=f"{stop.reason}: {stop.message}"[:4000],
                          reason=func.coalesce(Run.reason, stop.reason),
                          docker_host=services.executors.host_of_key(info.target), **values):
        return  # already ended elsewhere (reconciled): nothing more to record
    insert_action(session, dict(
        run_id=info.run_id, incident_id=info.incident_id, playbook=info.playbook,
        action="guard", target=info.target,
        docker_host=services.executors.host_of_key(info.target), params={},
        outcome="skipped", reason=stop.reason,
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
    if stop.escalate and not (info.trigger == "retry" and stop.reason in ESCALATED_ONCE):
        escalate_incident(session, services, info.incident_id, f"{stop.reason}: {stop.message}",
                          after_resolve=outcome)
    if stop.storm is not None:  # the storm's one incident is the escalation
        storm = record_storm(session, services, stop.storm)
        if storm.incident_id is not None and storm.escalation is not None:
            escalate_incident(session, services, storm.incident_id, storm.escalation)
    if stop.reason in RETRY_ON_SKIP and stop.retry_after_s is not None:
        schedule_retry(session, info.trigger, info.incident_id,
                       now + timedelta(seconds=stop.retry_after_s))
    if info.trigger == DEPENDENT:
        if next_after_skip(session, services, escalate_outcome, info, stop) is not None:
            services.wakeup.set()
        else:  # the chain ended here: a manual run's incident closes now
            closes_incident = closes_incident or chain_closes(session, info.run_id)
    if closes_incident:
        _close_after_run(session, services, info, f"skipped ({stop.reason})", info.dry_run)
    # A stop that needs a human is a warning; cooldowns and recoveries are routine.
    log.log(logging.WARNING if stop.escalate else logging.INFO, "run skipped by a guard",
            extra={"run_id": info.run_id, "incident_id": info.incident_id,
                   "fingerprint": info.fingerprint, "target": info.target,
                   "playbook": info.playbook, "reason": stop.reason, "detail": stop.message,
                   "escalated": stop.escalate})


def execute_run(services: Services, run_id: int) -> Decision:
    """Pass a claimed run through the admission stages (admission.py) in the documented
    order, record the first decision that is not Proceed, else run the steps. Three
    transactions: loading (stages 0-2), none while Docker, the evidence and Prometheus are
    asked (3-10), then admission under the target lock (11-12, 6-9 for real)."""
    with services.database.session("run_load") as session:
        run = session.get(Run, run_id)
        incident = session.get(Incident, run.incident_id) if run is not None else None
        if run is None or incident is None:
            # Claimed, then deleted (retention, a cascade) before it loaded: nothing to act on.
            log.warning("run vanished before it started", extra={"run_id": run_id})
            return Vanished()
        stands = still_stands(services, run, incident)
        if isinstance(stands, Skip):
            info = RunInfo.of(run, incident)
            record_skip(session, services, info, stands.stop,
                        closes_incident=info.trigger == "manual")
            return stands
        candidate = load_candidate(session, services, run, incident, stands)
        early = held(session, services, candidate)
        if isinstance(early, Skip):
            record_skip(session, services, candidate.info, early.stop,
                        closes_incident=candidate.info.trigger == "manual")
            return early
    placed = host_of(services, candidate)
    if placed is not None and not take_host_slot(services, run_id, *placed):
        return Requeue()  # its host has its share of the slots: the others' runs go on
    guarded, evidence, candidate = _guard_without_transaction(services, candidate)
    chain: Chain | None = None
    if isinstance(guarded, Proceed) and guarded.subject is not None and not guarded.peek_stopped:
        looked = first_look(services, candidate.playbook, candidate.info.trigger,
                            guarded.subject)
        if isinstance(looked, GuardStop):  # a cycle, no list: refused before acting
            guarded = Skip(looked)
        else:
            chain = looked
    with target_lock(services.database), services.database.session("run_admit") as session:
        decision: Decision = guarded
        if isinstance(guarded, Proceed):
            decision = admission(session, services, candidate, guarded.subject,
                                 guarded.peek_stopped)
        _record(session, services, candidate, decision, evidence)
    if not isinstance(decision, Proceed):
        return decision
    subject = decision.subject
    info = replace(candidate.info, target=subject.key) if subject else candidate.info
    status, error, held_by = _run_steps(services, info, candidate.playbook, candidate.view,
                               candidate.dry_run, subject.name if subject else info.target,
                               evidence, subject.fleet_host if subject else None)
    _finish(services, info, candidate.playbook, status, error, candidate.dry_run,
            candidate.closes, subject is not None, held_by, chain)
    if candidate.rollback is not None:  # never silent: a human hears what was done
        _escalate_durably(services, info, rollback_finished(
            services, candidate.rollback.change, status == RunStatus.SUCCEEDED, error,
            candidate.dry_run))
    return decision


def _escalate_durably(services: Services, info: RunInfo, reason: str) -> None:
    def escalate(session: Session) -> bool:
        escalate_outcome(session, services, info.incident_id, reason)
        return True

    write_durably(services.database, "rollback_escalation", escalate,
                  services.settings.record_retry_s, run_id=info.run_id)


def _guard_without_transaction(services: Services, candidate: Candidate
                               ) -> tuple[Proceed | Skip, RunEvidence | None, Candidate]:
    """Stages 3-10, which ask Docker, the evidence and Prometheus; the run's evidence, when
    its target is a container; the candidate, with the rollback's steps when stage 5 chose
    them (on_new_image: rollback), which every later stage judges."""
    decision = target_guards(services, candidate)
    subject = decision.subject if isinstance(decision, Proceed) else None
    if subject is None:  # stopped, or nothing to guard: only `require:` may still stop it
        return (preconditions(services, candidate, None)
                if isinstance(decision, Proceed) else decision), None, candidate
    evidence = None
    decision = held_by_canonical_name(services, candidate, subject)
    if isinstance(decision, Proceed) and subject.identity is not None:
        evidence = RunEvidence(services, services.executor_for(candidate.playbook,
                                                               subject.fleet_host),
                               candidate.info.incident_id, candidate.info.run_id,
                               subject.name, candidate.view.generator_url)
        decision = operator_intent_and_evidence(services, candidate, subject, evidence)
        if isinstance(decision, Proceed) and decision.rollback is not None:
            candidate = replace(candidate, playbook=decision.rollback.playbook,
                                rollback=decision.rollback)
    if isinstance(decision, Skip):
        return decision, evidence, candidate
    peeked = peek_admission(services, candidate, subject)
    if peeked is None:
        return preconditions(services, candidate, subject), evidence, candidate
    # Nobody is asked about a run that cannot act. Admission meets the stop again for real
    # (the breaker opens there); should it have ended meanwhile, the run goes round again.
    return Proceed(subject, peek_stopped=True), evidence, candidate


def _record(session: Session, services: Services, candidate: Candidate, decision: Decision,
            evidence: RunEvidence | None) -> None:
    """The one place a decision past loading is written, in the admission transaction."""
    info = candidate.info
    if isinstance(decision, Vanished):
        log.warning("run vanished before admission", extra={"run_id": info.run_id})
    elif isinstance(decision, Requeue):
        # The canonical target now stored makes claim_next hold this run until the
        # alias's run ends.
        transition_run(session, info.run_id, "requeue", started_at=None, worker=None,
                       heartbeat_at=None)
    elif isinstance(decision, AwaitApproval):
        await_approval(session, services, replace(info, target=decision.target),
                       candidate.playbook)
        if evidence is not None:  # what the approver should see before deciding
            evidence.release_event(session)
    elif isinstance(decision, Skip):
        record_skip(session, services, info, decision.stop,
                    candidate.closes and not decision.keeps_incident,
                    outcome=candidate.rollback is not None)
        _evidence_for_a_human(session, decision.stop, evidence)
        if candidate.rollback is not None and not candidate.dry_run:
            refused = rollback_refused(services, candidate.rollback.change,
                                       f"{decision.stop.reason}: {decision.stop.message}")
            if not decision.stop.escalate:  # an escalating stop told the human already
                escalate_outcome(session, services, info.incident_id, refused)
    else:
        target = decision.subject.key if decision.subject else info.target
        if decision.breaker is not None:  # the breaker gauge reads the admission
            services.metrics.database_changed()
        if not candidate.dry_run:  # a dry run remediates nothing: its incident stays open
            transition_incident(session, info.incident_id, "start")
        services.notifier.emit(session, Event("playbook_started", info.incident_id, {
            "playbook": candidate.playbook.name, "target": target, "trigger": info.trigger,
            "dry_run": candidate.dry_run}))
        if evidence is not None:
            evidence.release_event(session)


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


def _run_steps(services: Services, info: RunInfo, playbook: Playbook, view: IncidentView,
               dry_run: bool, acts_on: str, evidence: RunEvidence | None,
               host: str | None = None) -> tuple[str, str | None, str | None]:
    """Run the steps in order on `acts_on`; (final run status, error of the failed step,
    what held a step back: `paused` or `maintenance`).
    With `evidence` (a container target), every step that changes the target after the
    first is preceded by a capture too, unless a `capture` step ran since the last one."""
    escalations: list[str] = []
    notes: list[tuple[str, str]] = []
    current = {"step": 0}
    executor = services.executor_for(playbook, host)  # the subject's Docker host
    evidence = evidence or RunEvidence(services, executor, info.incident_id, info.run_id,
                                       acts_on, view.generator_url)

    def capture(budget_s: float | None) -> tuple[Evidence, int | None]:
        return evidence.capture(budget_s, step=current["step"], source="step")

    context = ActionContext(
        target=acts_on, playbook=playbook.name, run_id=info.run_id, incident=view,
        executor=executor, settings=services.settings,
        escalate=escalations.append, notify=lambda kind, text: notes.append((kind, text)),
        capture=capture, now=services.now)
    captured = True  # the capture before admission stands for the first mutating step
    template_vars = step_variables(view, acts_on)
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
        # checks the kill switch and the maintenance windows again, so that a pause or a
        # window that began meanwhile stops a run between its steps too.
        held_by = (None if dry_run or index == 0
                   else _held_before(services, step, view.labels, [info.target, acts_on]))
        reason, paused = held_by or (None, None)
        result = StepResult("skipped", reason, paused,
                            params=services.redactor.params(dict(step.params)))
        if paused is None:
            write_durably(services.database, "step_start", mark_step, budget, **ids)
            result = _run_step(services, context, step, template_vars, dry_run)
        now, duration = services.clock(), result.duration_s
        values = dict(
            run_id=info.run_id, incident_id=info.incident_id, playbook=playbook.name,
            action=step.action, target=info.target,
            docker_host=services.executors.host_of_key(info.target),
            params={**result.params, **({"detail": result.detail} if result.detail else {})},
            outcome=result.outcome, reason=result.reason, error=result.error,
            trigger=info.trigger, step=index,
            started_at=now if duration is None else now - timedelta(seconds=duration),
            finished_at=now, duration_s=duration)
        pending_escalations = [*escalations]
        if result.outcome == "failed":
            pending_escalations.append(
                f"step {index + 1} ({step.action}) failed: {result.error}")
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
                         action=step.action, outcome=result.outcome, **ids):
            services.metrics.actions.labels(playbook.name, step.action, result.outcome).inc()
            if duration is not None:
                services.metrics.action_duration.labels(step.action).observe(duration)
        notes.clear()
        escalations.clear()
        if result.outcome == "failed":
            return RunStatus.FAILED, f"step {index + 1} ({step.action}): {result.error}", None
        if paused is not None:
            return RunStatus.SKIPPED, f"step {index + 1} ({step.action}): {paused}", reason
    return RunStatus.SUCCEEDED, None, None


def _held_before(services: Services, step: ActionStep, labels: dict[str, str],
                 targets: list[str]) -> tuple[str, str] | None:
    """(reason, why) a step that leaves the process may not start now: the kill switch is
    on, or a maintenance window over the run began since it was admitted."""
    spec = services.registry.get(step.action)
    if spec is not None and not spec.leaves_process:
        return None
    try:
        with services.database.session("pause_check") as session:
            now = services.clock()
            pause = active_pause(session, now)
            window = None if pause else maintenance_stop(session, now, labels, targets)
    except DatabaseUnavailable:
        return None  # as for any step during a blip: the admitted run goes on
    if pause is not None:
        return "paused", f"automation paused by {pause.paused_by}: {pause.reason}"
    return None if window is None else ("maintenance", window.message)


def _finish(services: Services, info: RunInfo, playbook: Playbook, status: str,
            error: str | None, dry_run: bool, closes: bool, guarded: bool,
            held_by: str | None = None, chain: Chain | None = None) -> None:
    queued: list[int] = []

    def finish(session: Session) -> bool:
        now = services.clock()
        events: dict[str, str] = {RunStatus.SUCCEEDED: "succeed", RunStatus.SKIPPED: "skip"}
        event = events.get(status, "fail")
        # Only the kill switch or a maintenance window stops a run half-way (skipped): the
        # run says which, as a guard's would.
        why = ({"reason": func.coalesce(Run.reason, held_by or "paused")}
               if event == "skip" else {})
        if not transition_run(session, info.run_id, event, finished_at=now, error=error,
                              current_step=None, **why):
            return False
        # The target's dependents, in order (dependents.py): the next one's run. A manual
        # run's incident closes when its chain ends, not before its dependents ran.
        manual = info.trigger == "manual" or (info.trigger == DEPENDENT
                                              and chain_closes(session, info.run_id))
        queued[:] = [run_id for run_id in [next_after_run(
            session, services, escalate_outcome, info, chain, status, dry_run,
            closes=manual)] if run_id is not None]
        # A failed notify/check-only run of an alert stays escalated for a human (its alert
        # still resolves it), and one a pause stopped half-way stays open for the resume to
        # queue again; a manual run closes whatever happened. An alert's dry run is neither
        # closed on failure nor retried: its incident waits for the alert to resolve.
        if (closes or manual) and not queued and (
                manual or status not in (RunStatus.FAILED, RunStatus.SKIPPED)):
            _close_after_run(session, services, info, status, dry_run)
        elif status == RunStatus.FAILED and not closes and not dry_run:
            # Still firing after a failed attempt: try again after the cooldown; the
            # breaker bounds how often (its open period doubles, like CrashLoopBackOff).
            schedule_retry(session, info.trigger, info.incident_id,
                           now + timedelta(seconds=max(playbook.cooldown_s, 1.0)))
        return True

    finished = write_durably(services.database, "run_finish", finish,
                             services.settings.record_retry_s, run_id=info.run_id)
    if queued:
        services.wakeup.set()
    log.info("run finished", extra={
        "run_id": info.run_id, "incident_id": info.incident_id, "target": info.target,
        "fingerprint": info.fingerprint, "status": status, "error": error,
        "playbook": playbook.name, "recorded": finished, "guarded": guarded})


_ERROR_CHARS = 2000


def _run_step(services: Services, context: ActionContext, step: ActionStep,
              template_vars: dict[str, Any], dry_run: bool) -> StepResult:
    """The step's result, redacted: the error (an exec step's output, say), detail and
    params are stored, served and sent to Slack."""
    result = _run_step_unredacted(services, context, step, template_vars, dry_run)
    redactor = services.redactor
    return replace(result, error=result.error and redactor.text(result.error, _ERROR_CHARS),
                   detail=result.detail and redactor.text(result.detail, _ERROR_CHARS),
                   params=redactor.params(result.params))


def _run_step_unredacted(services: Services, context: ActionContext, step: ActionStep,
                         template_vars: dict[str, Any], dry_run: bool) -> StepResult:
    spec = services.registry.get(step.action)
    if spec is None:
        return StepResult("failed", "unknown_action", f"unknown action {step.action!r}")
    try:
        rendered = services.renderer.render_tree(step.params, template_vars)
        params = spec.params.model_validate(rendered)
    except (TemplateRenderError, ValidationError) as exc:
        return StepResult("failed", "invalid_params", str(exc), params=dict(step.params))
    dumped = params.model_dump(mode="json")
    if dry_run:
        return StepResult("dry_run", detail=f"would run {step.action}", params=dumped,
                          duration_s=0.0)
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
    return StepResult(outcome, reason, error, detail, dumped, time.monotonic() - started)
