"""The soak's load (bench/soak.py): a paced, open-loop sender in its own process.

Request i is sent at go + i / rate whatever happened before (behind schedule it sends at
once, never skips), so the rate is the target's. What request i is depends on i alone:
  * every 20th (5%): a new TargetDown occurrence on one of the pool's opted-in containers
    (a unique startsAt each), which the shipped restart playbook matches;
  * the rest cycle new / repeated / resolved: slot j is episode j//3's phase j%3, phase 1
    re-sends episode (j//3 - lag)'s firing, phase 2 resolves episode (j//3 - 2*lag), lag
    being LAG_S (3 s) worth of episodes at the rate. Before there is such an episode, the
    slot is an extra new alert, never repeated.
Bodies are built before the clock starts (one template per container and kind); each
request costs one bytes.replace, so the sender stays cheap beside the receiver.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["LAG_S", "RESTART_EVERY", "kind_of", "lag_for", "run_sender", "summarize_sends"]

RESTART_EVERY = 20  # 5% of the notifications
LAG_S = 3.0  # between an alert's new, repeat and resolve
GROUPS = 50  # SoakLoad alerts spread over 50 containers (Alertmanager groups)
ALERTNAME = "SoakLoad"
UID = b"@@UID@@"
STARTS = b"@@STARTS@@"
HEADERS = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0"}


def lag_for(rate: float) -> int:
    """Episodes begun in LAG_S seconds at `rate` notifications/s (a third of 95% are new)."""
    return max(1, round(rate * LAG_S * (RESTART_EVERY - 1) / RESTART_EVERY / 3))


def kind_of(i: int, lag: int) -> tuple[str, int]:
    """(kind, number) of request i: restart (its occurrence), new / repeat / resolve (the
    episode), extra (the slot)."""
    if i % RESTART_EVERY == RESTART_EVERY - 1:
        return "restart", i // RESTART_EVERY
    slot = i - (i + 1) // RESTART_EVERY
    base, phase = divmod(slot, 3)
    episode = base - lag * phase
    if phase == 0:
        return "new", episode
    if episode < 0:
        return "extra", slot
    return ("repeat" if phase == 1 else "resolve"), episode


def templates(pool: list[str], started: datetime) -> dict[str, list[bytes]]:
    """Bodies with UID (a 16-hex fingerprint, also the instance) and STARTS placeholders."""
    from tests.payloads import alert, iso, notification

    def body(labels: dict[str, str], status: str, ends: datetime | None) -> bytes:
        item = alert(labels, status=status, starts_at=started, ends_at=ends,
                     annotations={"summary": f"{labels['container']} soak alert"})
        item["fingerprint"] = UID.decode()
        text = json.dumps(notification([item]))
        return text.replace(iso(started), STARTS.decode()).encode()

    soak = [{"alertname": ALERTNAME, "severity": "warning", "job": "soak",
             "container": f"soak-{g:02d}", "instance": UID.decode()} for g in range(GROUPS)]
    return {
        "firing": [body(labels, "firing", None) for labels in soak],
        "resolved": [body(labels, "resolved", started + timedelta(minutes=1))
                     for labels in soak],
        "restart": [body({"container": name, "job": "containers", "instance": name},
                         "firing", None) for name in pool],
    }


def build(i: int, lag: int, tag: int, pool_size: int, bodies: dict[str, list[bytes]],
          started: datetime) -> tuple[str, bytes]:
    from tests.payloads import iso

    kind, number = kind_of(i, lag)
    starts = iso(started).encode()
    if kind == "restart":
        if not pool_size:  # no containers: an extra new alert instead
            kind, number = "extra", -1 - number
        else:
            # Each a new occurrence: the container's labels (fingerprint), a later startsAt.
            body = bodies["restart"][number % pool_size]
            starts = iso(started + timedelta(milliseconds=number)).encode()
            uid = f"{tag:04x}f{number % pool_size:011x}"
            return kind, body.replace(UID, uid.encode()).replace(STARTS, starts)
    if kind == "extra":
        uid = f"{tag:04x}e{number & 0xFFFFFFFFFFF:011x}"
        group = number % GROUPS
    else:
        uid = f"{tag:04x}0{number:011x}"
        group = number % GROUPS
    body = bodies["resolved" if kind == "resolve" else "firing"][group]
    return kind, body.replace(UID, uid.encode()).replace(STARTS, starts)


def _thread(url: tuple[str, int], path: str, headers: dict[str, str], first: int, step: int,
            total: int, rate: float, go_at: float, make: Any, out: list[tuple[Any, ...]]
            ) -> None:
    conn: http.client.HTTPConnection | None = None
    for i in range(first, total, step):
        kind, body = make(i)
        due = go_at + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        began = time.monotonic()
        status = 0
        try:
            if conn is None:
                conn = http.client.HTTPConnection(*url, timeout=60)
            conn.request("POST", path, body=body, headers=headers)
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
        out.append((kind, status, round(began - go_at, 4), round(ended - began, 5),
                    round(max(0.0, began - due), 4)))
    if conn is not None:
        conn.close()


def _process(spec: dict[str, Any], ready: Any, go: Any, results: Any) -> None:
    started = datetime.fromisoformat(spec["started"])
    bodies = templates(spec["pool"], started)
    headers = {**HEADERS, **spec["headers"]}
    lag = lag_for(spec["rate"])

    def make(i: int) -> tuple[str, bytes]:
        return build(i, lag, spec["tag"], len(spec["pool"]), bodies, started)

    ready.put(True)
    go_at = go.get()
    outs: list[list[tuple[Any, ...]]] = [[] for _ in range(spec["connections"])]
    threads = [threading.Thread(target=_thread, daemon=True, args=(
        (spec["host"], spec["port"]), spec["path"], headers, t, spec["connections"],
        spec["total"], spec["rate"], go_at, make, outs[t]))
        for t in range(spec["connections"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put([row for out in outs for row in out])


def run_sender(base_url: str, path: str, headers: dict[str, str], pool: list[str],
               rate: float, seconds: float, tag: int, connections: int = 16) -> Any:
    """Start the sender process; returns (go_wall, collect) where collect() waits for it
    and returns its samples (kind, status, start_s, latency_s, lag_s)."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    spec = {"host": parts.hostname, "port": parts.port, "path": path, "headers": headers,
            "pool": pool, "rate": rate, "total": round(rate * seconds), "tag": tag,
            "connections": connections,
            "started": datetime.now(UTC).replace(microsecond=0).isoformat()}
    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_process, args=(spec, ready, go, results), daemon=True)
    proc.start()
    ready.get(timeout=120)
    go_at = time.monotonic() + 0.2
    go_wall = time.time() + 0.2
    go.put(go_at)

    def collect() -> list[tuple[Any, ...]]:
        try:
            return list(results.get(timeout=seconds + 180))
        finally:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    return go_wall, collect


def summarize_sends(samples: list[tuple[Any, ...]], rate: float, seconds: float
                    ) -> dict[str, Any]:
    """What was sent and accepted, by kind; the achieved rate overall and per minute."""
    from bench.loadgen import percentile

    by_kind: dict[str, dict[str, int]] = {}
    per_minute: dict[int, int] = {}
    latencies, lags = [], []
    for kind, status, start, latency, lag in samples:
        counts = by_kind.setdefault(kind, {"sent": 0, "accepted": 0})
        counts["sent"] += 1
        if 200 <= status < 300:
            counts["accepted"] += 1
            per_minute[int(start // 60)] = per_minute.get(int(start // 60), 0) + 1
        else:
            counts[f"status_{status}"] = counts.get(f"status_{status}", 0) + 1
        latencies.append(latency * 1000)
        lags.append(lag)
    span = max((s + lat for _, _, s, lat, _ in samples), default=0.0)
    sent = len(samples)
    accepted = sum(c["accepted"] for c in by_kind.values())
    return {
        "target_rate_per_s": rate, "seconds": round(seconds, 1), "sent": sent,
        "accepted": accepted, "rejected": sent - accepted, "by_kind": by_kind,
        "achieved_rate_per_s": round(accepted / span, 2) if span else 0.0,
        "accepted_per_minute": [per_minute.get(m, 0) for m in range(int(seconds // 60) + 1)
                                if m in per_minute],
        "latency_ms": {"p50": round(percentile(latencies, 50), 2),
                       "p99": round(percentile(latencies, 99), 2),
                       "max": round(max(latencies, default=0.0), 2)},
        "behind_schedule_s": {"p99": round(percentile(lags, 99), 3),
                              "max": round(max(lags, default=0.0), 3)},
    }
