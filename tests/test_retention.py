"""Retention (issue #29, points 1 and 2): the prune deletes only what lifecycle calls
finished, in bounded batches, on a thread of its own so that heartbeats never wait behind it."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from receiver.store.lifecycle import IncidentStatus
from receiver.store.migrate import prune
from receiver.store.models import Action, Incident, Run, utcnow

OLD = timedelta(days=40)


def _seed_incident(session: Any, status: str, index: int, run_status: str = "failed") -> int:
    then = utcnow() - OLD
    incident = Incident(fingerprint=f"ret{index:05d}", starts_at=then, alertname="TargetDown",
                        container=f"c{index}", target=f"c{index}", labels={}, annotations={},
                        status=status, first_seen=then, last_seen=then)
    session.add(incident)
    session.flush()
    run = Run(incident_id=incident.id, playbook="restart", target=f"c{index}", trigger="alert",
              status=run_status, queued_at=then)
    session.add(run)
    session.flush()
    session.add(Action(run_id=run.id, incident_id=incident.id, playbook="restart",
                       action="restart_container", target=f"c{index}", params={},
                       outcome="failed", trigger="alert", step=0, started_at=then))
    return incident.id


def test_prune_deletes_only_finished_incidents(db_url, app_factory) -> None:
    """An escalated incident waits for a human, or has a retry scheduled: the old prune
    deleted it and its runs by cascade. Only resolved and closed incidents go."""
    database = app_factory(db_url).extensions["autofix"].database
    with database.session() as session:
        ids = {status: _seed_incident(session, status, index)
               for index, status in enumerate(IncidentStatus)}

    counts = prune(database, timedelta(days=30))

    with database.session() as session:
        left = set(session.scalars(select(Incident.status)))
        runs_left = session.scalar(select(func.count()).select_from(Run))
        actions_left = session.scalar(select(func.count()).select_from(Action))
    assert left == {"open", "remediating", "escalated", "acknowledged"}
    assert counts["incidents"] == 2
    # The kept incidents keep their runs and actions; the deleted ones' cascaded.
    assert runs_left == 4 and actions_left == 4
    assert ids["escalated"]


def test_prune_works_in_bounded_batches(db_url, app_factory) -> None:
    database = app_factory(db_url).extensions["autofix"].database
    with database.session() as session:
        for index in range(25):
            _seed_incident(session, "resolved", index)
        _seed_incident(session, "escalated", 99)
    transactions: list[str] = []
    session_factory = database.session

    def counting_session(*args: Any, **kwargs: Any) -> Any:
        transactions.append(args[0] if args else "")
        return session_factory(*args, **kwargs)

    database.session = counting_session  # type: ignore[method-assign]
    try:
        counts = prune(database, timedelta(days=30), batch_rows=10)
    finally:
        database.session = session_factory  # type: ignore[method-assign]
    assert counts["incidents"] == 25
    # 10 + 10 + 5, then the empty look that ends the incidents' loop.
    assert transactions.count("prune") >= 4 + 2  # and one empty look per other table
    with database.session() as session:
        assert list(session.scalars(select(Incident.status))) == ["escalated"]


def test_a_long_prune_does_not_stop_the_heartbeat(sqlite_url, app_factory, monkeypatch) -> None:
    """A prune longer than the lease used to stop this worker's heartbeats (they ran in one
    loop), and other workers then marked its live runs interrupted."""
    import receiver.runtime.runner as runner_module

    app = app_factory(sqlite_url, retention_days=30, run_lease_s=1.0, runner_threads=1)
    services = app.extensions["autofix"]
    entered, release = threading.Event(), threading.Event()

    def slow_prune(*args: Any, **kwargs: Any) -> dict[str, int]:
        entered.set()
        release.wait(30)
        return {}

    monkeypatch.setattr(runner_module, "prune", slow_prune)
    runner = runner_module.Runner(services)
    with services.database.session() as session:
        incident_id = _seed_incident(session, "remediating", 1, run_status="running")
        run = session.scalars(select(Run).where(Run.incident_id == incident_id)).one()
        run.worker, run.heartbeat_at, run.started_at = runner.worker, utcnow(), utcnow()
        run_id = run.id
    runner._active.add(run_id)  # as if one of its threads were executing it
    runner.start()
    try:
        assert entered.wait(10), "the retention prune never started"
        with services.database.session() as session:
            before = session.get(Run, run_id).heartbeat_at
        # Three leases with the prune still running.
        release.wait(3.0)
        with services.database.session() as session:
            run = session.get(Run, run_id)
            after, status = run.heartbeat_at, run.status
        assert status == "running"
        assert after > before, "the heartbeat waited behind the prune"
    finally:
        release.set()
        runner._active.discard(run_id)
        runner.stop(10)


def test_a_stopping_prune_ends_between_batches(sqlite_url, app_factory) -> None:
    """A shutdown does not wait for a backlog: the prune looks at `stop` before each batch."""
    database = app_factory(sqlite_url).extensions["autofix"].database
    with database.session() as session:
        for index in range(5):
            _seed_incident(session, "resolved", index)
    stop = threading.Event()
    stop.set()
    assert set(prune(database, timedelta(days=30), stop=stop).values()) == {0}
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Incident)) == 5
