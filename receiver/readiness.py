"""Readiness of every backend the receiver needs: the database, Docker, and the Swarm
manager when that backend is enabled.

Each backend is probed in a thread with a short timeout (a hung daemon must not hang the
probe) and the answer is kept for a few seconds, so that kubelet, a load balancer and
Prometheus' scrape together cost one Docker ping per interval and process, not one each.
`autofix_backend_up{backend}` is set from the same answers, on /readyz and on /metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass

from .metrics import Metrics

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
        self._in_flight: dict[str, Future[None]] = {}

    @property
    def backends(self) -> list[str]:
        return list(self._probes)

    def expire(self) -> None:
        """Forget the kept answers: the next check probes again."""
        with self._lock:
            self._answers.clear()

    def check(self) -> list[BackendStatus]:
        """Every backend's status, fresh (probed now, in parallel) or at most CACHE_S old."""
        now = self._clock()
        waiting: dict[str, Future[None]] = {}
        answers: dict[str, BackendStatus] = {}
        with self._lock:
            for name in self._probes:
                cached = self._answers.get(name)
                if cached is not None and now - cached[0] < self._cache_s:
                    answers[name] = cached[1]
                else:
                    waiting[name] = self._start(name)
        deadline = self._clock() + self._timeout_s
        for name, future in waiting.items():
            answers[name] = self._settle(name, future, max(0.0, deadline - self._clock()))
        return [answers[name] for name in self._probes]

    def _start(self, name: str) -> Future[None]:
        """The probe in flight for `name`, or a new one: a hung probe is never doubled."""
        future = self._in_flight.get(name)
        if future is not None and not future.done():
            return future
        future = Future()
        probe = self._probes[name]

        def run() -> None:
            try:
                probe()
            except BaseException as exc:  # every failure means: not reachable
                future.set_exception(exc)
            else:
                future.set_result(None)

        threading.Thread(target=run, name=f"autofix-ready-{name}", daemon=True).start()
        self._in_flight[name] = future
        return future

    def _settle(self, name: str, future: Future[None], wait_s: float) -> BackendStatus:
        try:
            future.result(timeout=wait_s)
            status = BackendStatus(name, True, None)
        except TimeoutError:
            status = BackendStatus(name, False, f"no answer within {self._timeout_s:g} s")
        except Exception as exc:
            status = BackendStatus(name, False, (str(exc) or type(exc).__name__)[:500])
        with self._lock:
            self._answers[name] = (self._clock(), status)
        self._metrics.backend_up.labels(name).set(1 if status.up else 0)
        return status
