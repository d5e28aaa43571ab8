"""Benchmarks 1 and 2: acknowledgement latency and throughput of the webhook, beside alerta.

Targets, all up at once and idle when not under load:
  autofix-postgres  `autofix serve --workers 4` on PostgreSQL
  autofix-sqlite    `autofix serve --workers 1` on SQLite (it refuses more workers)
  alerta-postgres   alerta-server's /webhooks/prometheus, gunicorn gthread, 4 workers x 8
                    threads (as autofix), same PostgreSQL server, its own database
Each case runs every target once per repeat, back to back, in an order that alternates
between repeats; ratios are taken within a repeat, then their median is reported.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.common import aggregate, strip, write_result
from bench.loadgen import LoadSpec, run_load
from bench.servers import Server, Stack, alerta_venv

NAME = "webhook_ack"

# (alerts per notification, senders, max requests, max seconds, repeats)
FULL_CASES = [
    (1, 1, 20000, 4.0, 3), (1, 8, 20000, 4.0, 3), (1, 32, 20000, 4.0, 3),
    (100, 1, 4000, 4.0, 3), (100, 8, 4000, 4.0, 3), (100, 32, 4000, 4.0, 3),
    # 10,000-alert bodies: few requests. alerta needs ~9 s for one; 32 senders of these
    # would be 320,000 alerts per round (~5 min for alerta alone), so 10k stops at 8.
    (10000, 1, 2, 10.0, 2), (10000, 8, 8, 10.0, 2),
]
QUICK_CASES = [(1, 1, 200, 1.0, 2), (100, 2, 20, 1.0, 2)]


def start_targets(stack: Stack, quick: bool) -> tuple[list[Server], dict[str, Any]]:
    info: dict[str, Any] = {}
    targets = [stack.start_autofix("autofix-sqlite",
                                   f"sqlite:///{stack.workdir}/autofix-bench.db", 1)]
    if quick:
        return targets, info
    pg = stack.start_postgres()
    info["postgres_version"] = stack.postgres_version()
    targets.insert(0, stack.start_autofix("autofix-postgres",
                                          pg.create_database("autofix_bench"), 4))
    python, version = alerta_venv()
    if python is None:
        info["alerta_error"] = version
        return targets, info
    info["alerta_version"] = version
    pg.create_database("alerta_bench")
    url = pg.url("alerta_bench").replace("postgresql+psycopg2://", "postgresql://")
    try:
        targets.append(stack.start_alerta(python, url, 4))
    except Exception as exc:
        info["alerta_error"] = f"alerta-server {version} did not start: {exc}"
    return targets, info


def run(stack: Stack, quick: bool = False) -> dict[str, Any]:
    targets, info = start_targets(stack, quick)
    cases_out = []
    tag = 0
    for alerts, concurrency, max_requests, max_seconds, repeats in (
            QUICK_CASES if quick else FULL_CASES):
        per_target: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
        for repeat in range(repeats):
            order = targets if repeat % 2 == 0 else list(reversed(targets))
            for target in order:
                tag += 1
                spec = LoadSpec(target.url, target.webhook, target.headers, alerts,
                                concurrency, max_requests, max_seconds, tag,
                                timeout_s=300.0 if alerts >= 10000 else 60.0)
                result = run_load(spec)
                result["repeat"] = repeat
                per_target[target.name].append(result)
                print(f"  {NAME}: {alerts:>5} alerts x {concurrency:>2} senders "
                      f"{target.name:<17} rep {repeat}: {result['throughput_rps']:8.1f} req/s "
                      f"p50 {result['p50_ms']:8.1f} ms p99 {result['p99_ms']:8.1f} ms "
                      f"errors {result['errors']}", flush=True)
        case: dict[str, Any] = {
            "alerts": alerts, "concurrency": concurrency, "max_requests": max_requests,
            "max_seconds": max_seconds,
            "targets": {name: {"summary": aggregate(runs), "runs": [strip(r) for r in runs]}
                        for name, runs in per_target.items()},
        }
        if "alerta" in per_target:
            case["vs_alerta"] = {name: ratios(runs, per_target["alerta"])
                                 for name, runs in per_target.items() if name != "alerta"}
        cases_out.append(case)
    data = {
        "name": NAME, "quick": quick, "info": info,
        "targets": {t.name: {"workers": t.workers, "endpoint": t.webhook} for t in targets},
        "repeat_fraction": 0.5, "cases": cases_out,
    }
    write_result(NAME, data)
    return data


def ratios(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-repeat ratios (same repeat = measured back to back), then their median."""
    thr, p99, p50 = [], [], []
    for a, b in zip(ours, theirs, strict=False):
        if b["throughput_rps"] > 0:
            thr.append(a["throughput_rps"] / b["throughput_rps"])
        if b["p99_ms"] > 0:
            p99.append(a["p99_ms"] / b["p99_ms"])
            p50.append(a["p50_ms"] / b["p50_ms"])
    return {
        "throughput_ratio_median": statistics.median(thr) if thr else None,
        "p99_ratio_median": statistics.median(p99) if p99 else None,
        "p50_ratio_median": statistics.median(p50) if p50 else None,
        "throughput_ratios": thr, "p99_ratios": p99,
    }
