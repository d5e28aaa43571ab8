"""Admission: the stages a claimed run passes before its steps, each returning a decision.

`Proceed` goes on to the next stage (and, after the last, to the steps); `Skip` stops the
run with a GuardStop's reason; `Requeue` sends it back to the queue (an alias of its target
is running); `AwaitApproval` parks it for a human (mode approve). The stages run in README
"Guards: the decision order"; the driver is `execution.execute_run`, which keeps the
transactions and records the decision. Stages that ask Docker, the evidence or Prometheus
get no session: no transaction is held while they wait.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from receiver.actions.registry import IncidentView
from receiver.engine.blast_radius import StormPolicy
from receiver.engine.breaker import BreakerDecision
from receiver.engine.dependents import DEPENDENT, dependent_playbook, recovered_since
from receiver.engine.evidence_step import RunEvidence, classification_stop
from receiver.engine.guards import (
    GuardStop,
    Subject,
    admit,
    check_run_target,
    maintenance_stop,
    pause_stop,
    take_target,
)
from receiver.engine.intent_guard import intent_guard
from receiver.engine.new_image import Rollback, detect, on_new_image
from receiver.engine.preconditions import precondition_retry_s, precondition_stop
from receiver.engine.services import Services
from receiver.playbooks.config import Playbook
from receiver.playbooks.ingest import template_context
from receiver.store.lifecycle import IncidentStatus
from receiver.store.models import Incident, Run

__all__ = ["AwaitApproval", "Candidate", "Decision", "Proceed", "Requeue", "RunInfo", "Skip",
           "Vanished", "admission", "held", "held_by_canonical_name", "is_mutating",
           "leaves_process", "load_candidate", "operator_intent_and_evidence", "peek_admission",
           "preconditions", "step_variables", "still_stands", "target_guards"]


@dataclass(frozen=True)
class Proceed:
    """On to the next stage, or to the steps. `subject` is what the guards protect (None for
    a playbook that only notifies or checks); `breaker` is admission's breaker decision."""

    subject: Subject | None = None
    breaker: BreakerDecision | None = None
    # The admission peek stopped it, so neither Prometheus (`require:`) nor a human was
    # asked: admission may only confirm the stop, never act on it.
    peek_stopped: bool = False
    # A bad update the playbook rolls back: the run's steps are the rollback's (new_image.py).
    rollback: Rollback | None = None


@dataclass(frozen=True)
class Skip:
    """A guard stopped the run. `keeps_incident`: the incident stays open whatever the run
    (a check-only run held by the kill switch is queued again at resume)."""

    stop: GuardStop
    keeps_incident: bool = False


@dataclass(frozen=True)
class Requeue:
    """An alias of the target is running: the run waits in the queue under the canonical
    name until that one ends."""


@dataclass(frozen=True)
class AwaitApproval:
    """Mode approve: the guards passed; a human decides before `target` is touched."""

    target: str


@dataclass(frozen=True)
class Vanished:
    """The run was deleted (retention, a cascade) before it was decided: nothing to record."""


Decision = Proceed | Skip | Requeue | AwaitApproval | Vanished


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


@dataclass(frozen=True)
class Candidate:
    """A loaded run whose playbook stands: what every stage after loading reads."""

    info: RunInfo
    view: IncidentView
    playbook: Playbook
    dry_run: bool
    held: bool  # the kill switch and maintenance windows hold it (it leaves the process)
    retry_s: float | None  # when a failed `require:` is tried again; None: never
    recovered_since: datetime
    closes: bool  # the end of this run closes its incident (_closes_incident)
    # Set when on_new_image: rollback replaced the steps (`playbook` holds the new ones).
    rollback: Rollback | None = None

    def waits(self, subject: Subject | None) -> bool:
        """Mode approve: a human is asked before this run acts."""
        return (subject is not None and not self.dry_run and self.playbook.mode == "approve"
                and not self.info.approved)


def still_stands(services: Services, run: Run, incident: Incident) -> Playbook | Skip:
    """Stage 0: the run's playbook is loaded, its alert still fires, its incident is open."""
    playbook = services.config.playbook_for(run.config_version, run.playbook)
    if playbook is None:
        return Skip(GuardStop("playbook_missing", f"playbook {run.playbook!r} (config version "
                              f"{run.config_version}) is not loaded"))
    if run.trigger == DEPENDENT:
        # Its parent's restart resolving the alert is the expected case: a dependent's run
        # stops only for a closed incident.
        playbook = dependent_playbook(playbook)
    elif run.alert_status == "firing" and incident.status == IncidentStatus.RESOLVED:
        # The alert cleared while the run waited in the queue: acting now would act on
        # a resolved alert, the field's classic way to hurt a healthy container.
        return Skip(GuardStop("alert_resolved", "the alert resolved before the run started"))
    if incident.status == IncidentStatus.CLOSED:
        return Skip(GuardStop("incident_closed",
                              f"incident closed by {incident.closed_by}: {incident.close_reason}"))
    return playbook


def load_candidate(session: Session, services: Services, run: Run, incident: Incident,
                   playbook: Playbook) -> Candidate:
    """The run as the stages see it; a run that turns out dry is stored as such."""
    info = RunInfo.of(run, incident)
    view = IncidentView(incident.id, incident.alertname, dict(incident.labels),
                        dict(incident.annotations), incident.starts_at, run.alert_status,
                        incident.fingerprint, incident.generator_url)
    dry_run = (services.settings.dry_run or playbook.dry_run or info.dry_run
               or playbook.mode == "observe")
    if dry_run and not run.dry_run:
        run.dry_run = True  # what the run is, for the API and the CLI
        info = replace(info, dry_run=True)
    # A dry run is not retried (it would only record the same again), nor a manual run.
    retry_s = (precondition_retry_s(session, info.incident_id)
               if playbook.require and not dry_run else None)
    return Candidate(info, view, playbook, dry_run,
                     held=not dry_run and leaves_process(services, playbook), retry_s=retry_s,
                     recovered_since=_recovered_since(session, run, incident),
                     closes=info.trigger == "manual" or not is_mutating(services, playbook))


def held(session: Session, services: Services, candidate: Candidate) -> Proceed | Skip:
    """Stages 1-2: the kill switch, then maintenance windows over the alert's labels and the
    target as rendered, hold what leaves the process; a dry run or a notification goes on.
    The kill switch first, so that nothing below (a precondition, a human asked to approve)
    escalates while a human has paused it all. Admission checks it again."""
    if not candidate.held:
        return Proceed()
    now = services.clock()
    stop = pause_stop(session, now) or maintenance_stop(
        session, now, candidate.view.labels, [candidate.info.target])
    return Proceed() if stop is None else Skip(stop)


def target_guards(services: Services, candidate: Candidate) -> Proceed | Skip:
    """Stage 3: the target resolved to one canonical identity, allowed, present, not already
    recovering (guards.py). A playbook that only notifies or checks has no subject."""
    # A dependent restarted by Docker's policy before its parent's restart is still in the
    # old namespace: only a start after the parent's run counts as recovered.
    subject = check_run_target(services, candidate.playbook, candidate.info.target,
                               candidate.info.reason,
                               replace(candidate.view, starts_at=candidate.recovered_since),
                               0.0 if candidate.info.trigger == DEPENDENT else None)
    return Skip(subject) if isinstance(subject, GuardStop) else Proceed(subject)


def held_by_canonical_name(services: Services, candidate: Candidate,
                           subject: Subject) -> Proceed | Skip:
    """Stage 3, end: a maintenance window over a name holds an alert naming an ID."""
    if not candidate.held:
        return Proceed(subject)
    with services.database.session("maintenance_check") as session:
        stop = maintenance_stop(session, services.clock(), candidate.view.labels,
                                [subject.key, subject.name])
    return Proceed(subject) if stop is None else Skip(replace(stop, target=subject.key))


def operator_intent_and_evidence(services: Services, candidate: Candidate, subject: Subject,
                                 evidence: RunEvidence) -> Proceed | Skip:
    """Stages 4-5, before any guard that counts an action: never act on a container stopped
    or paused on purpose (or when that cannot be told), then what the target looks like now
    and whether the playbook wants to act on that (skip_when / escalate_when), then a bad
    update (created from a new image a moment ago): `on_new_image` escalates it, acts, or
    replaces the steps by a rollback (Proceed.rollback)."""
    if subject.identity is None:
        return Proceed(subject)
    playbook = candidate.playbook
    stop, known = intent_guard(services, playbook, subject.identity, subject.name,
                               subject.fleet_host)
    # Only about a run that would change the container; a human's manual run does what
    # its playbook says (the evidence still shows the new image).
    found = detect(services, playbook, subject) if is_mutating(services, playbook) else None
    # An unreadable image stops an automatic run; a human's manual run still acts.
    unknown = found if isinstance(found, GuardStop) else None
    change = None if isinstance(found, GuardStop) else found
    if playbook.capture:
        first_change = next((index for index, step in enumerate(playbook.actions)
                             if (spec := services.registry.get(step.action)) is None
                             or spec.mutating), 0)
        captured, _ = evidence.capture(
            None, step=first_change, source="implicit", hold_event=True,
            cause=known.cause if known else None,
            new_image=change.as_evidence(services.clock()) if change else None)
        stop = stop or classification_stop(playbook, captured)
    if stop is None and unknown is not None and candidate.info.trigger != "manual":
        stop = unknown
    if stop is None and change is not None and candidate.info.trigger != "manual":
        verdict = on_new_image(services, playbook, subject, change)
        if isinstance(verdict, Rollback):
            return Proceed(subject, rollback=verdict)
        stop = verdict
    return Proceed(subject) if stop is None else Skip(replace(stop, target=subject.key))


def peek_admission(services: Services, candidate: Candidate, subject: Subject) -> Skip | None:
    """Stages 6-9 rolled back, for a run with `require:` or `mode: approve`: a human is
    asked, and Prometheus too, only about a run that could act. A run the peek stops is
    stopped for real by admission (the breaker opens there, not here)."""
    if candidate.dry_run or not (candidate.waits(subject) or candidate.playbook.require):
        return None
    with services.database.scratch_session("admission_peek") as peek:
        verdict = admit(peek, candidate.playbook, subject.key, services.clock(),
                        exclude_run=candidate.info.run_id, host=subject.host,
                        storm=StormPolicy.of(services.settings))
    if isinstance(verdict, GuardStop):
        return Skip(replace(verdict, target=subject.key, breaker=None))
    return None


def preconditions(services: Services, candidate: Candidate,
                  subject: Subject | None) -> Proceed | Skip:
    """Stage 10, just before acting (and before a human is asked to approve): `require:`
    asked of Prometheus. An approved run comes through here again when it executes."""
    if not candidate.playbook.require:
        return Proceed(subject)
    acts_on = subject.name if subject else candidate.info.target
    stop = precondition_stop(services, candidate.playbook,
                             step_variables(candidate.view, acts_on), candidate.retry_s)
    if stop is None:
        return Proceed(subject)
    return Skip(replace(stop, target=subject.key) if subject else stop)


def admission(session: Session, services: Services, candidate: Candidate,
              subject: Subject | None, peek_stopped: bool = False) -> Decision:
    """Stages 11-12 and 6-9 for real, in the admission transaction (under `target_lock`):
    one run per canonical target, approval, then cooldown, breaker, budgets and host storm
    decided atomically (`admit`). A run that changes no target is not admitted, but its
    steps reach out too: the kill switch holds it."""
    info, playbook = candidate.info, candidate.playbook
    if subject is not None:
        run = session.get(Run, info.run_id)
        if run is None:
            return Vanished()
        if not take_target(session, run, subject.key):
            return Requeue()
    if not candidate.dry_run:
        # A maintenance window may have begun while Docker, the evidence or Prometheus
        # were asked: checked again in the transaction that admits.
        window = maintenance_stop(session, services.clock(), candidate.view.labels,
                                  [info.target, *([subject.key, subject.name] if subject
                                                  else [])])
        if window is not None and (subject is not None or leaves_process(services, playbook)):
            return Skip(replace(window, target=subject.key) if subject else window,
                        keeps_incident=subject is None)
    if peek_stopped and subject is not None and not candidate.dry_run:
        # Admission decides for real: a stop is recorded with its effects (the breaker
        # opens here, not in the peek); a pass means the stop ended meanwhile, so the run
        # goes round again, to be asked about before it acts.
        verdict = admit(session, playbook, subject.key, services.clock(),
                        exclude_run=info.run_id, host=subject.host,
                        storm=StormPolicy.of(services.settings), admits=False)
        if isinstance(verdict, GuardStop):
            return Skip(replace(verdict, target=subject.key))
        return Requeue()
    if candidate.waits(subject) and subject is not None:
        return AwaitApproval(subject.key)
    if candidate.dry_run:
        return Proceed(subject)
    if subject is not None:
        now = services.clock()
        verdict = admit(session, playbook, subject.key, now, exclude_run=info.run_id,
                        host=subject.host, storm=StormPolicy.of(services.settings))
        if isinstance(verdict, GuardStop):
            return Skip(replace(verdict, target=subject.key))
        session.execute(update(Run).where(Run.id == info.run_id)
                        .values(admitted_at=now, host=subject.host,
                                docker_host=subject.fleet_host))
        return Proceed(subject, verdict)
    if leaves_process(services, playbook):
        paused = pause_stop(session, services.clock())
        if paused is not None:  # its incident stays open: the resume queues it again
            return Skip(paused, keeps_incident=True)
    return Proceed()


def _recovered_since(session: Session, run: Run, incident: Incident) -> datetime:
    """A (re)start after this moment means someone else fixed it already. For a retry,
    autofix's own earlier restarts of this incident do not count as recoveries. For a
    dependent, a restart after its parent's run ended."""
    if run.trigger == DEPENDENT:
        return recovered_since(run.chain, incident.starts_at)
    if run.trigger != "retry":
        return incident.starts_at
    last_ours = session.scalar(select(func.max(Run.finished_at)).where(
        Run.incident_id == incident.id, Run.admitted_at.is_not(None), Run.id != run.id))
    return max(incident.starts_at, last_ours) if last_ours else incident.starts_at


def step_variables(view: IncidentView, acts_on: str) -> dict[str, Any]:
    """What a step's params (and `require:`) render with."""
    variables = template_context(view.labels, view.annotations, view.status)
    variables["target"] = acts_on
    return variables


def leaves_process(services: Services, playbook: Playbook) -> bool:
    specs = (services.registry.get(step.action) for step in playbook.actions)
    return any(spec is None or spec.leaves_process for spec in specs)


def is_mutating(services: Services, playbook: Playbook) -> bool:
    specs = (services.registry.get(step.action) for step in playbook.actions)
    return any(spec is None or spec.mutating for spec in specs)
