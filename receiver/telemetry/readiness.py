"""Readiness of every backend the receiver needs: the database, Docker, and the Swarm
manager when that backend is enabled.

Each backend is probed in a thread of its own with a short timeout (a hung daemon must
not hang the probe), and the answer is kept for a few seconds, so that kubelet, a load
balancer and Prometheus together cost one Docker ping per interval and process, not one
each. A probe that answers after its timeout still counts as down. The probe thread sets
`autofix_backend_up{backend,host}`; /metrics only starts stale probes and never waits for them
(a scrape must not take the probe's timeout).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from receiver.telemetry.metrics import Metrics

__all__ = ["CACHE_S", "PROBE_TIMEOUT_S", "BackendStatus", "Readiness"]

PROBE_TIMEOUT_S = 2.0
CACHE_S = 5.0

# A probe returns None when the backend answers, else raises with why it does not.
Probe = Callable[[], None]


@dataclass(frozen=True)
class BackendStatus:
    name: str
    up: bool
    error: str | None


class Readiness:
    def __init__(self, probes: Mapping[str, Probe], metrics: Metrics,
                 timeout_s: float = PROBE_TIMEOUT_S, cache_s: float = CACHE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._probes = dict(probes)
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[float, BackendStatus]] = {}
        self._in_flight: dict[str, threading.Event] = {}  # set when the probe has answered

    def expire(self) -> None:
        """Forget the kept answers: the next check probes again."""
        with self._lock:
            self._answers.clear()

    def check(self, wait: bool = True) -> list[BackendStatus]:
        """Every backend's status, probed now (in parallel) unless answered within CACHE_S.
        `wait=False` starts the stale probes and returns what is known already."""
        waiting: dict[str, threading.Event] = {}
        with self._lock:
            now = self._clock()
            for name in self._probes:
                kept = self._answers.get(name)
                if kept is None or now - kept[0] >= self._cache_s:
                    waiting[name] = self._start(name)
        if wait:
            deadline = time.monotonic() + self._timeout_s
            for name, answered in waiting.items():
                if not answered.wait(max(0.0, deadline - time.monotonic())):
                    self._record(name, BackendStatus(
                        name, False, f"no answer within {self._timeout_s:g} s"))
        with self._lock:
            known = {name: kept[1] for name, kept in self._answers.items()}
        return [known.get(name, BackendStatus(name, False, "not probed yet"))
                for name in self._probes]

    def _start(self, name: str) -> threading.Event:
        """The probe in flight for `name`, or a new one: a hung probe is never doubled.
        Called with the lock held."""
        answered = self._in_flight.get(name)
        if answered is not None:
            return answered
        answered = threading.Event()
        self._in_flight[name] = answered
        threading.Thread(target=self._probe, args=(name, answered), daemon=True,
                         name=f"autofix-ready-{name}").start()
        return answered

    def _probe(self, name: str, answered: threading.Event) -> None:
        started = time.monotonic()
        try:
            self._probes[name]()
            took = time.monotonic() - started
            status = (BackendStatus(name, True, None) if took <= self._timeout_s else
                      BackendStatus(name, False, f"answered after {took:.1f} s, over the "
                                    f"{self._timeout_s:g} s timeout"))
        except Exception as exc:  # every failure means: not reachable
            status = BackendStatus(name, False, (str(exc) or type(exc).__name__)[:500])
        with self._lock:
            self._in_flight.pop(name, None)
        self._record(name, status)
        answered.set()

    def _record(self, name: str, status: BackendStatus) -> None:
        with self._lock:
            self._answers[name] = (self._clock(), status)
        backend, _, host = name.partition("/")  # `docker/<host>`: one probe per Docker host
        host = host or ("local" if backend == "docker" else "")
        self._metrics.backend_up.labels(backend, host).set(1 if status.up else 0)
