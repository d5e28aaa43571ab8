"""Workers that claim queued runs from the database and execute them.

Claims are serialised (a PostgreSQL advisory lock, or a process lock on single-worker
SQLite) so that the global concurrency cap and the one-run-per-target rule hold across
gunicorn workers and hosts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from .breaker import current_state, gauge_value
from .db.migrate import prune
from .db.models import Breaker, Incident, Run, utcnow
from .errors import DatabaseUnavailable
from .execution import execute_run
from .notify import OutboxSender, start_sender
from .services import Services, worker_id

__all__ = ["Runner", "claim_next", "reconcile_interrupted"]

log = logging.getLogger("autofix.runner")
_CLAIM_LOCK_KEY = 0x6175746F666978  # "autofix"
_sqlite_claim_lock = threading.Lock()
OPEN_STATUSES = ("open", "remediating", "escalated")
PRUNE_EVERY_S = 3600.0


def claim_next(services: Services, worker: str) -> int | None:
    """Mark the oldest runnable run as running and return its id, or None."""
    database = services.database
    guard = _sqlite_claim_lock if database.is_sqlite else contextlib.nullcontext()
    with guard, database.session("claim") as session:
        if not database.is_sqlite:
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": _CLAIM_LOCK_KEY})
        running = session.scalar(select(func.count()).select_from(Run)
                                 .where(Run.status == "running")) or 0
        if running >= services.settings.max_concurrent_runs:
            return None
        busy = select(Run.target).where(Run.status == "running", Run.target != "")
        run = session.scalars(
            select(Run).where(Run.status == "queued", Run.target.not_in(busy))
            .order_by(Run.id).limit(1)).first()
        if run is None:
            return None
        now = utcnow()
        run.status, run.started_at, run.heartbeat_at, run.worker = "running", now, now, worker
        return run.id


def reconcile_interrupted(services: Services, stale_before: datetime | None = None,
                          worker_prefix: str | None = None) -> list[int]:
    """Runs left `running` by a dead process become `interrupted`, and their incident escalates.

    Resuming is not safe in general (a restart may have half-happened), so a human decides.
    """
    from .execution import escalate_incident

    conditions = [Run.status == "running"]
    if stale_before is not None:
        conditions.append(Run.heartbeat_at < stale_before)
    if worker_prefix is not None:
        conditions.append(Run.worker.startswith(worker_prefix))
    with services.database.session("reconcile") as session:
        runs = list(session.scalars(select(Run).where(*conditions).with_for_update()))
        now = utcnow()
        for run in runs:
            run.status, run.finished_at = "interrupted", now
            run.error = f"worker {run.worker} stopped during the run; not resumed"
            escalate_incident(session, services, run.incident_id,
                              f"run {run.id} ({run.playbook}) was interrupted")
            incident = session.get(Incident, run.incident_id)
            log.warning("reconciled interrupted run", extra={
                "run_id": run.id, "incident_id": run.incident_id, "target": run.target,
                "fingerprint": incident.fingerprint if incident else None})
    return [run.id for run in runs]



class Runner:
    """Threads in one receiver process: claim, execute, heartbeat, repeat."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.worker = worker_id()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._active: set[int] = set()
        self._active_lock = threading.Lock()
        self._next_prune = 0.0  # monotonic time of the next retention prune
        self._sender: OutboxSender | None = None

    def start(self) -> None:
        svc = self.services
        self._sender = start_sender(svc.database, svc.settings, svc.metrics, svc.notifier,
                                    self.worker)
        for index in range(self.services.settings.runner_threads):
            thread = threading.Thread(target=self._loop, name=f"autofix-runner-{index}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        heartbeat = threading.Thread(target=self._heartbeat, name="autofix-heartbeat",
                                     daemon=True)
        heartbeat.start()
        self._threads.append(heartbeat)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.services.wakeup.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._sender is not None:
            self._sender.stop(timeout)

    def run_once(self) -> int | None:
        """Claim and execute one run in this thread (tests and the SQLite single worker)."""
        run_id = claim_next(self.services, self.worker)
        if run_id is None:
            return None
        with self._active_lock:
            self._active.add(run_id)
        try:
            execute_run(self.services, run_id)
        finally:
            with self._active_lock:
                self._active.discard(run_id)
        return run_id

    def _loop(self) -> None:
        poll = self.services.settings.runner_poll_s
        while not self._stop.is_set():
            try:
                if self.run_once() is not None:
                    continue
            except DatabaseUnavailable:
                pass
            except Exception:  # a failing run must never kill the worker thread
                log.exception("runner loop error")
            self.services.wakeup.wait(poll)
            self.services.wakeup.clear()

    def _heartbeat(self) -> None:
        lease = self.services.settings.run_lease_s
        while not self._stop.wait(min(5.0, lease / 3)):
            try:
                with self._active_lock:
                    active = list(self._active)
                with self.services.database.session("heartbeat") as session:
                    if active:
                        session.execute(update(Run).where(Run.id.in_(active))
                                        .values(heartbeat_at=utcnow()))
                    self._publish_queue_depth(session)
                reconcile_interrupted(self.services,
                                      stale_before=utcnow() - timedelta(seconds=lease))
                self._prune_if_due()
            except DatabaseUnavailable:
                continue
            except Exception:
                log.exception("heartbeat error")

    def _prune_if_due(self) -> None:
        """AUTOFIX_RETENTION_DAYS: prune hourly. Every worker may; deletes are idempotent."""
        days = self.services.settings.retention_days
        if not days or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        counts = prune(self.services.database, timedelta(days=days))
        log.info("pruned rows older than the retention", extra={"days": days, **counts})

    def _publish_queue_depth(self, session: Session) -> None:
        depth = session.scalar(select(func.count()).select_from(Run)
                               .where(Run.status == "queued")) or 0
        self.services.metrics.run_queue_depth.set(depth)
        # Every worker publishes the same database truth; multiprocess "mostrecent" shows it.
        open_incidents = session.scalar(select(func.count()).select_from(Incident)
                                        .where(Incident.status.in_(OPEN_STATUSES))) or 0
        self.services.metrics.open_incidents.set(open_incidents)
        now = utcnow()
        for breaker in session.scalars(select(Breaker)):
            state = current_state(breaker.state, breaker.open_until, now)
            self.services.metrics.breaker_state.labels(breaker.target).set(gauge_value(state))
