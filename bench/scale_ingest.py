"""bench/scale.py's write-side slices (issue #33): at each database size, the webhook's
new-alert throughput and p99 under wrk and the runner's claim latency with 10,000 queued
runs; once, a retention prune of 1M expired incidents while wrk drives the webhook.

- webhook: as bench/durable_ack.py (8 wrk connections, every request a new alert of its
  own group, shipped playbooks, 4 gthread workers, durable PostgreSQL): 2 s discarded,
  then `repeats` runs of 5 s; throughput is their median, p99 over every sample.
- claim: receiver/runtime/runner.claim_next itself, against the seeded database with the
  receiver stopped (its runners would claim the queue too). After each claim the bench
  finishes that run by SQL, so the global cap never answers "nothing" instead.
- prune: its own database, seeded with 1M incidents whose 90 days ended 92 days ago (so
  their ids are the oldest, as in a real database), pruned by receiver/store/migrate.prune
  with a 91-day retention while wrk windows of 5 s run back to back; a sampler reads
  pg_locks.waitstart every 20 ms for the longest lock wait of any other backend, and of
  those blocked by the prune's own connections (application_name).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from bench.common import aggregate, strip
from bench.loadgen import LoadSpec, percentile
from bench.servers import Server
from bench.wrk_load import run_wrk

__all__ = ["claim_latency", "load_average", "prune_goals", "prune_under_load",
           "queue_runs", "webhook_growth", "webhook_load"]

CONCURRENCY = 8
WINDOW_S = 5
WARMUP_S = 2
QUEUED = 10_000
CLAIM_SAMPLES = 200
PRUNE_INCIDENTS = 1_000_000
PRUNE_SEED_END_AGO = timedelta(days=92)
RETENTION = timedelta(days=91)
SAMPLE_S = 0.02
PRUNE_APP = "autofix-bench-prune"
GOALS = {"throughput_ratio_min": 0.8, "p99_ratio_max": 1.5, "prune_p99_ms": 100.0,
         "prune_lock_wait_ms": 100.0}


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages: the machine is shared, say how busy it was."""
    return [round(x, 2) for x in os.getloadavg()]


def _spec(server: Server, tag: int, seconds: float) -> LoadSpec:
    return LoadSpec(server.url, server.webhook, server.headers, 1, CONCURRENCY, 10**9,
                    seconds, tag, repeat_every=1)


def webhook_load(server: Server, tag: int, repeats: int = 3) -> dict[str, Any]:
    """Throughput (median of the runs) and p50/p99 (pooled) of new alerts."""
    run_wrk(_spec(server, tag, WARMUP_S))  # discarded: each worker opens its connections
    runs = []
    for k in range(repeats):
        runs.append(run_wrk(_spec(server, tag + 1 + k, WINDOW_S)))
        print(f"   webhook rep {k}: {runs[-1]['throughput_rps']:.1f} req/s, p99 "
              f"{runs[-1]['p99_ms']:.1f} ms", flush=True)
    return {"concurrency": CONCURRENCY, "window_s": WINDOW_S, **aggregate(runs),
            "runs": [strip(r) for r in runs], "load_average": load_average()}


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base or base <= 0 or value != value or base != base:
        return None
    return round(value / base, 2)


def webhook_growth(base: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """Throughput and p99 of `later` as ratios to `base`'s (same run), against the goals."""
    thr = _ratio(later["throughput_rps_median"], base["throughput_rps_median"])
    p99 = _ratio(later["p99_ms"], base["p99_ms"])
    return {"throughput_ratio": thr, "p99_ratio": p99,
            "throughput_ok": thr is not None and thr >= GOALS["throughput_ratio_min"],
            "p99_ok": p99 is not None and p99 <= GOALS["p99_ratio_max"]}


QUEUE_RUNS = """
INSERT INTO runs (incident_id, playbook, target, trigger, alert_status, status, queued_at,
                  dry_run, lane, priority)
SELECT :incident, 'restart-on-target-down', 'claim-' || lpad((g % 300)::text, 3, '0'),
       'alert', 'firing', 'queued', now() - (:count - g) * interval '10 milliseconds', false,
       CASE WHEN g % 10 = 0 THEN 'light' ELSE 'act' END,
       CASE WHEN g % 50 = 0 THEN 1 ELSE 0 END
FROM generate_series(1, :count) AS g
"""


def queue_runs(database: Any, count: int) -> int:
    """One holder incident with `count` queued runs (300 targets, 1 in 10 light, 1 in 50
    of priority 1); returns the incident's id (deleting it removes them all)."""
    from sqlalchemy import text

    from receiver.store.models import Incident, utcnow

    with database.session("bench") as session:
        incident = Incident(fingerprint="bench-claim-queue", starts_at=utcnow(),
                            alertname="BenchClaimQueue", labels={}, annotations={},
                            status="remediating", target="claim-000")
        session.add(incident)
        session.flush()
        session.execute(text(QUEUE_RUNS), {"incident": incident.id, "count": count})
        return int(incident.id)


def claim_latency(url: str, queued: int = QUEUED, samples: int = CLAIM_SAMPLES,
                  max_concurrent_runs: int = 4) -> dict[str, Any]:
    """p50/p99 of claim_next with `queued` runs waiting (the receiver must be stopped)."""
    from sqlalchemy import text

    from receiver.config.settings import Settings
    from receiver.runtime.runner import claim_next
    from receiver.store.engine import Database
    from receiver.store.models import utcnow

    database = Database(url)
    # claim_next reads only these three of Services; the settings are the real class.
    settings = Settings(max_concurrent_runs=max_concurrent_runs)
    services = SimpleNamespace(database=database, clock=utcnow, settings=settings)
    holder = queue_runs(database, queued + samples)
    latencies: list[float] = []
    lanes = {"act": 0, "light": 0, "none": 0}
    try:
        for _ in range(samples):
            started = time.perf_counter()
            run_id = claim_next(services, "bench:claim")  # type: ignore[arg-type]
            latencies.append((time.perf_counter() - started) * 1000)
            if run_id is None:
                lanes["none"] += 1
                continue
            with database.session("bench") as session:
                lane = session.execute(text(
                    "UPDATE runs SET status = 'succeeded', finished_at = now() "
                    "WHERE id = :id RETURNING lane"), {"id": run_id}).scalar_one()
            lanes[lane] += 1
    finally:
        with database.session("bench") as session:
            session.execute(text("DELETE FROM incidents WHERE id = :id"), {"id": holder})
        database.engine.dispose()
    return {"queued": queued, "samples": samples, "claimed_by_lane": lanes,
            "p50_ms": round(percentile(latencies, 50), 3),
            "p99_ms": round(percentile(latencies, 99), 3),
            "max_ms": round(max(latencies), 3), "load_average": load_average()}


LOCK_WAITS = f"""
SELECT coalesce(max(extract(epoch FROM clock_timestamp() - l.waitstart)), 0),
       coalesce(max(extract(epoch FROM clock_timestamp() - l.waitstart)) FILTER (
           WHERE EXISTS (SELECT 1 FROM pg_stat_activity b
                         WHERE b.pid = ANY (pg_blocking_pids(l.pid))
                           AND b.application_name = '{PRUNE_APP}')), 0)
FROM pg_locks l
WHERE NOT l.granted AND l.waitstart IS NOT NULL AND l.pid <> pg_backend_pid()
"""


class LockSampler(threading.Thread):
    """The longest lock wait seen (s): of any backend, and of those the prune blocks."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.any_s = 0.0
        self.by_prune_s = 0.0
        self.samples = 0

    def run(self) -> None:
        from sqlalchemy import create_engine

        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                while not self.stop.wait(SAMPLE_S):
                    any_s, by_prune_s = conn.exec_driver_sql(LOCK_WAITS).one()
                    self.any_s = max(self.any_s, float(any_s))
                    self.by_prune_s = max(self.by_prune_s, float(by_prune_s))
                    self.samples += 1
        finally:
            engine.dispose()


def _windows(server: Server, tag: int, until: threading.Event, limit: int
             ) -> list[dict[str, Any]]:
    runs = []
    while not until.is_set() and len(runs) < limit:
        tag += 1
        runs.append(run_wrk(_spec(server, tag, WINDOW_S)))
        print(f"   prune window {len(runs)}: {runs[-1]['throughput_rps']:.1f} req/s, p99 "
              f"{runs[-1]['p99_ms']:.1f} ms", flush=True)
    return runs


def prune_under_load(stack: Any, workers: int, playbooks: str, tag: int,
                     incidents: int = PRUNE_INCIDENTS, limit_s: float = 1800.0,
                     baseline_windows: int = 3) -> dict[str, Any]:
    """Seed `incidents` expired ones in their own database, then the webhook's p99 and
    the longest lock wait without the prune and during it."""
    from bench.scale_seed import seed
    from receiver.store.engine import Database
    from receiver.store.migrate import prune, upgrade
    from tests.harness.db import query

    url = stack.postgres.create_database("autofix_scale_prune")
    upgrade(url)
    print(f"== prune: seeding {incidents:,} expired incidents", flush=True)
    seeded = seed(url, incidents, end_ago=PRUNE_SEED_END_AGO)
    server = stack.start_autofix("autofix-scale-prune", url, workers, playbooks=playbooks)
    try:
        run_wrk(_spec(server, tag, WARMUP_S))
        quiet = LockSampler(url)
        quiet.start()
        before = [run_wrk(_spec(server, tag + 1 + k, WINDOW_S)) for k in range(baseline_windows)]
        quiet.stop.set()
        quiet.join()
        sampler = LockSampler(url)
        sampler.start()
        finished = threading.Event()
        outcome: dict[str, Any] = {}
        stop = threading.Event()

        def do_prune() -> None:
            database = Database(url + f"?application_name={PRUNE_APP}")
            started = time.perf_counter()
            try:
                outcome["deleted"] = prune(database, RETENTION, stop=stop)
            except Exception as error:  # reported, the load stops
                outcome["error"] = repr(error)
            finally:
                outcome["seconds"] = round(time.perf_counter() - started, 1)
                database.engine.dispose()
                finished.set()

        load_before = load_average()
        pruner = threading.Thread(target=do_prune, daemon=True)
        pruner.start()
        timer = threading.Timer(limit_s, stop.set)
        timer.start()
        during = _windows(server, tag + 100, finished, int(limit_s / WINDOW_S) + 2)
        pruner.join()
        timer.cancel()
        sampler.stop.set()
        sampler.join()
        left = int(query(url, "SELECT count(*) FROM incidents WHERE last_seen < now() - "
                              f"interval '{RETENTION.days} days' AND status IN "
                              "('resolved', 'closed')")[0][0])
    finally:
        server.stop()
    without, with_prune = aggregate(before), aggregate(during)
    return {
        "seeded": seeded, "retention_days": RETENTION.days, "prune": outcome,
        "stopped_at_limit": stop.is_set(), "limit_s": limit_s, "expired_left": left,
        "windows_during": len(during), "window_s": WINDOW_S,
        "webhook_without": without, "webhook_during": with_prune,
        "worst_window_p99_ms": max((r["p99_ms"] for r in during), default=None),
        "window_p99s_ms": [round(r["p99_ms"], 1) for r in during],
        "lock_wait_max_ms": {"without_prune": round(quiet.any_s * 1000, 1),
                             "during_any": round(sampler.any_s * 1000, 1),
                             "during_blocked_by_prune": round(sampler.by_prune_s * 1000, 1)},
        "lock_samples": sampler.samples, "sample_every_s": SAMPLE_S,
        "load_average": {"before": load_before, "after": load_average()},
        "goals": prune_goals(with_prune["p99_ms"], sampler.by_prune_s * 1000),
    }


def prune_goals(p99_ms: float, lock_wait_ms: float) -> dict[str, bool]:
    return {"p99_ok": p99_ms <= GOALS["prune_p99_ms"],
            "lock_wait_ok": lock_wait_ms <= GOALS["prune_lock_wait_ms"]}
