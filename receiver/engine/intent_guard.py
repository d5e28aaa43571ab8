"""The operator-intent guard of a run: before anything may change a container, what is
known about why it is in its state decides (decide.TABLE). A backend without a state
history (Swarm) answers with its own stopped_by_operator."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from receiver.engine.guards import GuardStop
from receiver.executor import Executor, ExecutorError, TargetIdentity, TargetNotFound
from receiver.intent import store
from receiver.intent.decide import ContainerFacts, Known, decide, what_is_known
from receiver.playbooks.config import Playbook

if TYPE_CHECKING:
    from receiver.engine.services import Services

__all__ = ["FactsSource", "intent_guard"]

log = logging.getLogger("autofix.intent")
_OPERATOR = "stopped_by_operator"  # the classification a playbook may opt out of skipping


@runtime_checkable
class FactsSource(Protocol):
    """A backend that can tell a container's state and its daemon's recent events."""

    def container_facts(self, target: str) -> ContainerFacts: ...


def intent_guard(services: Services, playbook: Playbook, identity: TargetIdentity,
                 name: str, host: str | None = None
                 ) -> tuple[GuardStop | None, Known | None]:
    """(the stop, or None to go on; what is known, for the classification). `host`: the
    subject's Docker host."""
    executor = services.executor_for(playbook, host)
    if not isinstance(executor, FactsSource):
        return _operator_check(executor, playbook, identity, name), None
    try:
        facts = executor.container_facts(identity.id)
    except TargetNotFound:
        return GuardStop("target_not_found", f"{name} disappeared while being checked",
                         target=name), None
    except ExecutorError as exc:
        return GuardStop("executor_unavailable", str(exc), escalate=True, target=name), None
    now = services.clock()
    with services.database.session("intent_load") as session:
        record, coverage = store.load(session, facts.daemon_id, facts.container_id, now)
    known = what_is_known(facts, record, coverage, now)
    verdict = decide(facts, known)
    log.info("operator intent", extra={
        "target": name, "status": facts.status, "known": known.cause, "source": known.source,
        "act": verdict.act, "reason": verdict.reason})
    if verdict.act or verdict.reason is None:
        return None, known
    if verdict.reason == "operator_stop" and _OPERATOR not in playbook.skip_when:
        return None, known  # the playbook opted out explicitly (skip_when without it)
    return GuardStop(verdict.reason, verdict.message, escalate=verdict.escalate,
                     target=name), known


def _operator_check(executor: Executor, playbook: Playbook, identity: TargetIdentity,
                    name: str) -> GuardStop | None:
    if _OPERATOR not in playbook.skip_when:
        return None
    try:
        why = executor.stopped_by_operator(executor.inspect(identity.id))
    except ExecutorError as exc:
        log.warning("operator check failed", extra={"target": name, "error": str(exc)})
        return None
    if why is None:
        return None
    return GuardStop("operator_stop", f"{why}; autofix leaves it as the operator left it",
                     escalate=True, target=name)
