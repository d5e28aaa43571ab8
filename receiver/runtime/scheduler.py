"""Periodic work: jobs with their own interval and deadline, run by lanes (one thread each).

A job never runs concurrently with itself and delays only the jobs of its own lane: the
heartbeat has a lane of its own so that no other job's slowness lets another worker judge
this worker's live runs abandoned. A job's exception or overrun is logged and counted,
and the lane goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import Counter

from receiver.domain.errors import DatabaseUnavailable

__all__ = ["Job", "Lane", "Scheduler"]

log = logging.getLogger("autofix.scheduler")


@dataclass(frozen=True)
class Job:
    """`fn` every `interval_s`, counted an overrun when one call takes over `deadline_s`.
    The first call is one interval after the start, or at once with `at_start`."""

    name: str
    interval_s: float
    deadline_s: float
    fn: Callable[[], object]
    at_start: bool = False


class Lane:
    """One thread running its jobs in turn, each when due on `clock` (monotonic seconds)."""

    def __init__(self, name: str, jobs: Sequence[Job], stop: threading.Event,
                 overruns: Counter, errors: Counter, clock: Callable[[], float],
                 max_wait_s: float | None = None) -> None:
        self.name = name
        self.jobs = tuple(jobs)
        self._stop = stop
        self._overruns = overruns
        self._errors = errors
        self._clock = clock
        # A clock other than the wall's may not move while the lane waits: look again at
        # least this often (real seconds).
        self._max_wait_s = max_wait_s
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"autofix-{self.name}",
                                        daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        start = self._clock()
        due = [start if job.at_start else start + job.interval_s for job in self.jobs]
        while not self._stop.is_set():
            for index, job in enumerate(self.jobs):
                if self._stop.is_set():
                    return
                if self._clock() >= due[index]:
                    self._run(job)
                    # From the end of this call: an overrun is never made up with a burst.
                    due[index] = self._clock() + job.interval_s
            wait = max(0.0, min(due) - self._clock())
            if self._max_wait_s is not None:
                wait = min(wait, self._max_wait_s)
            self._stop.wait(wait)

    def _run(self, job: Job) -> None:
        started = self._clock()
        try:
            job.fn()
        except DatabaseUnavailable:
            pass  # counted by autofix_database_errors_total; the heartbeat logs the outage
        except Exception:  # a failing job must never kill the lane
            self._errors.labels(job.name).inc()
            log.exception("periodic job failed", extra={"job": job.name, "lane": self.name})
        took = self._clock() - started
        if took > job.deadline_s:
            self._overruns.labels(job.name).inc()
            log.warning("periodic job overran its deadline", extra={
                "job": job.name, "lane": self.name, "duration_s": round(took, 3),
                "deadline_s": job.deadline_s})


class Scheduler:
    """Lanes started and stopped together. `clock` decides due-ness (tests inject one)."""

    def __init__(self, overruns: Counter, errors: Counter,
                 clock: Callable[[], float] = time.monotonic,
                 max_wait_s: float | None = None) -> None:
        self._stop = threading.Event()
        self._overruns = overruns
        self._errors = errors
        self._clock = clock
        self._max_wait_s = max_wait_s
        self.lanes: list[Lane] = []

    def lane(self, name: str, *jobs: Job) -> Lane:
        for job in jobs:  # exported at 0, so an alert's increase() sees the first one
            self._overruns.labels(job.name)
            self._errors.labels(job.name)
        lane = Lane(name, jobs, self._stop, self._overruns, self._errors, self._clock,
                    self._max_wait_s)
        self.lanes.append(lane)
        return lane

    def start(self) -> None:
        for lane in self.lanes:
            lane.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Every lane ends after the job it is in (a prune stops between batches)."""
        self._stop.set()
        for lane in self.lanes:
            lane.join(timeout)

    @property
    def stopping(self) -> threading.Event:
        return self._stop
