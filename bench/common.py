"""Helpers shared by the benchmarks: statistics over repeats, result files."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.loadgen import percentile

RESULTS = Path(__file__).resolve().parent / "results"
# --quick writes here, so that a smoke run (the test) never overwrites real results.
QUICK_RESULTS = RESULTS / "quick"
_results_dir = RESULTS


def set_results_dir(path: Path) -> None:
    global _results_dir
    _results_dir = path


def results_dir() -> Path:
    return _results_dir


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeated runs, and percentiles over every sample of every run."""
    pooled = [lat for run in runs for lat in run["latencies_ms"]]
    thr = [run["throughput_rps"] for run in runs]
    return {
        "repeats": len(runs),
        "requests": sum(run["requests"] for run in runs),
        "errors": sum(sum(run["errors"].values()) for run in runs),
        "throughput_rps_median": statistics.median(thr) if thr else 0.0,
        "throughput_rps_min": min(thr, default=0.0),
        "throughput_rps_max": max(thr, default=0.0),
        "alerts_per_s_median": statistics.median([r["alerts_per_s"] for r in runs]) if runs
        else 0.0,
        "p50_ms": percentile(pooled, 50),
        "p99_ms": percentile(pooled, 99),
        "max_ms": max(pooled, default=float("nan")),
        "p50_ms_median_of_runs": statistics.median([r["p50_ms"] for r in runs]) if runs
        else float("nan"),
        "p99_ms_median_of_runs": statistics.median([r["p99_ms"] for r in runs]) if runs
        else float("nan"),
    }


def strip(run: dict[str, Any]) -> dict[str, Any]:
    """A run without its raw samples (kept out of the JSON to keep it small)."""
    return {k: v for k, v in run.items() if k not in ("latencies_ms", "starts_s")}


def write_result(name: str, data: dict[str, Any]) -> Path:
    results_dir().mkdir(parents=True, exist_ok=True)
    path = results_dir() / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str, allow_nan=True) + "\n")
    return path
