"""Render bench/results/*.json into BENCHMARKS.md: `python -m bench.render`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.common import RESULTS
from bench.servers import ROOT

OUT = ROOT / "BENCHMARKS.md"
NOTES = Path(__file__).resolve().parent / "NOTES.md"  # analysis written by hand, appended


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ok(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "**MISS**")


def _ack_tables(data: dict[str, Any], goals: list[tuple[str, str, bool | None]]) -> list[str]:
    lines = []
    names = list(data.get("targets", {}))
    lines += ["| alerts/notif | senders | target | workers | req/s (median, min-max) | "
              "alerts/s | p50 ms | p99 ms | max ms | requests | errors | "
              "req/s ours/alerta | p99 ours/alerta |",
              "|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for case in data["cases"]:
        vs = case.get("vs_alerta", {})
        for name in names:
            s = case["targets"][name]["summary"]
            ratio = vs.get(name, {})
            lines.append(
                f"| {case['alerts']:,} | {case['concurrency']} | {name} | "
                f"{data['targets'][name]['workers']} | {_f(s['throughput_rps_median'])} "
                f"({_f(s['throughput_rps_min'])}-{_f(s['throughput_rps_max'])}) | "
                f"{_f(s['alerts_per_s_median'], 0)} | {_f(s['p50_ms'])} | {_f(s['p99_ms'])} | "
                f"{_f(s['max_ms'])} | {s['requests']} | {s['errors']} | "
                f"{_f(ratio.get('throughput_ratio_median'), 2)} | "
                f"{_f(ratio.get('p99_ratio_median'), 2)} |")
    by = {(c["alerts"], c["concurrency"]): c for c in data["cases"]}
    pg = "autofix-postgres"
    if (100, 1) in by and pg in by[(100, 1)]["targets"]:
        p99 = by[(100, 1)]["targets"][pg]["summary"]["p99_ms"]
        goals.append(("100-alert notification p99 < 50 ms (PostgreSQL, 1 sender)",
                      f"{_f(p99)} ms", p99 < 50))
    if (10000, 1) in by and pg in by[(10000, 1)]["targets"]:
        worst = by[(10000, 1)]["targets"][pg]["summary"]["max_ms"]
        goals.append(("10,000-alert notification acknowledged < 2 s (PostgreSQL, 1 sender, "
                      "slowest)", f"{_f(worst / 1000, 2)} s", worst < 2000))
    singles = [c["targets"][pg]["summary"]["throughput_rps_median"] for c in data["cases"]
               if c["alerts"] == 1 and pg in c["targets"]]
    if singles:
        goals.append((">= 500 single-alert notifications/s (PostgreSQL, 4 workers, best "
                      "sender count)", f"{_f(max(singles))} /s", max(singles) >= 500))
    thr_ok, p99_ok, worst_thr, worst_p99 = True, True, math.inf, 0.0
    compared = False
    for case in data["cases"]:
        r = case.get("vs_alerta", {}).get(pg)
        if not r or r["throughput_ratio_median"] is None:
            continue
        compared = True
        worst_thr = min(worst_thr, r["throughput_ratio_median"])
        worst_p99 = max(worst_p99, r["p99_ratio_median"])
        thr_ok &= r["throughput_ratio_median"] >= 1.0
        p99_ok &= r["p99_ratio_median"] <= 1.0
    goals.append((">= 1x alerta's throughput in every case (PostgreSQL, 4 workers each)",
                  f"worst ratio {_f(worst_thr, 2)}" if compared else "alerta not measured",
                  thr_ok if compared else None))
    goals.append(("<= alerta's p99 in every case", f"worst ratio {_f(worst_p99, 2)}"
                  if compared else "alerta not measured", p99_ok if compared else None))
    return lines


def _ttr_tables(ttr: dict[str, Any], goals: list[tuple[str, str, bool | None]]) -> list[str]:
    meta = ttr.get("meta", {})
    lines = ["## 4. Time to recover, per scenario", "",
             f"From `bench/ttr.py` (`{meta.get('command', 'python -m bench.run --only ttr')}`, "
             f"{meta.get('date', '?')}): the end-to-end harness (real Prometheus, Alertmanager, "
             "`autofix serve`, dockerd, target_app), each scenario run "
             f"{ttr['repeats']} times on a fresh container. Recover = fault injected until "
             "Prometheus scrapes the container as up again after autofix acted (for the Docker "
             "reference row: until Docker has it running again); detect = until the alert "
             "fires. Test intervals: tests/harness/overrides.py (1 s scrape and "
             "evaluation, every `for:`, group timer, cooldown and breaker period x 0.1); "
             "shipped: the files as shipped.", ""]
    for key, label in (("test_intervals", "test intervals"),
                       ("shipped_intervals", "shipped intervals")):
        mode = ttr.get(key)
        if not mode:
            continue
        lines += [f"**{label}**", "",
                  "| scenario | recover median s | recover max s | detect median s | runs |",
                  "|---|---:|---:|---:|---|"]
        for name, data in mode.items():
            # The reference row: Docker restarts the container; autofix never acts.
            rec = data.get("container_running") or data["recover"]
            det = data.get("detect", {})
            runs = ", ".join(_f(v, 1) if v is not None else "-" for v in rec["runs"])
            lines.append(f"| {name} | {_f(rec['median_s'], 2)} | {_f(rec['max_s'], 2)} | "
                         f"{_f(det.get('median_s'), 2) if det else '-'} | {runs} |")
            if key == "test_intervals" and name in ttr.get("goals_s", {}):
                goal = ttr["goals_s"][name]
                median = rec["median_s"]
                goals.append((f"{name}: recover median < {goal:g} s (test intervals)",
                              f"{_f(median, 2)} s", median is not None and median < goal))
        ref = mode.get("docker restart policy (reference)", {}).get("container_running")
        if ref:
            lines.append(f"\nDocker's restart policy had the crashed container running again "
                         f"after a median {_f(ref['median_s'], 2)} s (max {_f(ref['max_s'], 2)} "
                         "s): for plain crashes the restart policy is faster than any alert "
                         "pipeline; autofix is for hangs, errors, latency and leaks.")
        lines.append("")
    return lines


def _evidence_table(data: dict[str, Any]) -> list[str]:
    rows = [("run with capture (the default)", data["run_with_capture_s"]),
            ("run with `capture: false`", data["run_without_capture_s"]),
            ("the capture itself (`took_s`)", data["capture_took_s"])]
    return [
        "## 5. Evidence before action: added time to recover (hang)", "",
        f"From `bench/evidence_capture.py` (`.venv/bin/python -m bench.evidence_capture`, "
        f"{data.get('date', '?')}): a busybox container that printed 150 lines and hangs, "
        "a TargetDown alert whose expression Prometheus answers, one run of `restart` + "
        "`wait_healthy` timed from its claim to its end, on a private dockerd and "
        f"PostgreSQL; {data['rounds']} rounds alternating capture on and off, fresh "
        "containers.", "",
        "| | median s | runs |", "|---|---:|---|",
        *[f"| {label} | {_f(item['median_s'], 3)} | "
          f"{', '.join(_f(v, 2) for v in item['runs'])} |" for label, item in rows],
        "",
        f"The capture itself took a median **{_f(data['capture_took_s']['median_s'], 3)} s** "
        "(its sources run in parallel; `AUTOFIX_EVIDENCE_BUDGET_S` caps it at 3 s). Added "
        "time to recover: median of the same-round differences "
        f"**{_f(data.get('added_paired_median_s'), 3)} s**; the difference of the run "
        f"medians, {_f(data['added_median_s'], 3)} s, also carries the "
        "noise of a shared machine (1-minute load average "
        f"{data.get('load_average_1m', '?')} on {data.get('nproc', '?')} CPUs at the end of "
        "the run).", ""]


def render() -> Path:
    ack = _load("webhook_ack")
    rst = _load("restart_latency")
    meta = (ack or rst or {}).get("meta", {})
    m = meta.get("machine", {})
    info = (ack or {}).get("info", {})
    lines = ["# Benchmarks", "",
             "Generated by `bench/render.py` from `bench/results/*.json` (issue #8). "
             "Do not edit by hand; the analysis comes from `bench/NOTES.md`.", "",
             "## Setup", "",
             f"- Date: {meta.get('date', '?')}",
             f"- Command: `{meta.get('command', '?')}` (`make bench`)",
             f"- Machine: {m.get('nproc', '?')} CPUs ({m.get('cpu_model', '?')}), "
             f"{m.get('memory_gib', '?')} GiB RAM, Linux {m.get('kernel', '?')}; shared and "
             "noisy: the load generator, PostgreSQL and the servers share the same cores.",
             f"- Versions: Python {meta.get('python', '?')}, PostgreSQL "
             f"{meta.get('postgres_version', info.get('postgres_version', '?'))}, autofix "
             f"`{meta.get('autofix_git', '?')}`, alerta-server "
             f"{info.get('alerta_version', 'not run')}",
             "- PostgreSQL: throwaway cluster (`tests/harness/postgres.py`), fsync=off, "
             "synchronous commit on.", ""]
    goals: list[tuple[str, str, bool | None]] = []
    body: list[str] = []
    if ack and "cases" in ack:
        body += ["## 1-2. Webhook acknowledgement latency and throughput, beside alerta", "",
                 "`POST /webhook/alertmanager` (Bearer token) against alerta-server's "
                 "`POST /webhooks/prometheus` (AUTH_REQUIRED=False, PLUGINS=[]). Bodies are "
                 "Alertmanager 0.25 webhook payloads (`tests/payloads.py`); half the requests "
                 "re-send the sender's previous body (all repeats), half carry only new "
                 "occurrences. Closed loop: each sender waits for its answer, keep-alive "
                 "http.client, at most 4 senders per load-generator process. Alerts match no "
                 "playbook (ingest only). Every target is run once per repeat, back to back; "
                 "latency percentiles pool every request of every repeat, req/s is the median "
                 "over repeats, and ratios are medians of per-repeat ratios. Workers: "
                 "gunicorn gthread x 8 threads for both.", ""]
        if info.get("alerta_error"):
            body += [f"**alerta was not measured:** {info['alerta_error']}", ""]
        body += [*_ack_tables(ack, goals), ""]
    elif ack:
        body += ["## 1-2. Webhook acknowledgement", "", f"Failed: {ack.get('error')}", ""]
    if rst and "idle" in rst:
        cfg = rst["config"]
        idle, during = rst["idle"]["summary"], rst["during"]["summary"]
        body += ["## 3. Webhook latency while 5 slow restarts run", "",
                 f"{cfg['containers']} containers on a private dockerd ignore SIGTERM, so each "
                 f"`restart` (timeout_s {cfg['restart_timeout_s']}) takes the full timeout; "
                 f"`autofix serve --workers {cfg['workers']}` on PostgreSQL "
                 f"(AUTOFIX_MAX_CONCURRENT_RUNS={cfg['max_concurrent_runs']}, default 4). "
                 f"Probe: {cfg['probe_senders']} senders x {cfg['probe_hz_per_sender']:g}/s "
                 "single-alert notifications (open loop). 'During' = probes sent while at "
                 "least one restart was in progress; 'idle' = the same probe just before.", "",
                 "| phase | requests | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|",
                 f"| idle baseline | {idle['requests']} | {_f(idle['p50_ms'])} | "
                 f"{_f(idle['p99_ms'])} | {_f(idle['max_ms'])} |",
                 f"| during 5 restarts | {during['requests']} | {_f(during['p50_ms'])} | "
                 f"{_f(during['p99_ms'])} | {_f(during['max_ms'])} |", ""]
        for i, rep in enumerate(rst["restarts"]):
            durs = [a["duration_s"] for a in rep["restart_actions"]]
            body.append(f"- repeat {i}: runs queued {rep['queued']}, restart durations (s) "
                        f"{[round(d, 1) for d in durs if d is not None]}")
        body.append("")
        goals.append(("webhook p99 < 100 ms while 5 slow restarts run",
                      f"{_f(during['p99_ms'])} ms (idle {_f(idle['p99_ms'])} ms)",
                      during["p99_ms"] < 100))
    elif rst:
        body += ["## 3. Webhook latency while restarts run", "", f"Failed: {rst.get('error')}",
                 ""]
    ttr = _load("ttr")
    if ttr and "test_intervals" in ttr:
        body += _ttr_tables(ttr, goals)
    elif ttr:
        body += ["## 4. Time to recover", "", f"Failed: {ttr.get('error')}", ""]
    evidence = _load("evidence_capture")
    if evidence:
        body += _evidence_table(evidence)
    lines += ["## Goals", "", "| goal | measured | result |", "|---|---|---|"]
    lines += [f"| {g} | {v} | {_ok(p)} |" for g, v, p in goals] + [""]
    lines += body
    if NOTES.exists():
        lines += [NOTES.read_text().rstrip(), ""]
    OUT.write_text("\n".join(lines))
    return OUT


if __name__ == "__main__":
    print(render())
