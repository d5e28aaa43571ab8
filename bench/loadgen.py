"""Closed-loop load: `concurrency` senders, each a keep-alive http.client connection.

Senders run in separate processes (at most SENDERS_PER_PROCESS threads each) so that the
generator itself is not one GIL-bound process competing with the server on a small machine.
Bodies are built before the clock starts: one JSON template per sender process, with a
placeholder that a str.replace turns into unique fingerprints/instances per notification.

Half the requests (every second one a sender makes) re-send that sender's previous body
verbatim, as Alertmanager does on repeat_interval, retries and HA pairs: all its alerts are
repeats of known occurrences. The other half carry only new occurrences.
"""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing as mp
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LoadSpec", "percentile", "run_load", "summarize"]

SENDERS_PER_PROCESS = 4
PLACEHOLDER = "@@UID@@"
HEADERS = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0"}


@dataclass(frozen=True)
class LoadSpec:
    base_url: str
    path: str
    headers: dict[str, str]
    alerts: int  # alerts per notification
    concurrency: int
    max_requests: int
    max_seconds: float
    tag: int  # unique per (case, repeat, target): keeps fingerprints unique across runs
    timeout_s: float = 120.0
    repeat_every: int = 2  # every 2nd request re-sends the previous body (50% repeats)
    pace_hz: float = 0.0  # >0: open loop, each sender sends at this rate (latency probes)
    alertname: str = "BenchLoad"
    # Every request's alert in one Alertmanager group (one container), instead of a group
    # of its own: a pattern Alertmanager itself never sends (it flushes a group at most
    # once per group_interval), kept as the worst case for the group's row.
    one_group: bool = False


def template(alerts: int, alertname: str, one_group: bool = False) -> str:
    """A notification of `alerts` new alerts (PLACEHOLDER makes them new per request).
    As the shipped route groups by [alertname, container], each request is its own group
    unless `one_group`."""
    from tests.payloads import alert, notification

    starts = datetime.now(UTC).replace(microsecond=0)
    prefix = "bench" if one_group else f"bench-{PLACEHOLDER}"
    items = []
    for i in range(alerts):
        item = alert({"alertname": alertname, "container": f"{prefix}-{i % 50}",
                      "instance": f"{PLACEHOLDER}-{i}", "job": "bench"}, starts_at=starts,
                     annotations={"summary": f"bench-{i % 50} load test alert",
                                  "description": "synthetic alert from bench/loadgen.py"})
        item["fingerprint"] = f"{PLACEHOLDER}{i:05x}"
        items.append(item)
    return json.dumps(notification(items, receiver="autofix"))


def _claim(counter: Any, spec: LoadSpec, deadline: float) -> bool:
    if time.monotonic() >= deadline:
        return False
    with counter.get_lock():
        if counter.value >= spec.max_requests:
            return False
        counter.value += 1
        return True


def _sender(spec: LoadSpec, sender: int, body_template: str, counter: Any, go_at: float,
            out: list[tuple[float, float, int]]) -> None:
    parts = urlsplit(spec.base_url)
    headers = {**HEADERS, **spec.headers}
    conn: http.client.HTTPConnection | None = None
    deadline = go_at + spec.max_seconds
    seq = 0
    body = b""
    interval = 1.0 / spec.pace_hz if spec.pace_hz > 0 else 0.0
    next_at = go_at + (sender % 7) * interval / 7 if interval else go_at
    while True:
        now = time.monotonic()
        if next_at > now:
            time.sleep(next_at - now)
        if not _claim(counter, spec, deadline):
            break
        if seq % spec.repeat_every == 0 or not body:
            uid = f"{spec.tag:04x}{sender:02x}{seq:05x}"[-11:]
            body = body_template.replace(PLACEHOLDER, uid).encode()
        seq += 1
        started = time.monotonic()
        status = 0
        try:
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                                  timeout=spec.timeout_s)
            conn.request("POST", spec.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
            if response.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            status = -1
            if conn is not None:
                conn.close()
            conn = None
        ended = time.monotonic()
        out.append((started - go_at, ended - started, status))
        if interval:
            next_at += interval
            if next_at < ended:  # behind schedule: don't burst to catch up
                next_at = ended
    if conn is not None:
        conn.close()


def _process(spec: LoadSpec, senders: list[int], counter: Any, ready: Any, go: Any,
             results: Any) -> None:
    body_template = template(spec.alerts, spec.alertname, spec.one_group)
    ready.put(len(senders))
    go_at = go.get()
    outs: list[list[tuple[float, float, int]]] = [[] for _ in senders]
    threads = [threading.Thread(target=_sender, args=(spec, s, body_template, counter, go_at,
                                                      outs[i]), daemon=True)
               for i, s in enumerate(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put([row for out in outs for row in out])


def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Run one case; returns raw samples and summary statistics."""
    ctx = mp.get_context("spawn")
    counter = ctx.Value("l", 0)
    ready, go, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    groups = [list(range(i, min(i + SENDERS_PER_PROCESS, spec.concurrency)))
              for i in range(0, spec.concurrency, SENDERS_PER_PROCESS)]
    procs = [ctx.Process(target=_process, args=(spec, g, counter, ready, go, results),
                         daemon=True) for g in groups]
    for proc in procs:
        proc.start()
    try:
        pending = len(procs)
        deadline = time.monotonic() + 120
        while pending:
            try:
                ready.get(timeout=1)
                pending -= 1
            except queue.Empty:
                if any(not p.is_alive() for p in procs) or time.monotonic() > deadline:
                    raise RuntimeError("a load generator process died while starting") from None
        go_at = time.monotonic() + 0.2
        go_wall = time.time() + (go_at - time.monotonic())
        for _ in procs:
            go.put(go_at)
        samples: list[tuple[float, float, int]] = []
        wait = spec.max_seconds + spec.timeout_s + 60
        for _ in procs:
            samples.extend(results.get(timeout=wait))
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    summary = summarize(samples, spec.alerts)
    summary["go_wall"] = go_wall
    summary["starts_s"] = [round(s, 4) for s, _, status in samples if 200 <= status < 300]
    return summary


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(samples: list[tuple[float, float, int]], alerts: int) -> dict[str, Any]:
    ok = [(s, lat) for s, lat, status in samples if 200 <= status < 300]
    latencies = [lat for _, lat in ok]
    errors: dict[str, int] = {}
    for _, _, status in samples:
        if not 200 <= status < 300:
            errors[str(status)] = errors.get(str(status), 0) + 1
    span = max((s + lat for s, lat, _ in samples), default=0.0)
    return {
        "requests": len(samples), "ok": len(ok), "errors": errors,
        "wall_s": round(span, 3),
        "throughput_rps": len(ok) / span if span > 0 else 0.0,
        "alerts_per_s": len(ok) * alerts / span if span > 0 else 0.0,
        "p50_ms": percentile(latencies, 50) * 1000, "p90_ms": percentile(latencies, 90) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else math.nan,
        "latencies_ms": [round(x * 1000, 3) for x in latencies],
    }
