"""A share of the runner slots per Docker host (AUTOFIX_MAX_RUNS_PER_HOST).

Among several hosts, a run that changes a container knows its host before any Docker
call (a stored `<host>/` key, else the alert's `host`). It is stamped on the run, with the
target as `<host>/<name>`, in a short transaction of its own; when the host already has its
share running, the run goes back to the queue, and claim_next leaves it there until one of
those ends. A hung host, whose runs each wait out its timeout, so holds at most its share
of the global cap and of a process's runner threads, and never the name another host's
container shares: the other hosts' runs are claimed meanwhile."""

from __future__ import annotations

from sqlalchemy import func, select, text

from receiver.engine.admission import Candidate, is_mutating
from receiver.engine.guards import GuardStop, pick_host, target_lock
from receiver.engine.services import Services
from receiver.store.lifecycle import RunStatus, transition_run
from receiver.store.models import Run

__all__ = ["host_of", "take_host_slot"]


def host_of(services: Services, candidate: Candidate) -> tuple[str, str] | None:
    """(host, name) of a run that will act on a container among several hosts; None
    otherwise, or when the host is unknown (the guards stop that run, with their reason)."""
    playbook = candidate.playbook
    if len(services.executors.hosts(playbook.executor)) <= 1 or not candidate.info.target:
        return None
    if not is_mutating(services, playbook):
        return None
    picked = pick_host(services, playbook, candidate.info.target, candidate.view)
    if isinstance(picked, GuardStop) or picked[0] is None:
        return None
    return picked[0], picked[1]


def take_host_slot(services: Services, run_id: int, host: str, name: str) -> bool:
    """Stamp the run with its host; False (the run re-queued) when the host already has
    AUTOFIX_MAX_RUNS_PER_HOST other runs running. Serialised per host, so two workers
    never both take the last slot."""
    database = services.database
    with target_lock(database), database.session("host_slot") as session:
        if not database.is_sqlite:
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                            {"key": f"autofix-host:{host}"})
        run = session.get(Run, run_id)
        if run is None:
            return True  # vanished: the admission says so
        run.docker_host = host
        run.target = f"{host}/{name}"
        session.flush()
        others = session.scalar(select(func.count()).select_from(Run).where(
            Run.status == RunStatus.RUNNING, Run.docker_host == host, Run.id != run_id)) or 0
        if others < services.settings.host_run_cap():
            return True
        transition_run(session, run_id, "requeue", started_at=None, worker=None,
                       heartbeat_at=None)
        return False

