"""Gauges whose truth is the database, computed when Prometheus scrapes.

Every process answers a scrape with the same rows, so no heartbeat pushes them. Results are
kept for a few seconds so a scrape storm costs one query set; a database that does not answer
yields no sample (autofix_database_errors_total counts the failure), never a failed scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import exc, func, select
from sqlalchemy.orm import Session

from receiver.domain.errors import DatabaseUnavailable
from receiver.engine.breaker import current_state, gauge_value
from receiver.incidents.filing import pending_count
from receiver.store.engine import Database
from receiver.store.lifecycle import OPEN_INCIDENT_STATUSES, RunStatus, active_pause
from receiver.store.models import Breaker, Incident, Run

__all__ = ["CACHE_S", "DatabaseGauges", "GaugeValues", "read_values"]

log = logging.getLogger("autofix.metrics")
CACHE_S = 5.0


@dataclass(frozen=True)
class GaugeValues:
    run_queue_depth: int
    deferred_pending: int
    runs_awaiting_approval: int
    open_incidents: int
    paused: bool
    breakers: tuple[tuple[str, int], ...]  # (target, 0 closed / 1 half-open / 2 open)


def _count(session: Session, model: type[Run] | type[Incident], *where: object) -> int:
    return session.scalar(select(func.count()).select_from(model)
                          .where(*where)) or 0  # type: ignore[arg-type]


def read_values(session: Session, now: datetime) -> GaugeValues:
    breakers = tuple(
        (row.target, gauge_value(current_state(row.state, row.open_until, now)))
        for row in session.scalars(select(Breaker).order_by(Breaker.target)))
    return GaugeValues(
        run_queue_depth=_count(session, Run, Run.status == RunStatus.QUEUED),
        deferred_pending=pending_count(session),
        runs_awaiting_approval=_count(session, Run, Run.status == RunStatus.AWAITING_APPROVAL),
        open_incidents=_count(session, Incident, Incident.status.in_(OPEN_INCIDENT_STATUSES)),
        paused=active_pause(session, now) is not None,
        breakers=breakers)


def families(values: GaugeValues) -> Iterator[Metric]:
    """The names, help and labels the pushed gauges had (dashboards and rules use them)."""
    yield GaugeMetricFamily("autofix_deferred_notifications_pending",
                            "Notifications acknowledged whose alerts are not filed yet.",
                            value=values.deferred_pending)
    yield GaugeMetricFamily("autofix_open_incidents", "Incidents not yet resolved.",
                            value=values.open_incidents)
    breakers = GaugeMetricFamily(
        "autofix_breaker_state", "Circuit breaker per target: 0 closed, 1 half-open, 2 open.",
        labels=["target"])
    for target, state in values.breakers:
        breakers.add_metric([target], state)
    yield breakers
    yield GaugeMetricFamily("autofix_run_queue_depth", "Runs queued and not yet started.",
                            value=values.run_queue_depth)
    yield GaugeMetricFamily(
        "autofix_paused",
        "1 while the kill switch is on (no step that leaves the process starts).",
        value=1 if values.paused else 0)
    yield GaugeMetricFamily("autofix_runs_awaiting_approval",
                            "Runs waiting for a human's approval.",
                            value=values.runs_awaiting_approval)


class DatabaseGauges(Collector):
    """Registered on the registry that answers the scrape (metrics.Metrics.attach)."""

    def __init__(self, database: Database, clock: Callable[[], datetime],
                 cache_s: float = CACHE_S, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._database = database
        self._clock = clock
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._lock = threading.Lock()  # concurrent scrapes wait for one query set
        self._values: GaugeValues | None = None
        self._read_at: float | None = None
        self._generation = 0  # bumped by invalidate; the cache holds one generation's read
        self._read_generation = -1

    def invalidate(self) -> None:
        """This process changed what a gauge shows (a pause, a breaker): the next scrape
        reads again. Other processes' caches lapse within CACHE_S. Lock-free: it is called
        inside admission transactions, which must never wait behind a scrape's query."""
        self._generation += 1

    def collect(self) -> Iterable[Metric]:
        values = self._current()
        return () if values is None else list(families(values))

    def describe(self) -> Iterable[Metric]:
        return ()  # no query when the collector is registered

    def _current(self) -> GaugeValues | None:
        with self._lock:
            now, generation = self._monotonic(), self._generation
            if (self._read_at is not None and now - self._read_at < self._cache_s
                    and self._read_generation == generation):
                return self._values
            try:
                with self._database.session("gauges") as session:
                    self._values = read_values(session, self._clock())
            except DatabaseUnavailable:
                self._values = None  # kept too: a down database is not hammered by scrapes
            except exc.SQLAlchemyError:  # a scrape must never fail over its gauges
                log.exception("database gauges could not be read")
                self._values = None
            # A change during the read makes the next scrape read again.
            self._read_at, self._read_generation = now, generation
            return self._values
