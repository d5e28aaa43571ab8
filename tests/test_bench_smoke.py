"""`python -m bench.run --quick --only webhook_ack` runs and writes medians and p99 (no timing
assertions: the numbers depend on the machine)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "quick" / "webhook_ack.json"  # never the real ones


@pytest.mark.slow
def test_quick_webhook_ack_writes_medians_and_p99() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--only",
                           "webhook_ack"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    data = json.loads(RESULT.read_text())
    assert data["name"] == "webhook_ack" and data["quick"] is True
    assert data["meta"]["command"].endswith("--quick --only webhook_ack")
    assert data["cases"], "no cases were run"
    for case in data["cases"]:
        for target in case["targets"].values():
            summary = target["summary"]
            assert summary["errors"] == 0
            for key in ("throughput_rps_median", "p50_ms", "p99_ms", "p50_ms_median_of_runs",
                        "p99_ms_median_of_runs"):
                assert isinstance(summary[key], float) and not math.isnan(summary[key]), key
            assert summary["p99_ms"] >= summary["p50_ms"] > 0
            assert len(target["runs"]) == summary["repeats"] >= 2


def test_wrk_sends_a_new_alert_with_every_request(tmp_path) -> None:
    """bench/wrk_load.py (the durable benchmark's load): every request it counts is a new
    incident, none failed, and its latency histogram comes back whole."""
    import sqlite3

    from bench.loadgen import LoadSpec
    from bench.servers import Stack
    from bench.wrk_load import run_wrk
    from tests.harness.procs import require_binary

    require_binary("wrk")
    database = tmp_path / "wrk.db"
    stack = Stack()
    try:
        server = stack.start_autofix("wrk", f"sqlite:///{database}", 1)
        result = run_wrk(LoadSpec(server.url, server.webhook, server.headers, 1, 4, 0, 1.0,
                                  7, repeat_every=1))
    finally:
        stack.close()
    assert result["errors"] == {} and result["requests"] > 0
    assert len(result["latencies_ms"]) >= result["requests"]  # + wrk's corrections
    assert result["p99_ms"] >= result["p50_ms"] > 0
    with sqlite3.connect(database) as db:
        incidents, fingerprints = db.execute(
            "SELECT count(*), count(DISTINCT fingerprint) FROM incidents").fetchone()
    # Requests still in flight when wrk stopped are filed but not counted by it.
    assert fingerprints == incidents
    assert result["requests"] <= incidents <= result["requests"] + 4


@pytest.mark.e2e
@pytest.mark.slow
def test_quick_fleet_writes_every_figure() -> None:
    """`make bench`'s fleet step in its smoke mode (`python -m bench.run --quick --only
    fleet`: 50 containers, about 2 minutes) runs the whole fleet loop and writes each
    figure. No timing is asserted; only what holds on any machine: every hung container of
    the guard-off storm came back, and no storm request named a container that was not
    hung."""
    from tests.harness.procs import require_binary
    from tests.harness.root_harness import require_root

    require_root("the fleet benchmark")
    for tool in ("dockerd", "prometheus", "prometheus-alertmanager", "haproxy", "busybox",
                 "initdb"):
        require_binary(tool)
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--only", "fleet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((ROOT / "bench" / "results" / "quick" / "fleet.json").read_text())
    assert data["name"] == "fleet" and data["quick"] is True and data["containers"] == 50
    assert data["meta"]["command"].endswith("bench.run --quick --only fleet")
    assert data["scrape_duration"]["max_s"] >= data["scrape_duration"]["p50_s"] > 0
    assert data["idle_docker_calls"]["per_s"] is not None
    [hang] = data["hang"]["runs"]
    assert hang["answering_s"] is not None and hang["firing_to_restart_s"] is not None
    guard_off = data["storm"]["host_storm_guard_off"]
    assert guard_off["answering_again"] == guard_off["hung"] > 0
    for phase in data["storm"].values():
        assert phase["docker_calls"]["requests"] > 0
        assert phase["docker_calls"]["other_containers_touched"] == []


@pytest.mark.slow
def test_soak_smoke_loses_nothing_and_samples_every_worker() -> None:
    """`python -m bench.soak` for 12 s at 20 notifications/s, without dockerd (no restart
    alerts): every notification accepted and in the database, every worker sampled. No
    drift nor timing is asserted: 12 s says nothing of an hour."""
    from tests.harness.procs import require_binary

    require_binary("initdb")
    argv = ["--quick", "--minutes", "0.2", "--rate", "20", "--pool", "0", "--interval", "4",
            "--drain", "15"]
    done = subprocess.run([sys.executable, "-m", "bench.soak", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((ROOT / "bench" / "results" / "quick" / "soak.json").read_text())
    assert data["name"] == "soak" and data["quick"] is True
    assert data["meta"]["command"].endswith(" ".join(argv))
    load = data["load"]
    assert load["sent"] == load["accepted"] == 240
    assert {"new", "repeat", "resolve"} <= set(load["by_kind"])
    assert data["lost_total"] == 0 and data["lost"]["new_alerts"] == 0
    assert data["database"]["resolved_incidents"] == load["by_kind"]["resolve"]["accepted"]
    assert data["final"]["runs_stuck"] == 0 and data["drained_after_s"] is not None
    assert len(data["memory"]["workers"]) == data["workers"] == 4
    assert len(data["samples"]) >= 3
    for sample in data["samples"]:
        for worker in sample["workers"].values():
            assert worker["rss_kib"] > 0 and worker["fds"] > 0
    assert set(data["goals_met"]) == {"rss_fds_within_10pct", "lost_0", "stuck_0",
                                      "outbox_drained"}


@pytest.mark.slow
def test_quick_scale_measures_every_slice_at_both_sizes() -> None:
    """`make bench`'s scale step in its smoke mode (`python -m bench.run --quick --only
    scale`: 0 and 2,000 incidents on a durable PostgreSQL, every slice once). No timing is
    asserted: 2,000 rows say nothing of ten million."""
    from tests.harness.procs import require_binary

    require_binary("initdb")
    require_binary("wrk")
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--only", "scale"],
                          cwd=ROOT, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((ROOT / "bench" / "results" / "quick" / "scale.json").read_text())
    assert data["name"] == "scale" and data["quick"] is True and data["sizes"] == [0, 2_000]
    assert data["meta"]["command"].endswith("bench.run --quick --only scale")
    assert data["meta"]["postgres_version"]
    for size in ("0", "2000"):
        at = data["at"][size]
        assert {"api", "dashboards", "webhook", "claim"} <= set(at)
        assert at["webhook"]["requests"] > 0 and at["webhook"]["errors"] == 0
        assert at["claim"]["p99_ms"] >= at["claim"]["p50_ms"] > 0
    assert data["at"]["2000"]["rows"]["incidents"] >= 2_000
    assert data["prune"]["expired_left"] == 0
