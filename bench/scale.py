"""Cost as the work grows (issue #33): the same measurements at several database sizes
in one run, and each figure's growth as a ratio to the first size's (the empty database,
with --sizes 0,...).

    python -m bench.scale --sizes 0,20000 [--no-api] [--slices webhook,claim,prune]
        [--output bench/results/scale_ingest.json]

One durable PostgreSQL (fsync on, as bench/durable_ack.py runs it) migrated by the
product's own migrations, and the receiver as bench/servers.py starts it (4 gthread
workers, the shipped playbooks). For each size, in ascending order: seed up to that many
incidents (bench/scale_seed.py, SQL only), then measure
- the incident and action lists, p50/p99, with each filter (bench/scale_api.py);
- every PostgreSQL query of every shipped dashboard over 24 h, 7 d and 30 d, and the
  plans of the slowest (bench/scale_dashboards.py);
- the webhook's new-alert throughput and p99 under wrk, and the runner's claim latency
  with 10,000 queued runs (bench/scale_ingest.py);
then, once, a retention prune of 1M expired incidents under webhook load (its own
database; bench/scale_ingest.py). Writes bench/results/scale.json (or --output). Not in
bench/run.py's BENCHMARKS yet: minutes at 1M, half an hour at 10M.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS
from bench.scale_api import READ_TOKEN, time_api
from bench.scale_dashboards import time_dashboard_queries
from bench.scale_ingest import (
    PRUNE_INCIDENTS,
    claim_latency,
    load_average,
    prune_under_load,
    webhook_growth,
    webhook_load,
)
from bench.scale_seed import seed
from bench.servers import ROOT, Server, Stack

__all__ = ["growth", "main", "measure", "run"]

SHIPPED = ROOT / "receiver" / "playbooks.yml"
RESULT = RESULTS / "scale.json"
WORKERS = 4


def table_counts(url: str) -> dict[str, int]:
    from tests.harness.db import query

    return {table: int(query(url, f"SELECT count(*) FROM {table}")[0][0])
            for table in ("incidents", "runs", "actions")}


def newest_incident_with_actions(url: str) -> int:
    from tests.harness.db import query

    return int(query(url, "SELECT coalesce(max(incident_id), 0) FROM actions")[0][0])


def measure(url: str, server: Server | None, requests_per_case: int,
            repeats: int, dashboards: bool = True) -> dict[str, Any]:
    """The read side's figures at the database's current size."""
    figures: dict[str, Any] = {"rows": table_counts(url)}
    if server is not None:
        figures["api"] = time_api(server.url, newest_incident_with_actions(url),
                                  requests_per_case)
    if dashboards:
        figures["dashboards"] = time_dashboard_queries(url, repeats)
    return figures


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base <= 0 or math.isnan(value) or math.isnan(base):
        return None
    return round(value / base, 2)


def growth(base: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """Each figure of `later` as a ratio to the same figure of `base`."""
    out: dict[str, Any] = {"api": {}, "dashboards": {}}
    if "webhook" in base and "webhook" in later:
        out["webhook"] = webhook_growth(base["webhook"], later["webhook"])
    if "claim" in base and "claim" in later:
        out["claim"] = {p: _ratio(later["claim"][p], base["claim"][p])
                        for p in ("p50_ms", "p99_ms")}
    for route, by_case in later.get("api", {}).items():
        out["api"][route] = {
            case: {p: _ratio(f[p], base["api"][route][case][p]) for p in ("p50_ms", "p99_ms")}
            for case, f in by_case.items()}
    base_queries = {q["where"]: q for q in base.get("dashboards", {}).get("queries", [])}
    for query in later.get("dashboards", {}).get("queries", []):
        before = base_queries[query["where"]]["ranges"]
        out["dashboards"][query["where"]] = {
            label: _ratio(f["ms"], before.get(label, {}).get("ms"))
            for label, f in query["ranges"].items()}
    return out


SLICES = ("api", "dashboards", "webhook", "claim", "prune")


def run(sizes: list[int], api: bool = True, batch: int = 1_000_000,
        requests_per_case: int = 50, repeats: int = 3,
        slices: tuple[str, ...] = SLICES, webhook_repeats: int = 3,
        prune_incidents: int = PRUNE_INCIDENTS) -> dict[str, Any]:
    """At each size: seed, then (receiver up) the webhook and the API, then (receiver
    stopped: its runners would claim the queue) the dashboards and the claim. Last, the
    prune under load in its own database."""
    from receiver.store.migrate import upgrade
    from tests.harness.postgres import start_postgres

    if not api:
        slices = tuple(s for s in slices if s not in ("api", "webhook"))
    stack = Stack()
    try:
        stack.postgres = start_postgres(durable=True)
        url = stack.postgres.create_database("autofix_scale")
        upgrade(url)
        seeded: dict[str, Any] = {}
        at: dict[str, Any] = {}
        for n, size in enumerate(sizes):
            have = table_counts(url)["incidents"]
            if size > have:
                print(f"== seeding {size - have:,} incidents (to {size:,})", flush=True)
                seeded[str(size)] = seed(url, size - have, batch)
            print(f"== measuring at {size:,} incidents (load {load_average()})", flush=True)
            figures: dict[str, Any] = {"rows": table_counts(url), "load_average": load_average()}
            if "api" in slices or "webhook" in slices:
                server = stack.start_autofix(
                    f"autofix-scale-{size}", url, WORKERS,
                    env={"AUTOFIX_READ_TOKEN": READ_TOKEN}, playbooks=SHIPPED.read_text())
                try:
                    if "webhook" in slices:
                        figures["webhook"] = webhook_load(server, 1000 * (n + 1),
                                                          webhook_repeats)
                    if "api" in slices:
                        figures.update(measure(url, server, requests_per_case, repeats,
                                               dashboards=False))
                finally:
                    server.stop()
            if "dashboards" in slices:
                figures["dashboards"] = time_dashboard_queries(url, repeats)
            if "claim" in slices:
                figures["claim"] = claim_latency(url)
                print(f"   claim with {figures['claim']['queued']:,} queued: p50 "
                      f"{figures['claim']['p50_ms']} ms, p99 {figures['claim']['p99_ms']} ms",
                      flush=True)
            at[str(size)] = figures
        result: dict[str, Any] = {
            "name": "scale", "sizes": sizes, "base_size": sizes[0], "slices": list(slices),
            "postgres": "fsync=on, full_page_writes=on, synchronous_commit=on",
            "postgres_version": stack.postgres_version(), "workers": WORKERS,
            "seed": seeded, "at": at,
            "growth": {str(size): growth(at[str(sizes[0])], at[str(size)])
                       for size in sizes[1:]}}
        if "prune" in slices:
            result["prune"] = prune_under_load(stack, WORKERS, SHIPPED.read_text(), 90_000,
                                               incidents=prune_incidents)
        return result
    finally:
        stack.close()


def summary(result: dict[str, Any]) -> str:
    """What a reader wants on the terminal: seeding speed, then each size's figures with
    their growth (p99 for the API, the 30-day range for the dashboards)."""
    lines: list[str] = []
    for size, stats in result["seed"].items():
        lines.append(f"seed to {int(size):,}: {stats['incidents']:,} incidents, "
                     f"{stats['runs']:,} runs, {stats['actions']:,} actions in "
                     f"{stats['seconds']:.1f} s = {stats['rows_per_s']:,.0f} rows/s "
                     f"({stats['incidents_per_s']:,.0f} incidents/s); VACUUM ANALYZE "
                     f"{stats['vacuum_analyze_s']:.1f} s")
    for size, figures in result["at"].items():
        ratios = result["growth"].get(size, {"api": {}, "dashboards": {}})
        lines.append(f"-- at {int(size):,} incidents: rows {figures['rows']}, load average "
                     f"{figures.get('load_average')}")
        lines += _write_lines(figures, ratios)
        lines += _api_lines(figures.get("api", {}), ratios["api"])
        if "dashboards" in figures:
            lines += _dashboard_lines(figures["dashboards"], ratios["dashboards"])
    if "prune" in result:
        lines += _prune_lines(result["prune"])
    return "\n".join(lines)


def _write_lines(figures: dict[str, Any], ratios: dict[str, Any]) -> list[str]:
    lines = []
    if "webhook" in figures:
        w, g = figures["webhook"], ratios.get("webhook", {})
        lines.append(f"   webhook new alerts: {w['throughput_rps_median']:.1f} req/s (median of "
                     f"{w['repeats']}), p99 {w['p99_ms']:.1f} ms"
                     + (f"  (throughput x{g['throughput_ratio']}, p99 x{g['p99_ratio']})"
                        if g else ""))
    if "claim" in figures:
        c = figures["claim"]
        lines.append(f"   claim with {c['queued']:,} queued: p50 {c['p50_ms']:.2f} ms, "
                     f"p99 {c['p99_ms']:.2f} ms, max {c['max_ms']:.2f} ms")
    return lines


def _prune_lines(prune: dict[str, Any]) -> list[str]:
    out = prune["prune"]
    return [f"-- prune of {prune['seeded']['incidents']:,} expired incidents "
            f"({prune['retention_days']} days): {out.get('deleted') or out.get('error')} "
            f"in {out['seconds']} s; {prune['expired_left']:,} expired left",
            f"   webhook p99 without {prune['webhook_without']['p99_ms']:.1f} ms, during "
            f"{prune['webhook_during']['p99_ms']:.1f} ms (worst 5 s window "
            f"{prune['worst_window_p99_ms']} ms); throughput without "
            f"{prune['webhook_without']['throughput_rps_median']:.1f}, during "
            f"{prune['webhook_during']['throughput_rps_median']:.1f} req/s",
            f"   longest lock wait: {prune['lock_wait_max_ms']}; load {prune['load_average']}"]


def _api_lines(api: dict[str, Any], ratios: dict[str, Any]) -> list[str]:
    lines = []
    for route, by_case in api.items():
        for case, f in by_case.items():
            ratio = ratios.get(route, {}).get(case, {}).get("p99_ms")
            lines.append(f"   {route:<18} {case:<12} p50 {f['p50_ms']:7.1f} ms  "
                         f"p99 {f['p99_ms']:7.1f} ms  total {f['total']}"
                         + ("+" if f.get("total_exact") is False else "")
                         + (f"  (p99 x{ratio})" if ratio is not None else ""))
    return lines


def _dashboard_lines(dashboards: dict[str, Any], ratios: dict[str, Any]) -> list[str]:
    lines = []
    for query in dashboards["queries"]:
        times = "  ".join(f"{label} {r['ms']:7.2f} ms" for label, r in query["ranges"].items())
        ratio = ratios.get(query["where"], {}).get("30d")
        lines.append(f"   {query['where'][:58]:<58} {times}"
                     + (f"  (30d x{ratio})" if ratio is not None else "")
                     + (f"  ERROR {query['error']}" if query["error"] else ""))
    slowest = ", ".join(f"{s['where']} [{s['range']}] {s['ms']:.2f} ms"
                        for s in dashboards["slowest"])
    lines.append(f"   slowest: {slowest}")
    return lines


def _sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not sizes or any(s < 0 for s in sizes) or sizes != sorted(set(sizes)):
        raise argparse.ArgumentTypeError("ascending distinct sizes >= 0, e.g. 0,20000")
    return sizes


def _slices(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [s for s in chosen if s not in SLICES]
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(f"slices among {', '.join(SLICES)}")
    return chosen


# `make bench`: the sizes #33's goals are set at; the smoke run: tiny, every slice.
FULL_SIZES = [0, 1_000_000, 10_000_000]


def run_mode(quick: bool) -> dict[str, Any]:
    if quick:
        return run([0, 2_000], requests_per_case=5, repeats=1, webhook_repeats=1,
                   prune_incidents=2_000)
    return run(FULL_SIZES)


def main(argv: list[str] | None = None) -> int:
    from bench.run import run_meta

    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--sizes", type=_sizes, default=[0, 20_000],
                        help="incident counts to measure at, ascending (default 0,20000)")
    parser.add_argument("--no-api", action="store_true",
                        help="no receiver: the dashboards' queries only")
    parser.add_argument("--batch", type=int, default=1_000_000,
                        help="incidents per seeding transaction")
    parser.add_argument("--requests", type=int, default=50, help="requests per API case")
    parser.add_argument("--repeats", type=int, default=3, help="runs per dashboard query")
    parser.add_argument("--slices", type=_slices, default=SLICES,
                        help=f"what to measure, comma-separated (default {','.join(SLICES)})")
    parser.add_argument("--webhook-repeats", type=int, default=3,
                        help="5 s wrk runs per size")
    parser.add_argument("--prune-incidents", type=int, default=PRUNE_INCIDENTS,
                        help="expired incidents the prune slice seeds and prunes")
    parser.add_argument("--output", type=Path, default=RESULT,
                        help="results file (default bench/results/scale.json)")
    args = parser.parse_args(argv)
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so PostgreSQL and the receiver stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    meta = run_meta("bench.scale", argv)
    started = time.monotonic()
    result = run(args.sizes, api=not args.no_api, batch=args.batch,
                 requests_per_case=args.requests, repeats=args.repeats, slices=args.slices,
                 webhook_repeats=args.webhook_repeats, prune_incidents=args.prune_incidents)
    result["meta"] = {**meta, "postgres_version": result.pop("postgres_version"),
                      "seconds": round(time.monotonic() - started, 1)}
    output = args.output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(summary(result))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
