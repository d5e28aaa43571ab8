"""Optional built-in load: the app calls its own endpoints over loopback.

Error-ratio and latency alerts need a steady request rate; this gives the demo and the
end-to-end tests one without an external load generator (TARGET_APP_SELF_TRAFFIC_RPS).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request

__all__ = ["start_self_traffic"]

log = logging.getLogger("target_app.selftraffic")

PATHS = ("/", "/api/work")
# At most this many self-requests in flight. Kept well below gunicorn's thread count
# so that during a latency spike self-traffic cannot take every thread and starve the
# /metrics scrape (that would turn a latency alert into a false TargetDown).
MAX_IN_FLIGHT = 2
REQUEST_TIMEOUT_S = 15.0


def start_self_traffic(base_url: str, rps: float) -> threading.Thread:
    slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)

    def one(url: str) -> None:
        try:
            with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as resp:  # noqa: S310
                resp.read()
        except (urllib.error.URLError, OSError):
            pass  # a 500 or a timeout is exactly what the fault is meant to produce
        finally:
            slots.release()

    def loop() -> None:
        interval = 1.0 / rps
        i = 0
        next_at = time.monotonic()
        while True:
            next_at += interval
            if slots.acquire(blocking=False):  # skip the tick rather than pile up
                url = base_url + PATHS[i % len(PATHS)]
                threading.Thread(target=one, args=(url,), daemon=True).start()
                i += 1
            time.sleep(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=loop, name="self-traffic", daemon=True)
    thread.start()
    log.info("self-traffic: %.1f req/s to %s", rps, base_url)
    return thread
