"""Dependents in order: after a run that restarted its target succeeds, the containers that
depend on it (domain/graph.py) are restarted one by one, each as a run of its own
(trigger `dependent`) on its own target, through every guard.

The chain is computed once, before the target is touched ("the first look": a cycle
refuses the run and escalates it). The first dependent's run is queued in the transaction
that records the parent's success, carrying the rest (`runs.chain`); each dependent's
success queues the next. A failure, or a guard that stops one, ends the chain and
escalates the incident naming the dependent, why, and the ones not restarted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from receiver.domain.errors import BackendUnavailable, BadRequest, Conflict, NotFound
from receiver.domain.graph import RESTARTING_ACTIONS, Dependent, Left, plan_chain
from receiver.engine.guards import GuardStop, Subject
from receiver.executor import (
    DependencyCycle,
    Executor,
    ExecutorError,
    TargetAmbiguous,
    TargetIdentity,
    TargetNotFound,
)
from receiver.executor.registry import DEFAULT_BACKEND, Executors
from receiver.notify import Event
from receiver.playbooks.config import ActionStep, Playbook
from receiver.store.lifecycle import NEW_RUN_STATUS, RunStatus
from receiver.store.models import Run

if TYPE_CHECKING:
    from receiver.engine.admission import RunInfo
    from receiver.engine.services import Services

__all__ = ["DEPENDENT", "Chain", "DependentsView", "chain_closes", "chain_of", "dependent_playbook",
           "dependents_view", "first_look", "next_after_run", "next_after_skip",
           "recovered_since"]

log = logging.getLogger("autofix.dependents")
DEPENDENT = "dependent"  # the trigger of a run that restarts a dependent
# A dependent that recovered by itself after its parent's restart needs no restart: the
# chain goes on. Any other stop ends it.
_CONTINUES = ("already_recovered",)


@dataclass(frozen=True)
class Chain:
    """What the first look found: the dependents to restart in order, the ones left (why)."""

    restart: list[Dependent] = field(default_factory=list)
    left: list[Left] = field(default_factory=list)


def _restarts(playbook: Playbook) -> bool:
    return any(step.action in RESTARTING_ACTIONS for step in playbook.actions)


def first_look(services: Services, playbook: Playbook, trigger: str,
               subject: Subject) -> Chain | GuardStop | None:
    """Before the target's steps: its dependents and which of them the run will restart.
    None when no chain follows (the playbook restarts nothing, says `leave`, or this is a
    dependent's run: its chain was computed by the first). A cycle is a GuardStop, and so
    is a list the backend cannot give: restarting the target would cut off dependents
    nobody could name, so autofix does not act on that guess."""
    if (trigger == DEPENDENT or subject.identity is None or playbook.dependents == "leave"
            or not _restarts(playbook)):
        return None
    try:
        found = services.executor_for(playbook, subject.fleet_host).dependents(
            subject.identity)
    except DependencyCycle as exc:
        return GuardStop("dependency_cycle", f"{exc}: autofix restarts neither {subject.name} "
                         "nor its dependents; a human must break the cycle",
                         escalate=True, target=subject.key)
    except ExecutorError as exc:
        return GuardStop("dependents_unknown", f"cannot list the dependents of {subject.name} "
                         f"({exc}): autofix restarts neither it nor them; allow the container "
                         "list (GET /containers/json) or set `dependents: leave`",
                         escalate=True, target=subject.key)
    label = services.settings.opt_in_label
    plan = plan_chain(subject.name, found, playbook.dependents,
                      lambda d: _opted_in(d, label), label)
    return Chain(plan.restart, plan.left)


def _opted_in(dependent: Dependent, label: str) -> bool:
    """guards.check_target's rule, read from the list's labels."""
    return str(dependent.labels.get(label, "")).lower() == "true"


def dependent_playbook(playbook: Playbook) -> Playbook:
    """A dependent's run: its parent's playbook (guards, budgets, cooldown, breaker,
    capture, skip_when), with fixed steps: `restart`, then `wait_healthy` (its health
    check, or running for a while without one) with the parent's own `wait_healthy`
    params when it has that step. The parent's `require:` and `escalate_when` were about
    the alert, not about the dependent."""
    wait = next((dict(step.params) for step in playbook.actions
                 if step.action == "wait_healthy"), {})
    return playbook.model_copy(update={
        "actions": [ActionStep(action="restart", params={}),
                    ActionStep(action="wait_healthy", params=wait)],
        "require": [], "escalate_when": []})


def chain_of(session: Session, run_id: int) -> dict[str, Any]:
    run = session.get(Run, run_id)
    return dict(run.chain or {}) if run is not None else {}


def chain_closes(session: Session, run_id: int) -> bool:
    """The chain follows a manual run: its incident closes when the chain ends."""
    return bool(chain_of(session, run_id).get("closes"))


def recovered_since(chain: dict[str, Any] | None, default: datetime) -> datetime:
    """A dependent restarted after its parent's run ended needs no restart from autofix."""
    since = (chain or {}).get("since")
    return datetime.fromisoformat(since) if since else default


def _entry(dependent: Dependent) -> dict[str, Any]:
    return {"name": dependent.name, "id": dependent.id, "kind": dependent.kind,
            "restart_flag": dependent.restart_flag, "depends_on": list(dependent.depends_on)}


def _names(entries: list[dict[str, Any]]) -> str:
    return ", ".join(str(entry["name"]) for entry in entries) or "none"


def _queue(session: Session, services: Services, info: RunInfo, parent: str,
           todo: list[dict[str, Any]], left: list[dict[str, Any]], closes: bool) -> int:
    """Queue the first of `todo` as a run of the incident, carrying the rest."""
    now = services.clock()
    run = session.get(Run, info.run_id)
    first, rest = todo[0], todo[1:]
    values: dict[str, Any] = {}
    if info.approved:  # mode approve: an approved parent's dependents inherit it
        values = {"decision": "approved", "decided_at": now,
                  "decided_by": f"inherited from run {info.run_id}"}
    return int(session.execute(insert(Run).values(
        incident_id=info.incident_id, playbook=info.playbook, target=first["name"],
        trigger=DEPENDENT, alert_status="firing", status=NEW_RUN_STATUS,
        reason=f"dependent of {parent} ({first['kind']})", queued_at=now,
        dry_run=info.dry_run,  # a dry run's dependents record what they would do
        config_version=run.config_version if run else None, lane="act",
        priority=run.priority if run else 0,
        chain={"parent": parent, "parent_run": info.run_id, "since": now.isoformat(),
               "dependent": first, "remaining": rest, "left": left, "closes": closes},
        **values).returning(Run.id)).scalar_one())


# execution.escalate_outcome, passed in: it lives in the module that calls these (a chain
# that ends needing a human escalates even once the alert resolved).
Escalate = Callable[[Session, "Services", int, str], None]


def _note(session: Session, services: Services, incident_id: int, text: str) -> None:
    services.notifier.emit(session, Event("note", incident_id,
                                          {"kind": "dependents", "text": text}))


def next_after_run(session: Session, services: Services, escalate: Escalate, info: RunInfo,
                   chain: Chain | None, status: str, dry_run: bool,
                   closes: bool = False) -> int | None:
    """In the transaction that finishes a run: queue the next dependent (its id), or report
    why the chain ends. `chain` is the first look's for a target's run; `closes`: the
    chain follows a manual run, whose incident closes when it ends."""
    succeeded = status == RunStatus.SUCCEEDED
    if info.trigger == DEPENDENT:
        carried = chain_of(session, info.run_id)
        todo = list(carried.get("remaining") or [])
        if succeeded:
            return (_queue(session, services, info, str(carried.get("parent")), todo,
                           list(carried.get("left") or []), closes) if todo else None)
        escalate(session, services, info.incident_id,
                  f"dependent {info.target} was not restarted ({status}); not restarted "
                  f"after it: {_names(todo)}")
        return None
    if chain is None or not succeeded:
        return None  # the parent's own failure is escalated already
    left = [{"name": item.name, "why": item.why} for item in chain.left]
    for item in chain.left:
        text = f"dependent {item.name} of {info.target} left: {item.why}"
        if item.needs_human and not dry_run:
            escalate(session, services, info.incident_id, text)
        else:
            _note(session, services, info.incident_id, text)
    todo = [_entry(dependent) for dependent in chain.restart]
    if not todo:
        return None
    return _queue(session, services, info, info.target, todo, left, closes)


def next_after_skip(session: Session, services: Services, escalate: Escalate,
                    info: RunInfo, stop: GuardStop) -> int | None:
    """A guard stopped a dependent's run: the chain ends, escalated (a dependent that
    recovered by itself lets it go on)."""
    carried = chain_of(session, info.run_id)
    todo = list(carried.get("remaining") or [])
    if stop.reason in _CONTINUES:
        return (_queue(session, services, info, str(carried.get("parent")), todo,
                       list(carried.get("left") or []), bool(carried.get("closes")))
                if todo else None)
    escalate(session, services, info.incident_id,
              f"dependent {info.target} not restarted: {stop.reason}: {stop.message}; not "
              f"restarted after it: {_names(todo)}")
    return None


@dataclass(frozen=True)
class DependentsView:
    """GET /api/v1/targets/{name}/dependents: the target, and its dependents in order, each
    with whether it is opted in and why a restart of the target would leave it (None: it
    would be restarted, under the default policy `dependents: restart`). `host`: the Docker
    host asked, among several."""

    backend: str
    target: TargetIdentity
    dependents: list[tuple[Dependent, bool, str | None]]
    host: str | None = None

    @property
    def key(self) -> str:
        """The target's key: `<host>/<name>` among several Docker hosts (set then)."""
        return f"{self.host}/{self.target.name}" if self.host else self.target.name


def _where(executors: Executors, reference: str,
           host: str | None) -> tuple[list[Executor], str, str | None]:
    """Whom to ask for `reference` (`<host>/<name>`, or `host` from ?host=): that host's
    executor alone; no host named, every backend, but among several Docker hosts none of
    theirs (a name on two hosts is two targets: never a guess). NotFound for an unknown
    host. Docker and Swarm names have no `/`: one in the reference names the host."""
    prefix, slash, rest = reference.partition("/")
    if slash:
        if host is not None and host != prefix:
            raise BadRequest(f"{reference!r} names the host {prefix[:80]!r} and host= "
                             f"{host[:80]!r}: name it once")
        host, reference = prefix, rest
    hosts = executors.hosts()
    if host is not None:
        if host not in hosts:
            raise NotFound(f"no Docker host named {host[:80]!r} (AUTOFIX_DOCKER_HOSTS: "
                           f"{', '.join(hosts)})", reason="unknown_host", hosts=list(hosts))
        return [executors.get(DEFAULT_BACKEND, host)], reference, host
    if not executors.multi_host:
        return list(executors), reference, None
    on_hosts = list(executors.host_executors().values())
    return [e for e in executors if e not in on_hosts], reference, None


def dependents_view(services: Services, reference: str,
                    host: str | None = None) -> DependentsView:
    """NotFound for a target no enabled backend knows (or an unknown host), Conflict naming
    a cycle or the containers an ambiguous ID prefix matches, BackendUnavailable when a
    backend that might know it cannot be asked."""
    unreachable: list[str] = []
    label = services.settings.opt_in_label
    candidates, name, host = _where(services.executors, reference, host)

    def opted_in(dependent: Dependent) -> bool:
        return _opted_in(dependent, label)

    for executor in candidates:
        if not executor.validate_target_syntax(name):
            continue
        try:
            with services.host_calls.calling(host if services.executors.multi_host else None):
                identity = executor.resolve(name)
                found = executor.dependents(identity)
        except TargetNotFound:
            continue
        except TargetAmbiguous as exc:  # the message lists the matches
            raise Conflict(f"{exc}: name the container or give a longer ID prefix",
                           reason="target_ambiguous") from exc
        except DependencyCycle as exc:
            raise Conflict(f"{exc}: autofix would restart neither {reference} nor its "
                           "dependents") from exc
        except ExecutorError as exc:
            unreachable.append(f"{executor.backend}: {exc}")
            continue
        plan = plan_chain(identity.name, found, "restart", opted_in, label)
        why = {item.name: item.why for item in plan.left}
        return DependentsView(executor.backend, identity,
                              [(d, opted_in(d), why.get(d.name)) for d in found],
                              host if services.executors.multi_host else None)
    if unreachable:
        raise BackendUnavailable("cannot ask the backend: " + "; ".join(unreachable)[:2000])
    if host is None and services.executors.multi_host:
        raise NotFound(f"no target named {reference!r} outside the Docker hosts: name the "
                       f"host, <host>/<name> or ?host= (AUTOFIX_DOCKER_HOSTS: "
                       f"{', '.join(services.executors.hosts())})", reason="host_required")
    raise NotFound(f"no target named {reference!r}" + (f" on {host}" if host else ""))
