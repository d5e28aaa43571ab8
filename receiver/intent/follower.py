"""One events follower per Docker daemon: every worker process runs a candidate, the one
holding the daemon's lease (a database row) follows `/events` and records each opted-in
container's transitions; the others wait to take over once the lease expires.

A window of coverage starts when the stream is open and ends when it breaks (the daemon
restarted, the connection dropped, a record could not be written, the lease was lost). The
next stream starts a new window: whatever happened in between is unknown, never absent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..db.engine import Database
from ..db.models import utcnow
from ..executor.docker_executor import DockerExecutor
from . import store
from .events import parse_event

if TYPE_CHECKING:
    from ..services import Services

__all__ = ["EventsFollower", "start_follower"]

log = logging.getLogger("autofix.intent")
LEASE_S = 15.0
RETRY_S = 2.0


class EventsFollower:
    """Follows `executor`'s daemon (a DockerExecutor: `events_client` makes a client of
    its own, the stream holds a connection; `daemon_id` is the lease's key)."""

    def __init__(self, database: Database, executor: DockerExecutor, holder: str,
                 opt_in_label: str, lease_s: float = LEASE_S, retry_s: float = RETRY_S,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.database = database
        self.executor = executor
        self.holder = holder
        self.opt_in_label = opt_in_label
        self.lease_s = lease_s
        self.retry_s = retry_s
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.following = threading.Event()  # set while this one holds a live window
        self.windows = 0  # windows this follower started
        self._failing = False

    def start(self) -> EventsFollower:
        self._thread = threading.Thread(target=self._loop, name="autofix-events", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.follow_once()
                self._failing = False
            except Exception as exc:  # the daemon or the database is away: try again
                if not self._failing:
                    log.warning("events follower cannot follow", extra={
                        "holder": self.holder, "error": f"{type(exc).__name__}: {exc}"})
                self._failing = True
            self._stop.wait(self.retry_s)

    def follow_once(self) -> None:
        """Claim the lease; if won, follow until the stream breaks, the lease is lost or
        `stop`. Returns at once when another follower holds the lease."""
        daemon_id = self.executor.daemon_id()
        with self.database.session("follower_lease") as session:
            if not store.claim_lease(session, daemon_id, self.holder, self.clock(),
                                     self.lease_s):
                return
        client = self.executor.events_client()
        stream = client.api.events(filters={"type": "container"}, decode=True)
        try:
            # Opened: every event from now on reaches us. (Our clock: a window is told
            # apart by identity; its times only tell a human since when.)
            window = self.clock()
            with self.database.session("follower_window") as session:
                if not store.start_window(session, daemon_id, self.holder, window):
                    return
            self.windows += 1
            log.info("events window started", extra={
                "holder": self.holder, "daemon_id": daemon_id, "since": window.isoformat()})
            reader = threading.Thread(target=self._read, args=(stream, daemon_id, window),
                                      name="autofix-events-reader", daemon=True)
            reader.start()
            self.following.set()
            while reader.is_alive() and not self._stop.wait(self.lease_s / 3):
                now = self.clock()
                with self.database.session("follower_renew") as session:
                    if not store.renew_lease(session, daemon_id, self.holder, now,
                                             self.lease_s,
                                             now if reader.is_alive() else None):
                        log.warning("events follower lost its lease",
                                    extra={"holder": self.holder, "daemon_id": daemon_id})
                        return
        finally:
            self.following.clear()
            stream.close()
            try:
                with self.database.session("follower_end") as session:
                    store.end_window(session, daemon_id, self.holder, self.clock())
            except Exception as exc:  # the lease expires by itself
                log.debug("events window end not recorded", extra={"error": str(exc)})
            log.info("events window ended", extra={"holder": self.holder,
                                                   "daemon_id": daemon_id})

    def _read(self, stream: Any, daemon_id: str, window: datetime) -> None:
        """Until the stream ends or one event cannot be recorded (then the window ends:
        a lost event must not look absent)."""
        try:
            for raw in stream:
                seen = parse_event(raw)
                if seen is None or seen.labels.get(self.opt_in_label, "").lower() != "true":
                    continue
                with self.database.session("follower_record") as session:
                    store.record_event(session, daemon_id, seen, window)
        except Exception as exc:  # closed by stop(), the daemon went away, the database
            if not self._stop.is_set():
                log.warning("events stream ended", extra={
                    "holder": self.holder, "error": f"{type(exc).__name__}: {exc}"})


def start_follower(services: Services, holder: str) -> EventsFollower | None:
    """This process's candidate follower for the Docker backend's daemon (none when the
    backend is not a Docker daemon, e.g. a test's in-memory one)."""
    executor = services.executors.default
    if not isinstance(executor, DockerExecutor):
        return None
    return EventsFollower(services.database, executor, holder,
                          services.settings.opt_in_label, clock=services.clock).start()
