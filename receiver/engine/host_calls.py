"""How many request threads may wait on one Docker host at once, per process.

A request that asks a host directly (GET /api/v1/targets/<host>/<name>/dependents, a manual
run's target check) waits that host's `timeout_s` when it hangs. Without a bound, a few
such requests would hold every gunicorn thread, and the webhook of every other host with
them; past the bound the answer is 503 at once ("retry")."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from receiver.domain.errors import BackendUnavailable

__all__ = ["CALLS_PER_HOST", "HostCalls"]

CALLS_PER_HOST = 2  # of gunicorn's 8 threads per worker


@dataclass
class HostCalls:
    per_host: int = CALLS_PER_HOST
    _gates: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def calling(self, host: str | None) -> Iterator[None]:
        """Around a request's calls to `host` (None: no bound, one host)."""
        if host is None:
            yield
            return
        with self._lock:
            gate = self._gates.setdefault(host, threading.BoundedSemaphore(self.per_host))
        if not gate.acquire(blocking=False):
            raise BackendUnavailable(f"Docker host {host}: {self.per_host} requests already "
                                     "wait on it (slow or down); retry")
        try:
            yield
        finally:
            gate.release()
