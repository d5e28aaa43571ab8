"""Soak (issue #33): a receiver that has been up for a while, under steady load.

    python -m bench.soak --minutes 60     # the full soak -> bench/results/soak.json
    python -m bench.soak                  # 10 minutes (what `make bench` runs)
    python -m bench.soak --quick --minutes 0.2 --rate 20 --pool 0   # smoke, results/quick/

What ships: `autofix serve --workers 4` (the shipped gunicorn config: 4 gthread workers,
8 threads), the shipped playbooks, durable PostgreSQL (fsync on), Slack (a local stand-in,
so that every incident's message goes through the outbox), a private dockerd with a small
pool of opted-in busybox containers. The load (bench/soak_load.py): `--rate` notifications
per second (default 100), a third each new, repeated and resolved alerts, 5% of them
TargetDown on the pool's containers (the restart playbook; its cooldown and breaker skip
most). Every `--interval` seconds (60): each worker's RSS and open fds (/proc), runs
stuck (not finished `STUCK_AFTER_S` after being queued), the outbox backlog. Then, once
the load stops and the outbox has drained (at most `--drain` s): notifications lost
(each accepted one is a notifications row, each new alert an incident, each resolve a
resolved incident), runs stuck, outbox left. Goals: RSS and fds of each worker within 10%
of their value after the first 5 minutes (half the run, if shorter); 0 lost, 0 stuck,
outbox drained.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.servers import ROOT, Stack

__all__ = ["evaluate", "main", "proc_sample", "run"]

SHIPPED = ROOT / "receiver" / "playbooks.yml"
WORKERS = 4
# The restart playbook's action timeouts (restart 10 s + wait_healthy 60 s) and 50 s more:
# no run of the shipped playbooks may still be unfinished this long after it was queued.
STUCK_AFTER_S = 120
DRIFT = 0.10  # RSS and fds within 10% of their value after the warm-up
WARMUP_S = 300
SLACK = {"AUTOFIX_SLACK_BOT_TOKEN": "xoxb-soak-1234-abcdefgh", "AUTOFIX_SLACK_CHANNEL": "#ops"}
DB_SAMPLE = {
    "outbox_pending": "select count(*) from notification_outbox where status = 'pending'",
    "outbox_failed": "select count(*) from notification_outbox where status = 'failed'",
    "outbox_sent": "select count(*) from notification_outbox where status = 'sent'",
    "runs_unfinished": "select count(*) from runs where finished_at is null",
    "runs_stuck": "select count(*) from runs where finished_at is null and queued_at < "
                  f"now() - interval '{STUCK_AFTER_S} seconds'",
    "runs": "select count(*) from runs",
    "ingest_pending": "select count(*) from notifications where ingest_state = 'pending'",
    "incidents": "select count(*) from incidents",
}


def proc_sample(pid: int) -> dict[str, int] | None:
    """RSS (KiB) and open file descriptors of one process, from /proc; None once gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("VmRSS:"))
        return {"rss_kib": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}
    except (OSError, StopIteration):
        return None


def _db(conn: Any) -> dict[str, int]:
    from sqlalchemy import text

    out = {key: int(conn.execute(text(sql)).scalar()) for key, sql in DB_SAMPLE.items()}
    conn.rollback()
    return out


def evaluate(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    """Per worker: its RSS and fds at the first sample at or after `warmup_s`, and the
    largest relative change from them in any later sample."""
    workers: dict[str, dict[str, Any]] = {}
    base_index = next((i for i, s in enumerate(samples) if s["t_s"] >= warmup_s), None)
    if base_index is None:
        return {"baseline_t_s": None, "workers": {}, "within": None}
    base = samples[base_index]
    for pid, first in base["workers"].items():
        later = [s["workers"].get(pid) for s in samples[base_index + 1:]]
        entry: dict[str, Any] = {"baseline": first, "samples_after": len(later)}
        if any(v is None for v in later):
            entry["gone"] = True  # the worker died or was replaced: a finding in itself
        for key in ("rss_kib", "fds"):
            values = [v[key] for v in later if v is not None]
            entry[f"{key}_max_change"] = (round(max(abs(v - first[key]) / first[key]
                                                    for v in values), 4)
                                          if values and first[key] else None)
            entry[f"{key}_last"] = values[-1] if values else None
        workers[pid] = entry
    changes = [w[f"{k}_max_change"] for w in workers.values() for k in ("rss_kib", "fds")]
    within = (all(c is not None and c <= DRIFT for c in changes)
              and not any(w.get("gone") for w in workers.values())) if workers else None
    return {"baseline_t_s": base["t_s"], "workers": workers, "within": within}


def _counts(url: str, tag: int) -> dict[str, int]:
    from bench.soak_load import ALERTNAME
    from tests.harness.db import query

    prefix = f"{tag:04x}"
    row = query(url, "select "
                "count(*) filter (where alertname = :a and substr(fingerprint, 5, 1) in "
                "('0', 'e')), "
                "count(*) filter (where alertname = :a and resolved_at is not null), "
                "count(*) filter (where alertname = 'TargetDown'), "
                "(select count(*) from notifications), "
                "(select count(*) from notifications where ingest_state = 'failed') "
                "from incidents where fingerprint like :p", a=ALERTNAME, p=prefix + "%")[0]
    return {"new_incidents": int(row[0]), "resolved_incidents": int(row[1]),
            "restart_incidents": int(row[2]), "notifications": int(row[3]),
            "ingest_failed": int(row[4])}


def _outcomes(url: str) -> dict[str, dict[str, int]]:
    """What the runs came to: the guards skip most TargetDown runs, a few restart."""
    from tests.harness.db import query

    return {"runs_by_status": {str(s): int(n) for s, n in query(
                url, "select status, count(*) from runs group by status")},
            "restarts_by_outcome": {str(o): int(n) for o, n in query(
                url, "select outcome, count(*) from actions where action = 'restart' "
                     "group by outcome")}}


def lost(sends: dict[str, Any], counts: dict[str, int]) -> dict[str, int]:
    """Accepted notifications the database does not show, by what should show them; and
    rejected ones (not accepted at all)."""
    by = sends["by_kind"]

    def ok(kind: str) -> int:
        return int(by.get(kind, {}).get("accepted", 0))

    return {
        "rejected": sends["rejected"],
        "notifications_rows": max(0, sends["accepted"] - counts["notifications"]),
        "new_alerts": max(0, ok("new") + ok("extra") - counts["new_incidents"]),
        "resolves": max(0, ok("resolve") - counts["resolved_incidents"]),
        "restart_alerts": max(0, ok("restart") - counts["restart_incidents"]),
        "ingest_failed": counts["ingest_failed"],
    }


def run(minutes: float = 10.0, rate: float = 100.0, pool: int = 3, interval_s: float = 60.0,
        drain_s: float = 180.0, warmup_s: float | None = None, connections: int = 16
        ) -> dict[str, Any]:
    from sqlalchemy import create_engine

    from bench.soak_load import run_sender, summarize_sends
    from tests.harness.postgres import start_postgres
    from tests.harness.slack_stub import SlackStub

    seconds = minutes * 60
    warmup = WARMUP_S if warmup_s is None else warmup_s
    warmup = min(warmup, seconds / 2)
    stack = Stack()
    slack = SlackStub().start()
    engine = None
    try:
        stack.postgres = start_postgres(durable=True)
        url = stack.postgres.create_database("autofix_soak")
        env = {**SLACK, "AUTOFIX_SLACK_API_URL": f"{slack.url}/api/"}
        names: list[str] = []
        if pool:
            from tests.harness.busybox import ensure_busybox_image
            from tests.harness.containers import run_container

            dockerd = stack.start_dockerd()
            client = dockerd.client()
            ensure_busybox_image(client)
            names = [run_container(client).name for _ in range(pool)]
            env["AUTOFIX_DOCKER_HOST"] = dockerd.url
        server = stack.start_autofix("autofix-soak", url, WORKERS, env=env,
                                     playbooks=SHIPPED.read_text())
        workers = [pid for pid in server.all_pids() if pid != server.process.pid]
        engine = create_engine(url, pool_size=1, max_overflow=0)
        tag = int(time.time()) & 0xFFFF
        go_wall, collect = run_sender(server.url, server.webhook, server.headers, names,
                                      rate, seconds, tag, connections)
        samples: list[dict[str, Any]] = []
        slack_requests = 0

        def sample() -> None:
            nonlocal slack_requests
            slack_requests += len(slack.take())
            with engine.connect() as conn:
                db = _db(conn)
            samples.append({
                "t_s": round(time.time() - go_wall, 1),
                "workers": {str(pid): proc_sample(pid) for pid in workers},
                "master": proc_sample(server.process.pid),
                "worker_pids_now": sorted(p for p in server.pids()
                                          if p != server.process.pid),
                **db, "slack_requests": slack_requests,
                # The machine is shared: how busy it was, beside each sample.
                "load_1m": round(os.getloadavg()[0], 1)})
            now = samples[-1]["workers"].values()
            print(f"  t={samples[-1]['t_s']:7.1f}s rss MiB "
                  f"{[round(w['rss_kib'] / 1024, 1) if w else None for w in now]}"
                  f" fds {[w['fds'] if w else None for w in now]} "
                  f"outbox {db['outbox_pending']} unfinished {db['runs_unfinished']} "
                  f"stuck {db['runs_stuck']}", flush=True)

        # Behind schedule, the sender goes on past `seconds` (it never skips a request):
        # the samples go on until it is done.
        collected: list[Any] = []
        waiter = threading.Thread(target=lambda: collected.append(collect()), daemon=True)
        waiter.start()
        time.sleep(max(0.0, go_wall - time.time()))
        sample()
        next_at = go_wall + interval_s
        while waiter.is_alive():
            waiter.join(max(0.0, next_at - time.time()))
            if time.time() >= next_at - 0.01:
                sample()
                next_at += interval_s
        if not collected:
            raise RuntimeError("the load generator returned nothing")
        sends = summarize_sends(collected[0], rate, seconds)
        load_stopped = time.time()
        drained_after = None
        while time.time() - load_stopped < drain_s:
            with engine.connect() as conn:
                db = _db(conn)
            if not db["outbox_pending"] and not db["ingest_pending"] and not (
                    db["runs_unfinished"]):
                drained_after = round(time.time() - load_stopped, 1)
                break
            time.sleep(1)
        sample()
        samples[-1]["after_load"] = True
        final = {k: v for k, v in samples[-1].items() if k in DB_SAMPLE}
        counts = _counts(url, tag)
        outcomes = _outcomes(url)
        missing = lost(sends, counts)
        log = (stack.workdir / "autofix-soak" / "receiver.log").read_text(errors="replace")
        errors = [line[:300] for line in log.splitlines()
                  if '"level": "error"' in line.lower() or "Traceback" in line]
        memory = evaluate([s for s in samples if not s.get("after_load")], warmup)
        result = {
            "name": "soak", "minutes": minutes, "rate_per_s": rate, "pool_containers": pool,
            "interval_s": interval_s, "warmup_s": warmup, "connections": connections,
            "drain_limit_s": drain_s,
            "stuck_after_s": STUCK_AFTER_S, "workers": WORKERS,
            "receiver": "autofix serve --workers 4 (gthread x 8), shipped playbooks, durable "
                        "PostgreSQL (fsync on), Slack stand-in, private dockerd",
            "load": sends, "samples": samples, "memory": memory,
            "database": counts, "final": final, "lost": missing, **outcomes,
            "lost_total": sum(missing.values()), "drained_after_s": drained_after,
            "slack_requests": slack_requests,
            "receiver_log_errors": len(errors), "receiver_log_errors_first": errors[:5],
        }
        result["goals_met"] = {
            "rss_fds_within_10pct": memory["within"],
            "lost_0": result["lost_total"] == 0,
            "stuck_0": final["runs_stuck"] == 0
            and max(s["runs_stuck"] for s in samples) == 0,
            "outbox_drained": drained_after is not None,
        }
        return result
    finally:
        if engine is not None:
            engine.dispose()
        slack.stop()
        stack.close()


def main(argv: list[str] | None = None) -> int:
    from bench.common import QUICK_RESULTS, RESULTS
    from bench.run import run_meta

    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="minutes of load (default 10, what `make bench` runs; the "
                             "issue's full soak is 60)")
    parser.add_argument("--rate", type=float, default=100.0, help="notifications per second")
    parser.add_argument("--pool", type=int, default=3,
                        help="opted-in containers on a private dockerd (0: no dockerd, no "
                             "TargetDown alerts)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--drain", type=float, default=180.0,
                        help="seconds to wait for the outbox and runs once the load stops")
    parser.add_argument("--connections", type=int, default=16,
                        help="sender connections (open loop: enough that the sender never "
                             "waits on the receiver at the target rate)")
    parser.add_argument("--quick", action="store_true",
                        help="write bench/results/quick/soak.json (a smoke run)")
    args = parser.parse_args(argv)
    if min(args.minutes, args.rate, args.interval, args.connections) <= 0 or args.pool < 0:
        parser.error("--minutes, --rate, --interval and --connections must be > 0, "
                     "--pool >= 0")
    # SIGTERM (timeout, kill) unwinds like Ctrl-C: every server and container is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    meta = run_meta("bench.soak", argv)
    began = time.monotonic()
    try:
        data = run(args.minutes, args.rate, args.pool, args.interval, args.drain,
                   connections=args.connections)
        status = 0
    except Exception as exc:
        data = {"name": "soak", "error": f"{type(exc).__name__}: {exc}"}
        status = 1
    data["quick"] = args.quick
    data["meta"] = {**meta, "seconds": round(time.monotonic() - began, 1)}
    out = (QUICK_RESULTS if args.quick else RESULTS) / "soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(summary(data))
    print(f"wrote {out}")
    return status


def summary(data: dict[str, Any]) -> str:
    if "error" in data:
        return f"soak failed: {data['error']}"
    load, memory = data["load"], data["memory"]
    lines = [f"sent {load['sent']:,} accepted {load['accepted']:,} at "
             f"{load['achieved_rate_per_s']}/s (target {load['target_rate_per_s']:g}/s), "
             f"p99 {load['latency_ms']['p99']} ms",
             f"lost {data['lost_total']} {data['lost']}",
             f"stuck {data['final']['runs_stuck']}, outbox drained after "
             f"{data['drained_after_s']} s (left {data['final']['outbox_pending']})"]
    for pid, w in memory["workers"].items():
        lines.append(f"worker {pid}: rss {w['baseline']['rss_kib']} KiB max change "
                     f"{w['rss_kib_max_change']}, fds {w['baseline']['fds']} max change "
                     f"{w['fds_max_change']}")
    lines.append(f"goals {data['goals_met']}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
