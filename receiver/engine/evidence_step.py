"""Evidence inside a run: capture, store, tell the incident's thread, and what the
classification does to the run (the playbook's `skip_when` / `escalate_when`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from receiver.engine.guards import GuardStop
from receiver.evidence.capture import CaptureRequest, Evidence, capture_evidence
from receiver.evidence.store import store_evidence
from receiver.executor import EvidenceLimits, Executor
from receiver.notify import Event
from receiver.playbooks.config import Playbook

if TYPE_CHECKING:
    from receiver.engine.services import Services

__all__ = ["RunEvidence", "classification_stop"]

log = logging.getLogger("autofix.evidence")
_SLACK_LOG_CHARS = 2500  # the tail shown in the thread; the API serves all of it


class RunEvidence:
    """Captures for one run on one target; `capture` never raises."""

    def __init__(self, services: Services, executor: Executor, incident_id: int, run_id: int,
                 target: str, generator_url: str) -> None:
        self.services = services
        self.executor = executor
        self.incident_id = incident_id
        self.run_id = run_id
        self.target = target
        self.generator_url = generator_url
        self._held: Event | None = None

    def capture(self, budget_s: float | None, *, step: int | None, source: str,
                hold_event: bool = False, cause: str | None = None,
                new_image: dict[str, Any] | None = None) -> tuple[Evidence, int | None]:
        """`hold_event`: the incident's thread hears of it at `release_event`, once the
        run is known to go ahead (the thread starts with "playbook started"). `cause`: what
        the operator-intent guard knows, for the classification."""
        settings = self.services.settings
        request = CaptureRequest(
            self.target, self.generator_url, budget_s or settings.evidence_budget_s,
            EvidenceLimits(settings.evidence_log_lines, settings.evidence_log_bytes),
            settings.prometheus_url, cause, new_image)
        evidence = capture_evidence(self.executor, request, self.services.redactor,
                                    self.services.clock())
        row_id = self._store(evidence, step, source, hold_event)
        log.info("evidence captured", extra={
            "incident_id": self.incident_id, "run_id": self.run_id, "target": self.target,
            "evidence_id": row_id, "classification": evidence.classification,
            "took_s": round(evidence.took_s, 3), "cut": evidence.cut,
            "errors": sorted(evidence.errors)})
        return evidence, row_id

    def release_event(self, session: Session) -> None:
        if self._held is not None:
            self.services.notifier.emit(session, self._held)
            self._held = None

    def _store(self, evidence: Evidence, step: int | None, source: str,
               hold_event: bool) -> int | None:
        try:
            with self.services.database.session("evidence") as session:
                row_id = store_evidence(session, evidence, incident_id=self.incident_id,
                                        run_id=self.run_id, step=step, source=source)
                event = Event("evidence", self.incident_id, _event_details(evidence, row_id))
                if hold_event:
                    self._held = event
                else:
                    self.services.notifier.emit(session, event)
                return row_id
        except Exception:  # the database is down, a value refused: never stops a run
            log.exception("evidence could not be stored", extra={
                "incident_id": self.incident_id, "run_id": self.run_id})
            return None


def _event_details(evidence: Evidence, row_id: int) -> dict[str, object]:
    state = evidence.results.get("state") or {}
    stats = evidence.results.get("stats") or {}
    expression = evidence.results.get("expression") or {}
    return {
        "evidence_id": row_id, "target": evidence.target,
        "classification": evidence.classification,
        "state": {key: state.get(key) for key in ("status", "exit_code", "oom_killed",
                                                  "restart_count", "started_at",
                                                  "finished_at")},
        "health": (state.get("health") or {}).get("status") if state else None,
        "memory_usage_bytes": stats.get("memory_usage_bytes"),
        "memory_limit_bytes": stats.get("memory_limit_bytes"),
        "expression": expression.get("expr"), "series": expression.get("series"),
        "log_tail": evidence.log_text[-_SLACK_LOG_CHARS:],
        "new_image": (evidence.results.get("new_image") or {}).get("summary"),
        "cut": evidence.cut, "errors": sorted(evidence.errors),
        "took_s": round(evidence.took_s, 3),
    }


def classification_stop(playbook: Playbook, evidence: Evidence) -> GuardStop | None:
    """The playbook's answer to what the evidence says, before it acts."""
    found = evidence.classification
    if found is None:
        return None
    change = evidence.results.get("new_image") if found == "bad_update" else None
    why = str(evidence.results.get("operator_stop")
              or (change.get("summary") if isinstance(change, dict) else None)
              or f"the evidence says {found}")
    if found in playbook.skip_when:
        return GuardStop(found, f"{why}; {playbook.name} skips {found} targets "
                         f"(skip_when)", target=evidence.target)
    if found in playbook.escalate_when:
        return GuardStop(found, f"{why}; {playbook.name} escalates {found} targets to a "
                         f"human (escalate_when)", escalate=True, target=evidence.target)
    return None
