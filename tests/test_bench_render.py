"""bench/render.py publishes only results that say where they come from (#29): every file
names its commit, date and command, none was measured on a dirty tree, all on one commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import render


def write(results: Path, name: str, **meta: str) -> None:
    results.mkdir(exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps({"name": name, "meta": meta}))


GOOD = {"autofix_git": "abc1234", "date": "2026-12-06T20:00:00+00:00",
        "command": ".venv/bin/python -m bench.run"}


def test_results_from_one_clean_commit_with_their_command_pass(tmp_path: Path) -> None:
    write(tmp_path, "webhook_ack", **GOOD)
    write(tmp_path, "storm", **GOOD)
    assert render.provenance_problems(tmp_path) == []


@pytest.mark.parametrize("key", ["autofix_git", "date", "command"])
def test_a_file_without_its_commit_date_or_command_is_refused(tmp_path: Path,
                                                              key: str) -> None:
    write(tmp_path, "storm", **{k: v for k, v in GOOD.items() if k != key})
    [problem] = render.provenance_problems(tmp_path)
    assert "storm.json" in problem and key in problem


def test_a_file_without_any_meta_is_refused(tmp_path: Path) -> None:
    tmp_path.joinpath("ttr.json").write_text(json.dumps({"name": "ttr"}))
    assert render.provenance_problems(tmp_path) == [
        "ttr.json lacks autofix_git, date, command in its meta"]


def test_a_dirty_tree_and_mixed_commits_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "webhook_ack", **GOOD)
    write(tmp_path, "hang_ttr", **{**GOOD, "autofix_git": "def5678-dirty"})
    problems = render.provenance_problems(tmp_path)
    assert any("uncommitted" in p and "hang_ttr.json" in p for p in problems), problems
    assert any("mix commits" in p and "abc1234" in p and "def5678" in p for p in problems)


def test_render_refuses_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                       ) -> None:
    write(tmp_path, "storm", **GOOD)
    write(tmp_path, "ttr", **{**GOOD, "autofix_git": "0000000"})
    out = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr(render, "RESULTS", tmp_path)
    monkeypatch.setattr(render, "OUT", out)
    with pytest.raises(render.RenderRefused, match="mix commits"):
        render.render()
    assert not out.exists()


# Issue #33's section (bench/render_cost.py): each row its own commit, date and command.
def soak_result(lost: int = 0, rss_change: float = 0.02) -> dict[str, object]:
    worker = {"baseline": {"rss_kib": 100_000, "fds": 30}, "samples_after": 5,
              "rss_kib_max_change": rss_change, "fds_max_change": 0.0}
    return {"name": "soak", "minutes": 10, "stuck_after_s": 120, "drain_limit_s": 180,
            "load": {"achieved_rate_per_s": 99.5, "sent": 60_000},
            "memory": {"baseline_t_s": 300, "workers": {"11": worker, "12": worker}},
            "lost_total": lost, "lost": {"new_alerts": lost},
            "final": {"runs_stuck": 0, "outbox_pending": 0}, "drained_after_s": 2.0,
            "samples": [{"runs_stuck": 0}], "meta": GOOD}


def rows_for(results: Path, word: str) -> list[tuple[str, str, str, str]]:
    from bench.render_cost import goal_rows

    return [row for row in goal_rows(results) if row[0].startswith(word)]


def test_without_results_every_goal_of_issue_33_says_not_measured_yet(tmp_path: Path
                                                                      ) -> None:
    from bench.render_cost import goal_rows

    rows = goal_rows(tmp_path)
    assert len(rows) == 17
    assert all(result.startswith("not measured yet") for _, _, result, _ in rows)


def test_soak_rows_say_met_or_by_how_much_missed_with_their_source(tmp_path: Path) -> None:
    (tmp_path / "soak.json").write_text(json.dumps(soak_result(lost=3, rss_change=0.125)))
    rows = {goal: (measured, result, src) for goal, measured, result, src
            in rows_for(tmp_path, "soak")}
    rss = next(v for k, v in rows.items() if "RSS" in k)
    assert "12.5%" in rss[0] and rss[1].startswith("**missed** by 2.5%")
    fds = next(v for k, v in rows.items() if "fds" in k)
    assert fds[1] == "met"
    lost = rows["soak: 0 notifications lost"]
    assert lost[0].startswith("3 of 60,000 sent over 10 min") and "hour not run" in lost[0]
    assert lost[1].startswith("**missed** by 3")
    assert all(src == "`soak.json`: `abc1234`, 2026-12-06T20:00:00+00:00, "
               "`.venv/bin/python -m bench.run`" for _, _, src in rows.values())


def test_a_cost_result_without_its_provenance_is_not_published(tmp_path: Path) -> None:
    (tmp_path / "soak.json").write_text(json.dumps({**soak_result(), "meta": {}}))
    assert all(r.startswith("not measured yet") and s == "-"
               for _, _, r, s in rows_for(tmp_path, "soak"))


def test_a_failed_cost_run_says_it_failed(tmp_path: Path) -> None:
    (tmp_path / "soak.json").write_text(json.dumps(
        {"name": "soak", "error": "RuntimeError: boom", "meta": GOOD}))
    rows = rows_for(tmp_path, "soak")
    assert rows and all(r == "run failed: RuntimeError: boom" and "abc1234" in s
                        for _, _, r, s in rows)


def webhook(thr: float, p99: float) -> dict[str, object]:
    return {"throughput_rps_median": thr, "p50_ms": p99 / 3, "p99_ms": p99, "repeats": 5,
            "window_s": 5}


def scale_ingest_result(thr_1m: float = 90.0, p99_1m: float = 40.0,
                        during_p99: float = 60.0, lock_ms: float = 0.0) -> dict[str, object]:
    from bench.scale_ingest import webhook_growth

    claim = {"queued": 10_000, "p50_ms": 4.0, "p99_ms": 9.0, "max_ms": 12.0}
    at = {"0": {"webhook": webhook(100.0, 30.0), "load_average": [9.0, 8.0, 7.0],
                "claim": claim},
          "1000000": {"webhook": webhook(thr_1m, p99_1m), "load_average": [12.5, 8.0, 7.0],
                      "claim": claim}}
    return {"name": "scale", "sizes": [0, 1_000_000], "at": at, "growth": {"1000000": {
        "webhook": webhook_growth(at["0"]["webhook"], at["1000000"]["webhook"])}},
        "prune": {"prune": {"deleted": {"incidents": 900_000}, "seconds": 240.0},
                  "seeded": {"incidents": 1_000_000, "runs": 680_000, "actions": 1_480_000},
                  "retention_days": 91, "expired_left": 0, "window_p99s_ms": [during_p99],
                  "window_s": 5,
                  "lock_samples": 9000,
                  "webhook_during": {"p99_ms": during_p99, "throughput_rps_median": 80.0},
                  "webhook_without": {"p99_ms": 35.0, "throughput_rps_median": 95.0},
                  "windows_during": 48, "worst_window_p99_ms": during_p99 + 5,
                  "lock_wait_max_ms": {"during_blocked_by_prune": lock_ms, "during_any": lock_ms,
                                       "without_prune": 0.0},
                  "sample_every_s": 0.02, "load_average": {"before": [11.0, 9.0, 8.0],
                                                            "after": [10.0, 9.0, 8.0]}},
        "meta": GOOD}


def test_webhook_and_prune_rows_come_from_scale_ingest_with_their_ratios(tmp_path: Path
                                                                         ) -> None:
    (tmp_path / "scale_ingest.json").write_text(json.dumps(scale_ingest_result()))
    rows = rows_for(tmp_path, "")
    thr, p99 = rows[0], rows[1]
    assert thr[1].startswith("0.9x: 90.0 req/s at 1,000,000 vs 100.0 at 0")
    assert "load average 12.5" in thr[1] and "scale_ingest.json" in thr[3]
    assert thr[2] == "met at 1,000,000; 10M not run yet"
    assert p99[1].startswith("1.33x: 40.0 ms") and p99[2].startswith("met at 1,000,000")
    prune_p99, lock = (r for r in rows if r[0].startswith("1M-row prune"))
    assert prune_p99[1].startswith("p99 60.0 ms during the prune (48 wrk windows")
    assert "900,000 incidents" in prune_p99[1] and prune_p99[2] == "met"
    assert lock[1].startswith("longest wait blocked by the prune 0 ms") and lock[2] == "met"
    # The lists and dashboards still wait for scale.json.
    assert all(r[2].startswith("not measured yet") for r in rows[2:5])


def test_webhook_and_prune_rows_say_by_how_much_they_missed(tmp_path: Path) -> None:
    (tmp_path / "scale_ingest.json").write_text(json.dumps(scale_ingest_result(
        thr_1m=50.0, p99_1m=60.0, during_p99=130.0, lock_ms=250.0)))
    rows = rows_for(tmp_path, "")
    assert rows[0][2].startswith("**missed** by 0.30x at 1,000,000")
    assert rows[1][2].startswith("**missed** by 0.50x at 1,000,000")
    prune_p99, lock = (r for r in rows if r[0].startswith("1M-row prune"))
    assert prune_p99[2] == "**missed** by 30.0 ms" and lock[2] == "**missed** by 150.0 ms"


def test_the_write_side_table_gives_each_size_and_the_prune(tmp_path: Path) -> None:
    from bench.render_cost import cost_section

    (tmp_path / "scale_ingest.json").write_text(json.dumps(scale_ingest_result()))
    text = "\n".join(cost_section(tmp_path))
    assert "| 0 | 100.0 | 10.0 / 30.0 | - | 4.0 / 9.0 / 12.0 | 9.0 |" in text
    assert "| 1,000,000 | 90.0 | 13.3 / 40.0 | 0.9 / 1.33 | 4.0 / 9.0 / 12.0 | 12.5 |" in text
    assert "deleted incidents 900,000 in 240 s; 0 expired finished incidents left" in text
    assert "1 windows of 5 s, their p99 from 60 to 60 ms" in text
    assert "0 ms blocked by the prune" in text and "Load average 11 before" in text


def test_cpu_row_shows_milliseconds_once_a_published_run_exists(tmp_path: Path) -> None:
    def cpu_ms(ms: float) -> dict[str, object]:
        run = {"cpu_ms": ms, "machine_idle": 0.4}
        return {"name": "cpu_per_request", "repeats": 3, "runs": {"autofix": [run] * 3},
                "summary": {"autofix": {"cpu_ms": ms, "net_cpu_ms": ms - 0.2}}, "meta": GOOD}

    [before] = rows_for(tmp_path, "receiver CPU")
    assert before[2].startswith("not measured yet") and before[3] == "-"
    (tmp_path / "cpu_per_request.json").write_text(json.dumps(cpu_ms(3.4)))
    [row] = rows_for(tmp_path, "receiver CPU")
    assert row[1].startswith("3.40 ms (3.20 ms net of idle; median of 3 repeats")
    assert row[2] == "**missed** by 0.40 ms" and "cpu_per_request.json" in row[3]
    (tmp_path / "cpu_per_request.json").write_text(json.dumps(cpu_ms(2.9)))
    assert rows_for(tmp_path, "receiver CPU")[0][2] == "met"


def test_alerta_ratio_comes_from_the_run_after_the_cpu_cut_when_section_5_predates_it(
        tmp_path: Path) -> None:
    before_cut = {**GOOD, "date": "2026-12-06T23:00:00+00:00"}
    (tmp_path / "durable_ack.json").write_text(json.dumps({
        "name": "durable_ack", "meta": before_cut,
        "vs_alerta": {"throughput_ratio_median": 3.73, "throughput_ratios": [3.7] * 5}}))
    (tmp_path / "cpu_instructions.json").write_text(json.dumps({
        "date": "2026-12-07", "before": "e9b1288", "after": "7b63738",
        "whole_worker": {"per_request_millions": {
            "raw_difference": {"before": 13.1, "after": 8.2, "change": -0.38},
            "net_of_idle": {"change": -0.45}}}}))
    [row] = rows_for(tmp_path, ">= 4x")
    assert row[1].startswith("3.73x") and "not re-measured" in row[2]
    run = {"cpu_ms": 1.5, "machine_idle": 0.03}
    (tmp_path / "cpu_per_request.json").write_text(json.dumps({
        "name": "cpu_per_request", "repeats": 5, "runs": {"autofix": [run] * 5},
        "summary": {"autofix": {"cpu_ms": 1.5, "net_cpu_ms": 1.4, "throughput_vs_alerta": {
            "median": 4.2, "per_repeat": [4.0, 4.2, 4.4]}}},
        "meta": {**GOOD, "date": "2026-12-07T12:00:00+00:00"}}))
    [row] = rows_for(tmp_path, ">= 4x")
    assert row[1].startswith("4.20x after the CPU cut") and "before it 3.73x" in row[1]
    assert row[2] == "met"
    assert row[3].startswith("`cpu_per_request.json`") and "`durable_ack.json`" in row[3]
