"""Gauges derived from the database are computed when scraped (issue #29), by a collector on
the registry that answers the scrape, cached briefly; a database that does not answer gives
no sample and a counted error, never a failed scrape."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from receiver.runtime.db_gauges import DatabaseGauges
from receiver.store.engine import Database
from receiver.store.models import Breaker, Incident, Notification, Pause, Run
from receiver.telemetry.metrics import Metrics
from tests.harness.clock import Clock

DATABASE_GAUGES = ("autofix_open_incidents", "autofix_run_queue_depth",
                   "autofix_runs_awaiting_approval", "autofix_paused", "autofix_breaker_state",
                   "autofix_deferred_notifications_pending")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(app: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return samples(response.get_data(as_text=True))


def seed(services: Any, clock: Clock) -> None:
    now = clock()
    with services.database.session() as session:
        for index, status in enumerate(("open", "remediating", "escalated", "resolved")):
            incident = Incident(fingerprint=f"g{index}", starts_at=now, alertname="TargetDown",
                                container="web", target="web", labels={}, annotations={},
                                status=status, first_seen=now, last_seen=now)
            session.add(incident)
            session.flush()
            for run_status in ("queued", "queued", "awaiting_approval", "succeeded"):
                session.add(Run(incident_id=incident.id, playbook="restart", target="web",
                                trigger="alert", status=run_status, queued_at=now))
        session.add(Breaker(target="shop", state="open", opened_at=now,
                            open_until=now + timedelta(minutes=5), updated_at=now))
        session.add(Breaker(target="cart", state="open", opened_at=now,
                            open_until=now - timedelta(seconds=1), updated_at=now))
        session.add(Breaker(target="web", state="closed", updated_at=now))
        session.add(Pause(paused_at=now, paused_by="alice", reason="deploy", active=1))
        for state in ("pending", "pending", "filed"):
            session.add(Notification(received_at=now, group_key="g", receiver="r",
                                     status="firing", alert_count=1, payload={},
                                     ingest_state=state))


def test_database_gauges_are_read_at_scrape_time(db_url, app_factory) -> None:
    app = app_factory(db_url)
    services = app.extensions["autofix"]
    clock = Clock()
    services.clock = clock
    before = scrape(app)
    assert before[("autofix_open_incidents", ())] == 0
    assert before[("autofix_paused", ())] == 0

    seed(services, clock)
    services.metrics.database_changed()  # as the cache's 5 s later
    values = scrape(app)
    assert values[("autofix_open_incidents", ())] == 3  # open, remediating, escalated
    assert values[("autofix_run_queue_depth", ())] == 8
    assert values[("autofix_runs_awaiting_approval", ())] == 4
    assert values[("autofix_paused", ())] == 1
    assert values[("autofix_deferred_notifications_pending", ())] == 2
    assert values[("autofix_breaker_state", (("target", "shop"),))] == 2
    assert values[("autofix_breaker_state", (("target", "cart"),))] == 1  # its period is over
    assert values[("autofix_breaker_state", (("target", "web"),))] == 0

    clock.advance(600)  # the shop breaker's period ends on the receiver's clock
    services.metrics.database_changed()
    assert scrape(app)[("autofix_breaker_state", (("target", "shop"),))] == 1


def test_a_scrape_storm_reads_the_database_once_per_cache_period(sqlite_url, app_factory) -> None:
    services = app_factory(sqlite_url).extensions["autofix"]
    database = services.database
    opened: list[str] = []
    real_session = database.session

    def counting_session(operation: str = "query") -> Any:
        opened.append(operation)
        return real_session(operation)

    database.session = counting_session  # type: ignore[method-assign]
    monotonic = [1000.0]
    gauges = DatabaseGauges(database, Clock(), cache_s=5.0, monotonic=lambda: monotonic[0])
    for _ in range(20):
        assert {family.name for family in gauges.collect()} >= {
            "autofix_open_incidents", "autofix_paused"}
    assert opened == ["gauges"]
    monotonic[0] += 5.0
    list(gauges.collect())
    assert opened == ["gauges", "gauges"]
    gauges.invalidate()
    list(gauges.collect())
    assert len(opened) == 3


def test_a_database_down_gives_no_sample_and_no_exception() -> None:
    metrics = Metrics()
    # Nothing listens there: every connection is refused at once.
    database = Database("postgresql+psycopg2://autofix:x@127.0.0.1:1/autofix",
                        on_error=lambda op: metrics.database_errors.labels(op).inc())
    gauges = DatabaseGauges(database, Clock())
    metrics.attach(gauges, gauges.invalidate)
    text = metrics.exposition().decode()
    names = {name for name, _ in samples(text)}
    assert not names & set(DATABASE_GAUGES)
    assert "autofix_build_info" in names  # the rest of the scrape is whole
    assert metrics.registry.get_sample_value("autofix_database_errors_total",
                                             {"operation": "gauges"}) == 1
    database.engine.dispose()


def test_multiprocess_scrape_reads_the_database_in_the_answering_process(
        sqlite_url, app_factory, tmp_path, monkeypatch) -> None:
    app = app_factory(sqlite_url)
    services = app.extensions["autofix"]
    seed(services, Clock())
    services.clock = Clock()
    (tmp_path / "multiproc").mkdir()  # the SQLite file is in tmp_path: not a metrics file
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "multiproc"))
    values = samples(services.metrics.exposition().decode())
    assert values[("autofix_open_incidents", ())] == 3
    assert values[("autofix_breaker_state", (("target", "shop"),))] == 2


def test_invalidate_never_waits_behind_a_scrape_reading_the_database(sqlite_url,
                                                                    app_factory) -> None:
    """Admission calls invalidate inside its transaction, holding its locks: a scrape's
    slow read must not make it wait. A change during the read makes the next scrape read
    again."""
    import threading

    services = app_factory(sqlite_url).extensions["autofix"]
    database = services.database
    reading, release = threading.Event(), threading.Event()
    real_session = database.session
    reads: list[str] = []

    def slow_session(operation: str = "query") -> Any:
        reads.append(operation)
        if len(reads) == 1:
            reading.set()
            release.wait(10)
        return real_session(operation)

    database.session = slow_session  # type: ignore[method-assign]
    gauges = DatabaseGauges(database, Clock(), cache_s=60.0)
    scrape = threading.Thread(target=lambda: list(gauges.collect()))
    scrape.start()
    assert reading.wait(10)
    invalidated = threading.Thread(target=gauges.invalidate)
    invalidated.start()
    invalidated.join(5)  # blocked until release otherwise: a liveness check, not a timing
    assert not invalidated.is_alive(), "invalidate waited behind the scrape's read"
    release.set()
    scrape.join(10)
    list(gauges.collect())
    assert len(reads) == 2  # the invalidation during the read was not lost
