"""bench/soak.py's pure parts: the load's mix, and the drift of RSS and fds per worker."""

from __future__ import annotations

from bench.soak import evaluate, lost
from bench.soak_load import kind_of, lag_for


def test_the_mix_is_a_third_each_new_repeat_resolve_and_5_percent_restarts() -> None:
    lag = lag_for(100)
    kinds = [kind_of(i, lag) for i in range(60_000)]
    share = {k: sum(1 for kind, _ in kinds if kind == k) / len(kinds)
             for k in ("restart", "new", "repeat", "resolve", "extra")}
    assert share["restart"] == 0.05
    assert abs(share["new"] - 0.95 / 3) < 0.001
    assert abs(share["repeat"] + share["extra"] / 2 - 0.95 / 3) < 0.001
    # Every repeat and resolve names an episode whose new alert was sent earlier.
    seen: dict[int, int] = {}
    for i, (kind, number) in enumerate(kinds):
        if kind == "new":
            seen[number] = i
        elif kind in ("repeat", "resolve"):
            assert seen[number] < i - lag  # about LAG_S seconds before, at the rate


def test_evaluate_measures_each_worker_from_the_first_sample_after_the_warm_up() -> None:
    def at(t: float, rss: int, fds: int) -> dict[str, object]:
        return {"t_s": t, "workers": {"11": {"rss_kib": rss, "fds": fds},
                                      "12": {"rss_kib": 100_000, "fds": 20}}}

    samples = [at(0, 50_000, 10), at(300, 100_000, 20), at(360, 105_000, 21),
               at(420, 108_000, 20)]
    memory = evaluate(samples, 300)
    assert memory["baseline_t_s"] == 300 and memory["within"] is True
    assert memory["workers"]["11"]["rss_kib_max_change"] == 0.08
    samples.append(at(480, 111_000, 20))
    assert evaluate(samples, 300)["within"] is False  # 11% over the baseline
    gone = [*samples[:3], {"t_s": 420, "workers": {"11": None, "12": samples[1]["workers"]["12"]}}]
    assert evaluate(gone, 300)["workers"]["11"]["gone"] is True


def test_lost_counts_what_the_database_does_not_show() -> None:
    sends = {"accepted": 10, "rejected": 1, "by_kind": {
        "new": {"accepted": 4}, "extra": {"accepted": 1}, "repeat": {"accepted": 2},
        "resolve": {"accepted": 2}, "restart": {"accepted": 1}}}
    counts = {"new_incidents": 4, "resolved_incidents": 2, "restart_incidents": 1,
              "notifications": 9, "ingest_failed": 0}
    assert lost(sends, counts) == {"rejected": 1, "notifications_rows": 1, "new_alerts": 1,
                                   "resolves": 0, "restart_alerts": 0, "ingest_failed": 0}
