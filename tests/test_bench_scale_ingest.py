"""bench/scale_ingest.py's pure parts and its two database steps, small: the claim
measured through runner.claim_next on 200 queued runs, and the expired seeding that the
product's prune deletes. No wrk here: timings are asserted in bench/, not in tests."""

from __future__ import annotations

import argparse

import pytest

from bench.scale import _slices, growth
from bench.scale_ingest import RETENTION, claim_latency, prune_goals, webhook_growth
from bench.scale_seed import seed
from receiver.store.engine import Database
from receiver.store.migrate import prune
from tests.harness.db import query
from tests.harness.postgres import Postgres


def test_webhook_growth_is_a_ratio_to_the_base_against_the_goals() -> None:
    base = {"throughput_rps_median": 200.0, "p99_ms": 20.0}
    assert webhook_growth(base, {"throughput_rps_median": 170.0, "p99_ms": 29.0}) == {
        "throughput_ratio": 0.85, "p99_ratio": 1.45, "throughput_ok": True, "p99_ok": True}
    slow = webhook_growth(base, {"throughput_rps_median": 150.0, "p99_ms": 31.0})
    assert not slow["throughput_ok"] and not slow["p99_ok"]
    assert webhook_growth({"throughput_rps_median": 0.0, "p99_ms": 0.0}, base)[
        "throughput_ratio"] is None


def test_growth_carries_the_webhook_and_the_claim_without_dashboards() -> None:
    def at(thr: float, claim: float) -> dict[str, object]:
        return {"webhook": {"throughput_rps_median": thr, "p99_ms": 10.0},
                "claim": {"p50_ms": claim, "p99_ms": 2 * claim}}

    out = growth(at(100.0, 2.0), at(90.0, 3.0))
    assert out["webhook"]["throughput_ratio"] == 0.9
    assert out["claim"] == {"p50_ms": 1.5, "p99_ms": 1.5}
    assert out["dashboards"] == {} and out["api"] == {}


def test_prune_goals_and_slices() -> None:
    assert prune_goals(100.0, 100.0) == {"p99_ok": True, "lock_wait_ok": True}
    assert prune_goals(100.1, 101.0) == {"p99_ok": False, "lock_wait_ok": False}
    assert _slices("webhook, claim") == ("webhook", "claim")
    with pytest.raises(argparse.ArgumentTypeError):
        _slices("webhook,vacuum")


def test_claim_latency_claims_through_the_runner_and_leaves_nothing_queued(
        postgres: Postgres, pg_template: str) -> None:
    url = postgres.create_database(template=pg_template)
    out = claim_latency(url, queued=200, samples=20)
    assert out["samples"] == 20 and out["claimed_by_lane"]["none"] == 0
    # The act lane first (priority, then oldest); the light lane only when no act run is.
    assert out["claimed_by_lane"] == {"act": 20, "light": 0, "none": 0}
    assert 0 < out["p50_ms"] <= out["p99_ms"] <= out["max_ms"]
    assert query(url, "SELECT count(*) FROM runs")[0][0] == 0
    assert query(url, "SELECT count(*) FROM incidents")[0][0] == 0


def test_expired_seeding_is_what_the_retention_prune_deletes(postgres: Postgres,
                                                             pg_template: str) -> None:
    url = postgres.create_database(template=pg_template)
    seed(url, 300, end_ago=RETENTION + RETENTION / 90, vacuum=False, log=False)
    seed(url, 100, vacuum=False, log=False)  # the recent 90 days: kept
    finished = query(url, "SELECT count(*) FROM incidents WHERE id <= 300 AND status IN "
                          "('resolved', 'closed')")[0][0]
    database = Database(url)
    try:
        deleted = prune(database, RETENTION)
    finally:
        database.engine.dispose()
    assert deleted["incidents"] == finished > 200
    assert query(url, "SELECT count(*) FROM incidents WHERE id > 300")[0][0] == 100
    assert query(url, "SELECT count(*) FROM runs r LEFT JOIN incidents i "
                      "ON i.id = r.incident_id WHERE i.id IS NULL")[0][0] == 0
