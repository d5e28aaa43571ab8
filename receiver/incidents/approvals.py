"""Approvals (playbook mode `approve`): one human decision per run, or expiry.

A run that passed its guards waits in `awaiting_approval` (execution.await_approval).
Exactly one decision counts, because each is a compare-and-set from `awaiting_approval`
(lifecycle.py): a second approve or deny is 409. An approved run goes back to the queue and
passes every guard again before it acts (the alert may have resolved, the breaker opened,
the container recovered, automation been paused). A denied or expired run never touches
the target, and its incident escalates: a human still has to look.
"""

from __future__ import annotations

import logging
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from receiver.domain.errors import Conflict
from receiver.engine.dependents import DEPENDENT
from receiver.engine.execution import escalate_incident
from receiver.engine.services import Services
from receiver.incidents.manual import fresh_or_404
from receiver.notify import Event
from receiver.store.lifecycle import RunStatus, transition_run
from receiver.store.models import AuditEntry, Run

__all__ = ["Verdict", "decide_run", "expire_approvals"]

log = logging.getLogger("autofix.approvals")
Verdict = Literal["approve", "deny"]
_DECISION = {"approve": "approved", "deny": "denied"}


def decide_run(services: Services, run_id: int, verdict: Verdict, actor: str,
               comment: str) -> Run:
    """Approve or deny a run awaiting approval; 404 for no such run, 409 once decided."""
    now = services.clock()
    decision = _DECISION[verdict]
    values: dict[str, object] = {"decision": decision, "decided_by": actor, "decided_at": now,
                                 "decision_comment": comment}
    if verdict == "deny":
        values.update(finished_at=now, error=f"denied by {actor}: {comment}"[:4000])
    with services.database.session(f"run_{verdict}") as session:
        moved = transition_run(session, run_id, verdict, **values)
        run = _run_or_404(session, run_id)
        if not moved:
            raise Conflict(f"run {run_id} is {run.status}"
                           + (f" ({run.decision} by {run.decided_by})" if run.decision else ""),
                           None, reason=f"run_{run.status}")
        session.add(AuditEntry(actor=actor, verb=f"run_{verdict}", subject=str(run_id),
                               reason=comment))
        services.notifier.emit(session, Event("approval_decided", run.incident_id, {
            "run_id": run_id, "playbook": run.playbook, "target": run.target,
            "decision": decision, "actor": actor, "comment": comment}))
        if verdict == "deny":
            escalate_incident(session, services, run.incident_id,
                              f"run {run_id} ({run.playbook}) denied by {actor}: {comment}",
                              after_resolve=run.trigger == DEPENDENT)
    log.info("run decided", extra={"run_id": run_id, "incident_id": run.incident_id,
                                   "decision": decision, "actor": actor,
                                   "playbook": run.playbook, "target": run.target})
    if verdict == "approve":
        services.wakeup.set()
    return run


def expire_approvals(services: Services, limit: int = 100) -> list[int]:
    """Runs whose approval did not come in time end `expired`; their incident escalates.
    Safe on every worker: the compare-and-set lets one of them expire each run."""
    now = services.clock()
    expired: list[int] = []
    with services.database.session("approval_expiry") as session:
        due = session.execute(
            select(Run.id, Run.incident_id, Run.playbook, Run.approval_due_at, Run.trigger)
            .where(Run.status == RunStatus.AWAITING_APPROVAL, Run.approval_due_at <= now)
            .order_by(Run.approval_due_at).limit(limit)).all()
        for run_id, incident_id, playbook, due_at, trigger in due:
            why = f"no approval by {due_at.isoformat() if due_at else 'its deadline'}"
            if not transition_run(session, run_id, "expire", decision="expired",
                                  decided_at=now, finished_at=now, error=why):
                continue  # decided meanwhile
            escalate_incident(session, services, incident_id,
                              f"run {run_id} ({playbook}) expired: {why}",
                              after_resolve=trigger == DEPENDENT)
            expired.append(run_id)
    if expired:
        log.warning("approvals expired", extra={"run_ids": expired})
    return expired


def _run_or_404(session: Session, run_id: int) -> Run:
    return fresh_or_404(session, Run, run_id, "run")
