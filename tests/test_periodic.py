"""Periodic work on its own scheduler (issue #29): the heartbeat never waits behind another
job, a job's failure or overrun is counted and its lane goes on, and a prune held for a
minute leaves every live run running. Due-ness follows an injected clock: no sleeping."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from receiver.scheduler import Job, Scheduler
from tests.harness.clock import Clock
from tests.harness.procs import wait_for

QUICK = 0.005  # real seconds a lane waits at most before it looks at the injected clock


def counters() -> tuple[CollectorRegistry, Counter, Counter]:
    registry = CollectorRegistry()
    return (registry,
            Counter("autofix_periodic_job_overruns_total", "", ["job"], registry=registry),
            Counter("autofix_periodic_job_errors_total", "", ["job"], registry=registry))


def sample(registry: CollectorRegistry, name: str, job: str) -> float:
    return registry.get_sample_value(name, {"job": job}) or 0.0


def seconds(clock: Clock) -> Any:
    return lambda: clock().timestamp()


def test_a_job_overrunning_its_deadline_does_not_delay_the_heartbeat() -> None:
    clock = Clock()
    registry, overruns, errors = counters()
    beats: list[float] = []  # one per heartbeat
    entered, release = threading.Event(), threading.Event()

    def stuck() -> None:
        entered.set()
        release.wait(30)

    scheduler = Scheduler(overruns, errors, seconds(clock), QUICK)
    scheduler.lane("heartbeat", Job("heartbeat", 1.0, 1.0, lambda: beats.append(1.0)))
    scheduler.lane("housekeeping", Job("stuck", 1.0, 5.0, stuck, at_start=True))
    scheduler.start()
    try:
        assert entered.wait(10), "the stuck job never started"
        for step in range(1, 31):  # 30 s of the clock with the other lane stuck
            clock.advance(1)
            wait_for(lambda step=step: len(beats) >= step, 10,
                     f"beat {step} while the other job is stuck")
        release.set()
        wait_for(lambda: sample(registry, "autofix_periodic_job_overruns_total", "stuck") == 1,
                 10, "the overrun counted")
    finally:
        release.set()
        scheduler.stop(10)
    assert sample(registry, "autofix_periodic_job_overruns_total", "heartbeat") == 0
    assert sample(registry, "autofix_periodic_job_errors_total", "stuck") == 0


def test_a_raising_job_is_counted_and_its_lane_goes_on() -> None:
    clock = Clock()
    registry, overruns, errors = counters()
    calls: list[int] = []
    neighbour: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError("boom")

    scheduler = Scheduler(overruns, errors, seconds(clock), QUICK)
    lane = scheduler.lane("housekeeping", Job("flaky", 1.0, 5.0, flaky, at_start=True),
                          Job("neighbour", 1.0, 5.0, lambda: neighbour.append(1),
                              at_start=True))
    scheduler.start()
    try:
        for step in range(1, 5):
            wait_for(lambda step=step: len(calls) >= step and len(neighbour) >= step, 10,
                     f"call {step}")
            clock.advance(1)
        assert lane.is_alive()
    finally:
        scheduler.stop(10)
    assert sample(registry, "autofix_periodic_job_errors_total", "flaky") == 2
    assert sample(registry, "autofix_periodic_job_errors_total", "neighbour") == 0
    assert sample(registry, "autofix_periodic_job_overruns_total", "flaky") == 0


def test_stop_ends_every_lane() -> None:
    _, overruns, errors = counters()
    scheduler = Scheduler(overruns, errors)  # the real monotonic clock, hour-long intervals
    for name in ("heartbeat", "housekeeping", "retention"):
        scheduler.lane(name, Job(name, 3600.0, 60.0, lambda: None))
    scheduler.start()
    scheduler.stop(10)
    assert not any(lane.is_alive() for lane in scheduler.lanes)
