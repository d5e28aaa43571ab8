"""One events follower per Docker daemon: every worker process runs a candidate, the one
holding the daemon's lease (a database row) follows `/events` and records each opted-in
container's transitions; the others wait to take over once the lease expires.

A window of coverage starts when the stream is open. When the stream breaks (the daemon
restarted, the connection dropped or a proxy cut it, a record could not be written), the
follower reconnects from its last event and the window goes on only if dockerd's buffer
still reaches back to the gap; otherwise, or when the lease changed hands, a new window
starts: whatever happened in a gap is unknown, never absent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from receiver.executor import ExecutorError
from receiver.executor.docker_executor import DockerExecutor
from receiver.intent import store
from receiver.intent.events import IMAGE_ACTIONS, parse_event
from receiver.runtime.image_inventory import record_container
from receiver.store.engine import Database
from receiver.store.models import utcnow

if TYPE_CHECKING:
    from receiver.engine.services import Services

__all__ = ["EventsFollower", "start_followers"]

log = logging.getLogger("autofix.intent")
LEASE_S = 15.0
RETRY_S = 2.0
RESUME_MARGIN = timedelta(seconds=60)  # our clock against the daemon's, when no event came


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
        self._stream: Any = None
        self._last_event_at: datetime | None = None  # the daemon's time of the last record
        self._alive_at = utcnow()  # our time when the stream was last seen alive
        # After a broken stream: (daemon, window, since in ns) to continue that window from.
        self._resume: tuple[str, datetime, int] | None = None

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
                self._resume = None  # another follower: its window, not ours
                return
        client = self.executor.events_client()
        resume = self._resume if self._resume and self._resume[0] == daemon_id else None
        # From where the last stream stopped: dockerd replays what it still holds.
        stream = client.api.events(filters={"type": "container"}, decode=True,
                                   since=_docker_since(resume[2]) if resume else None)
        self._stream = stream
        released = True
        try:
            window = self._window(client, daemon_id, resume)
            if window is None:
                return
            if resume is None or window != resume[1]:
                self._last_event_at = None
            self._alive_at = self.clock()
            reader = threading.Thread(target=self._read, args=(stream, daemon_id, window),
                                      name="autofix-events-reader", daemon=True)
            reader.start()
            self.following.set()
            while reader.is_alive() and not self._stop.wait(self.lease_s / 3):
                now = self.clock()
                if reader.is_alive():
                    self._alive_at = now
                with self.database.session("follower_renew") as session:
                    if not store.renew_lease(session, daemon_id, self.holder, now,
                                             self.lease_s,
                                             now if reader.is_alive() else None):
                        log.warning("events follower lost its lease",
                                    extra={"holder": self.holder, "daemon_id": daemon_id})
                        return
            if not self._stop.is_set():  # the stream broke: try to bridge the gap
                released = False
                # The gap began after the last event recorded and after the last renewal
                # that saw the stream alive (our clock: less a margin for skew).
                alive = self._alive_at - RESUME_MARGIN
                since = max(self._last_event_at, alive) if self._last_event_at else alive
                self._resume = (daemon_id, window, int(since.timestamp() * 1e9))
        finally:
            self.following.clear()
            stream.close()
            if released:
                self._resume = None
                self._release(daemon_id)

    def reconnect(self) -> None:
        """Break the current stream, as a proxy's idle timeout or a network blip would."""
        stream = self._stream
        if stream is not None:
            stream.close()

    def _window(self, client: Any, daemon_id: str,
                resume: tuple[str, datetime, int] | None) -> datetime | None:
        """The window this stream continues, or a new one. It continues the last one only
        when dockerd's buffer still reaches back to where that stream stopped (its oldest
        event is older): then the replay holds every event of the gap."""
        if resume is not None and _buffer_reaches(client, resume[2]):
            with self.database.session("follower_window") as session:
                if store.continue_window(session, daemon_id, self.holder, resume[1]):
                    log.info("events window resumed", extra={
                        "holder": self.holder, "daemon_id": daemon_id,
                        "since": resume[1].isoformat()})
                    return resume[1]
        window = self.clock()  # opened: every event from now on reaches us
        with self.database.session("follower_window") as session:
            if not store.start_window(session, daemon_id, self.holder, window):
                return None
        self.windows += 1
        log.info("events window started", extra={
            "holder": self.holder, "daemon_id": daemon_id, "since": window.isoformat()})
        return window

    def _release(self, daemon_id: str) -> None:
        try:
            with self.database.session("follower_end") as session:
                store.end_window(session, daemon_id, self.holder, self.clock())
        except Exception as exc:  # the lease expires by itself
            log.debug("events window end not recorded", extra={"error": str(exc)})
        log.info("events window ended", extra={"holder": self.holder, "daemon_id": daemon_id})

    def _read(self, stream: Any, daemon_id: str, window: datetime) -> None:
        """Until the stream ends or one event cannot be recorded (then the stream ends
        too: a lost event must not look absent)."""
        try:
            for raw in stream:
                self._record_image(raw)
                seen = parse_event(raw)
                if seen is None or seen.labels.get(self.opt_in_label, "").lower() != "true":
                    continue
                with self.database.session("follower_record") as session:
                    store.record_event(session, daemon_id, seen, window)
                self._last_event_at = seen.at
        except Exception as exc:  # closed by stop(), the daemon went away, the database
            if not self._stop.is_set():
                log.warning("events stream ended", extra={
                    "holder": self.holder, "error": f"{type(exc).__name__}: {exc}"})


    def _record_image(self, raw: dict[str, Any]) -> None:
        """A container created (or started, when its create was missed): its image goes
        into the history (one inspect, once); started or renamed, its row follows its
        name. A failure only leaves it to the inventory."""
        seen = parse_event(raw, IMAGE_ACTIONS)
        if seen is None or seen.labels.get(self.opt_in_label, "").lower() != "true":
            return
        try:
            # A create's name may be Compose's temporary one: only later events rename.
            record_container(self.database, self.executor, seen.container_id, self.clock(),
                             "" if seen.action == "create" else seen.name.lstrip("/"))
        except ExecutorError as exc:  # removed already: nothing to remember
            log.debug("image not recorded", extra={"container_id": seen.container_id,
                                                   "error": str(exc)})


def _docker_since(nanos: int) -> str:
    return f"{nanos // 1_000_000_000}.{nanos % 1_000_000_000:09d}"


def _buffer_reaches(client: Any, since: int) -> bool:
    """Whether dockerd's buffer (every event type) still holds an event at or before
    `since` (ns): it forgets the oldest first, so then nothing after `since` was forgotten. A
    restarted daemon starts with an empty buffer."""
    stream = client.api.events(since=1, until=f"{time.time():.9f}", decode=True)
    try:
        for event in stream:
            return int(event.get("timeNano") or 0) <= since
        return False
    finally:
        stream.close()


def start_followers(services: Services, holder: str) -> list[EventsFollower]:
    """This process's candidate follower for each Docker host's daemon (none for a backend
    that is not a Docker daemon, e.g. a test's in-memory one). Each has its own thread and
    client: a host that is down holds up only its own."""
    return [EventsFollower(services.database, executor, holder,
                           services.settings.opt_in_label, clock=services.clock).start()
            for executor in services.executors.host_executors().values()
            if isinstance(executor, DockerExecutor)]
