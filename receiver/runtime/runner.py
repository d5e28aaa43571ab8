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
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import exc, func, or_, select, text, update
from sqlalchemy.orm import Session

from receiver.domain.errors import DatabaseUnavailable
from receiver.engine.dependents import DEPENDENT, chain_of, dependent_playbook
from receiver.engine.execution import execute_run
from receiver.engine.retries import queue_due_retries
from receiver.engine.services import Services, worker_id
from receiver.incidents.approvals import expire_approvals
from receiver.incidents.filing import drain_one
from receiver.incidents.maintenance import end_lapsed_windows
from receiver.incidents.pause import end_lapsed_pauses
from receiver.notify import OutboxSender, start_sender
from receiver.runtime.image_inventory import take_inventory
from receiver.runtime.intent_follower import EventsFollower, start_followers
from receiver.runtime.scheduler import Job, Scheduler
from receiver.store.lifecycle import RunStatus, transition_run, transition_run_if
from receiver.store.migrate import prune
from receiver.store.models import Run

__all__ = ["Runner", "claim_next", "reconcile_interrupted"]

log = logging.getLogger("autofix.runner")
_CLAIM_LOCK_KEY = 0x6175746F666978  # "autofix"
_sqlite_claim_lock = threading.Lock()
PRUNE_EVERY_S = 3600.0
PRUNE_DEADLINE_S = 600.0
HOUSEKEEPING_DEADLINE_S = 30.0
DRAIN_POLL_S = 2.0
# An idle runner thread waits this many polls for a wakeup before it looks by itself: the
# process's poller (one query per poll) wakes them, instead of each thread querying.
IDLE_WAIT_POLLS = 10
_QUEUED_PROBE = select(Run.id).where(Run.status == RunStatus.QUEUED).limit(1)


def claim_next(services: Services, worker: str, light: bool = True) -> int | None:
    """Mark the next runnable run as running and return its id, or None.

    Two lanes. "act" runs (they may change a target) go first, highest priority then
    oldest, under the global cap and one run per target. "light" runs (notify or check
    only) are claimed only when no act run can be, oldest first, outside the cap: a storm
    of them never delays a restart. `light=False` claims act runs only (the thread each
    process keeps for them)."""
    database = services.database
    guard = _sqlite_claim_lock if database.is_sqlite else contextlib.nullcontext()
    with guard, database.session("claim") as session:
        # Most polls find nothing queued: answer those without the cluster-wide lock.
        if session.scalars(_QUEUED_PROBE).first() is None:
            return None
        if not database.is_sqlite:
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": _CLAIM_LOCK_KEY})
        run_id = _next_act_run(session, services.settings.max_concurrent_runs,
                               services.settings.host_run_cap())
        if run_id is None and light:
            run_id = session.scalars(
                select(Run.id).where(Run.status == RunStatus.QUEUED, Run.lane == "light")
                .order_by(Run.id).limit(1)).first()
        if run_id is None:
            return None
        now = services.clock()
        if not transition_run(session, run_id, "claim", started_at=now, heartbeat_at=now,
                              worker=worker):
            return None
        return run_id


def _next_act_run(session: Session, cap: int, host_cap: int) -> int | None:
    running = session.scalar(select(func.count()).select_from(Run).where(
        Run.status == RunStatus.RUNNING, Run.lane == "act")) or 0
    if running >= cap:
        return None
    busy = select(Run.target).where(Run.status == RunStatus.RUNNING, Run.target != "")
    # A run sent back by host_slots.py waits while its Docker host has its share running.
    full = (select(Run.docker_host)
            .where(Run.status == RunStatus.RUNNING, Run.docker_host.is_not(None))
            .group_by(Run.docker_host).having(func.count() >= host_cap))
    return session.scalars(
        select(Run.id).where(Run.status == RunStatus.QUEUED, Run.lane == "act",
                             Run.target.not_in(busy),
                             or_(Run.docker_host.is_(None), Run.docker_host.not_in(full)))
        .order_by(Run.priority.desc(), Run.id).limit(1)).first()


def reconcile_interrupted(services: Services, stale_before: datetime | None = None,
                          worker: str | None = None, host: str | None = None) -> list[int]:
    """Runs left `running` by a dead process become `interrupted`, and their incident escalates.

    The step that was under way gets an `interrupted` Action row (unless its outcome was
    recorded). Resuming is not safe in general (a restart may have half-happened), so a
    human decides. `worker` is one exact worker id; `host` every worker of one host name.

    Any live replica reconciles any host's runs once their heartbeat is older than the lease
    (`stale_before`). The interrupt re-checks the worker and the lease in its own UPDATE, so
    of two replicas only one does it, and a heartbeat renewed since the SELECT wins.
    """
    from receiver.engine.execution import escalate_incident, insert_action

    conditions = [Run.status == RunStatus.RUNNING]
    if stale_before is not None:
        conditions.append(Run.heartbeat_at < stale_before)
    if worker is not None:
        conditions.append(Run.worker == worker)
    if host is not None:
        conditions.append(Run.worker.startswith(f"{host}:"))
    done: list[int] = []
    with services.database.session("reconcile") as session:
        candidates = session.execute(
            select(Run.id, Run.incident_id, Run.worker, Run.playbook, Run.target,
                   Run.trigger, Run.current_step).where(*conditions)).all()
        for run_id, incident_id, run_worker, playbook, target, trigger, step in candidates:
            now = services.clock()
            why = f"worker {run_worker} stopped during the run; not resumed"
            still_abandoned = [Run.worker == run_worker]
            if stale_before is not None:
                still_abandoned.append(Run.heartbeat_at < stale_before)
            if not transition_run_if(session, run_id, "interrupt", still_abandoned,
                                     finished_at=now, error=why, current_step=None):
                continue  # it finished, heartbeated or was reconciled by another replica
            if step is not None:
                insert_action(session, dict(
                    run_id=run_id, incident_id=incident_id, playbook=playbook,
                    action=_step_action(services, playbook, step, trigger), target=target,
                    docker_host=services.executors.host_of_key(target), params={},
                    outcome="interrupted", reason="worker_stopped", error=why,
                    started_at=now, finished_at=now, duration_s=None, trigger=trigger,
                    step=step))
            # A dependent's run ends its chain: a human hears it even once the alert resolved.
            escalate_incident(session, services, incident_id,
                              f"run {run_id} ({playbook}) was interrupted: {why}"
                              + _chain_left(session, run_id, target, trigger),
                              after_resolve=trigger == DEPENDENT)
            done.append(run_id)
            log.warning("reconciled interrupted run", extra={
                "run_id": run_id, "incident_id": incident_id, "target": target,
                "worker": run_worker, "step": step})
    return done


def _chain_left(session: Session, run_id: int, target: str, trigger: str) -> str:
    if trigger != DEPENDENT:
        return ""
    todo = chain_of(session, run_id).get("remaining") or []
    names = ", ".join(str(entry.get("name")) for entry in todo) or "none"
    return f"; dependent {target} not restarted; not restarted after it: {names}"


def _step_action(services: Services, playbook: str, step: int, trigger: str = "") -> str:
    found = services.config.current.playbooks.by_name(playbook)
    if found is not None and trigger == DEPENDENT:  # its steps are fixed, not the playbook's
        found = dependent_playbook(found)
    if found is not None and 0 <= step < len(found.actions):
        return found.actions[step].action
    return "unknown"


class Runner:
    """Threads in one receiver process: claim, execute, heartbeat, repeat."""

    def __init__(self, services: Services, periodic_clock: Callable[[], float] = time.monotonic,
                 periodic_max_wait_s: float | None = None) -> None:
        """`periodic_clock` (monotonic seconds) decides when periodic jobs are due; a test
        injects one and a short `periodic_max_wait_s` instead of sleeping."""
        self.services = services
        self._periodic_clock = periodic_clock
        self._periodic_max_wait_s = periodic_max_wait_s
        self.worker = worker_id()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._active: set[int] = set()
        self._active_lock = threading.Lock()
        # Monotonic time since the database answers the heartbeat; None during an outage.
        self._database_ok_since: float | None = periodic_clock()
        self._periodic = self._periodic_jobs()
        self._sender: OutboxSender | None = None
        self._followers: list[EventsFollower] = []

    def start(self) -> None:
        svc = self.services
        self._sender = start_sender(svc.database, svc.settings, svc.metrics, svc.notifier,
                                    self.worker, svc.redactor, clock=svc.now)
        # Every worker is a candidate; the database's lease elects one per Docker daemon
        # (one follower per Docker host).
        self._followers = start_followers(svc, self.worker)
        threads = self.services.settings.runner_threads
        for index in range(threads):
            # Thread 0 takes act runs only: light work never occupies every thread.
            thread = threading.Thread(target=self._loop, args=(index > 0 or threads == 1,),
                                      name=f"autofix-runner-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for target, name in ((self._drain, "autofix-filing"), (self._poll, "autofix-poller")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._periodic.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._periodic.stop(timeout)
        self.services.wakeup.set()
        self.services.ingest_wakeup.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._sender is not None:
            self._sender.stop(timeout)
        for follower in self._followers:
            follower.stop(timeout)

    def run_once(self, light: bool = True) -> int | None:
        """Claim and execute one run in this thread (tests and the SQLite single worker)."""
        run_id = claim_next(self.services, self.worker, light)
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

    def _loop(self, light: bool = True) -> None:
        # Woken by this process's webhook, approvals and retries at once, and by the poller
        # for runs queued elsewhere; the timeout is only a fallback.
        idle_wait = self.services.settings.runner_poll_s * IDLE_WAIT_POLLS
        while not self._stop.is_set():
            try:
                if self.run_once(light) is not None:
                    continue
            except DatabaseUnavailable:
                pass
            except Exception:  # a failing run must never kill the worker thread
                log.exception("runner loop error")
            self.services.wakeup.wait(idle_wait)
            self.services.wakeup.clear()

    def _poll(self) -> None:
        """Wake the runner threads when any run is queued (by another process or host).
        One query per poll for the process: every idle thread polling on its own was
        about 7% of a busy worker's CPU."""
        svc = self.services
        while not self._stop.wait(svc.settings.runner_poll_s):
            try:
                with svc.database.engine.connect() as connection:
                    if connection.execute(_QUEUED_PROBE).first() is not None:
                        svc.wakeup.set()
            except exc.SQLAlchemyError:
                pass  # the heartbeat reports the database's state
            except Exception:  # the poller thread must never die
                log.exception("runner poller error")

    def _drain(self) -> None:
        """File deferred notifications (filing.py): this worker's own at once (woken by
        the webhook), any other worker's within a poll."""
        svc = self.services
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and drain_one(svc) is not None:
                    pass
            except DatabaseUnavailable:
                pass
            except Exception:  # the drainer thread must never die
                log.exception("filing loop error")
            # The receiving worker's drainer is woken at once; polling only finds the
            # notifications of a worker that died or was busy, so it need not be eager.
            svc.ingest_wakeup.wait(max(svc.settings.runner_poll_s, DRAIN_POLL_S))
            svc.ingest_wakeup.clear()

    def _periodic_jobs(self) -> Scheduler:
        """The heartbeat alone in its lane: nothing else may delay it past a lease, or the
        other workers would judge this worker's live runs abandoned. Retention in its own:
        a long prune holds up only the next prune."""
        svc = self.services
        beat = self._beat_s()
        scheduler = Scheduler(svc.metrics.periodic_overruns, svc.metrics.periodic_errors,
                              self._periodic_clock, self._periodic_max_wait_s)
        scheduler.lane("heartbeat", Job("heartbeat", beat, beat, self._heartbeat))
        scheduler.lane(
            "housekeeping",
            # Every worker follows a reload, serving HTTP or not.
            Job("config_refresh", beat, HOUSEKEEPING_DEADLINE_S, svc.config.playbooks),
            Job("due_retries", beat, HOUSEKEEPING_DEADLINE_S, lambda: queue_due_retries(svc)),
            Job("approval_expiry", beat, HOUSEKEEPING_DEADLINE_S,
                lambda: expire_approvals(svc)),
            Job("lapsed_pauses", beat, HOUSEKEEPING_DEADLINE_S,
                lambda: end_lapsed_pauses(svc)),
            Job("lapsed_maintenance", beat, HOUSEKEEPING_DEADLINE_S,
                lambda: end_lapsed_windows(svc)),
            Job("reconcile", beat, HOUSEKEEPING_DEADLINE_S, self._reconcile))
        if svc.settings.inventory_interval:
            # Its own lane: a slow Docker list delays nothing else. One list call per
            # backend and interval, whatever the number of containers.
            scheduler.lane("inventory", Job(
                "image_inventory", svc.settings.inventory_interval, HOUSEKEEPING_DEADLINE_S,
                lambda: take_inventory(svc.database, list(svc.executors),
                                       svc.settings.opt_in_label, svc.now),
                at_start=True))
        if svc.settings.retention_days:
            scheduler.lane("retention",
                           Job("prune", PRUNE_EVERY_S, PRUNE_DEADLINE_S, self._prune,
                               at_start=True))
        return scheduler

    def _beat_s(self) -> float:
        """Three beats per lease: one late beat never lets the lease lapse."""
        return min(5.0, self.services.settings.run_lease_s / 3)

    def _heartbeat(self) -> None:
        """Renew the lease of the runs this process executes; log the database's outages."""
        svc = self.services
        with self._active_lock:
            active = list(self._active)
        try:
            with svc.database.session("heartbeat") as session:
                if active:
                    session.execute(update(Run).where(Run.id.in_(active))
                                    .values(heartbeat_at=svc.clock()))
                else:
                    session.execute(select(1))  # the outage is noticed with no run live too
        except DatabaseUnavailable:
            if self._database_ok_since is not None:
                log.error("database unavailable", extra={"worker": self.worker})
            self._database_ok_since = None
            raise
        if self._database_ok_since is None:
            self._database_ok_since = self._periodic_clock()
            log.warning("database back", extra={"worker": self.worker})

    def _reconcile(self) -> None:
        svc = self.services
        lease = svc.settings.run_lease_s
        ok_since = self._database_ok_since
        # After an outage every worker's heartbeat is stale: give the live ones two beats
        # to renew theirs before judging any run abandoned.
        if ok_since is None or self._periodic_clock() - ok_since < 2 * self._beat_s():
            return
        reconcile_interrupted(svc, stale_before=svc.clock() - timedelta(seconds=lease))

    def _prune(self) -> None:
        """AUTOFIX_RETENTION_DAYS: every worker may prune; deletes are idempotent."""
        days = self.services.settings.retention_days
        if not days:
            return
        counts = prune(self.services.database, timedelta(days=days), now=self.services.clock(),
                       stop=self._periodic.stopping, new_image_window=timedelta(
                           seconds=self.services.settings.new_image_window))
        log.info("pruned rows older than the retention", extra={"days": days, **counts})
