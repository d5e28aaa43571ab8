"""Periodic work on its own scheduler (issue #29): the heartbeat never waits behind another
job, a job's failure or overrun is counted and its lane goes on, and a prune held for a
minute leaves every live run running. Due-ness follows an injected clock: no sleeping."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import select

import receiver.runtime.runner as runner_module
from receiver.runtime.runner import reconcile_interrupted
from receiver.runtime.scheduler import Job, Scheduler
from receiver.store.models import Action, Incident, Run
from tests.harness.clock import Clock
from tests.harness.procs import wait_for

QUICK = 0.005  # real seconds a lane waits at most before it looks at the injected clock


def counters() -> tuple[CollectorRegistry, Counter, Counter]:
    registry = CollectorRegistry()
    return (registry,
            Counter("autofix_periodic_job_overruns_total", "", ["job_name"], registry=registry),
            Counter("autofix_periodic_job_errors_total", "", ["job_name"], registry=registry))


def sample(registry: CollectorRegistry, name: str, job: str) -> float:
    return registry.get_sample_value(name, {"job_name": job}) or 0.0


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


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=None)  # SQLite returns naive UTC, PostgreSQL aware


def test_a_minute_long_prune_interrupts_no_live_run(db_url, app_factory, monkeypatch) -> None:
    """The prune is held for 60 s of the injected clock. Meanwhile this worker's heartbeat
    renews its live run's lease every second, and neither this worker's reconciliation nor
    another replica's (run here by the test, lease 3 s) marks the run interrupted."""
    app = app_factory(db_url, retention_days=30, run_lease_s=3.0, runner_threads=1)
    services = app.extensions["autofix"]
    clock = Clock()
    services.clock = clock
    entered, release = threading.Event(), threading.Event()

    def held_prune(*args: Any, **kwargs: Any) -> dict[str, int]:
        entered.set()
        release.wait(60)
        return {}

    monkeypatch.setattr(runner_module, "prune", held_prune)
    runner = runner_module.Runner(services, periodic_clock=seconds(clock),
                                  periodic_max_wait_s=QUICK)
    with services.database.session() as session:
        incident = Incident(fingerprint="live", starts_at=clock(), alertname="TargetDown",
                            container="web", target="web", labels={}, annotations={},
                            status="remediating", first_seen=clock(), last_seen=clock())
        session.add(incident)
        session.flush()
        run = Run(incident_id=incident.id, playbook="restart", target="web", trigger="alert",
                  status="running", queued_at=clock(), started_at=clock(),
                  heartbeat_at=clock(), worker=runner.worker)
        session.add(run)
        session.flush()
        run_id = run.id
    runner._active.add(run_id)  # as if one of its threads were executing it

    def heartbeat_at() -> datetime:
        with services.database.session() as session:
            value = session.scalars(select(Run.heartbeat_at).where(Run.id == run_id)).one()
        assert value is not None
        return value

    runner.start()
    try:
        assert entered.wait(10), "the retention prune never started"
        for second in range(1, 61):
            clock.advance(1)
            wait_for(lambda: _utc(heartbeat_at()) >= _utc(clock()), 10,
                     f"the heartbeat at second {second} of the prune")
            lease = services.settings.run_lease_s
            assert reconcile_interrupted(services, stale_before=clock()
                                         - timedelta(seconds=lease)) == []
        assert entered.is_set() and not release.is_set()  # still pruning all along
    finally:
        release.set()
        runner._active.discard(run_id)
        runner.stop(10)
    with services.database.session() as session:
        assert session.get(Run, run_id).status == "running"
        assert session.scalars(select(Action).where(Action.outcome == "interrupted")).all() == []
    assert services.metrics.registry.get_sample_value(
        "autofix_periodic_job_errors_total", {"job_name": "heartbeat"}) == 0
