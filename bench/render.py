"""Render bench/results/*.json into BENCHMARKS.md: `python -m bench.render`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.common import RESULTS
from bench.render_cost import cost_section
from bench.servers import ROOT

OUT = ROOT / "BENCHMARKS.md"
NOTES = Path(__file__).resolve().parent / "NOTES.md"  # analysis written by hand, appended


class RenderRefused(Exception):
    """Results that cannot be published side by side: what each file lacks, or which
    commits they mix."""


def _load(name: str, results: Path | None = None) -> dict[str, Any] | None:
    path = (results or RESULTS) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def provenance_problems(results: Path | None = None) -> list[str]:
    """Why these results may not be rendered as one document: every file must say on which
    clean commit, when and with which command it was measured, and all on the same commit."""
    problems: list[str] = []
    commits: dict[str, list[str]] = {}
    for _, name in SECTIONS:
        data = _load(name, results)
        if data is None:
            continue
        meta = data.get("meta") or {}
        missing = [key for key in ("autofix_git", "date", "command") if not meta.get(key)]
        if missing:
            problems.append(f"{name}.json lacks {', '.join(missing)} in its meta")
            continue
        commit = str(meta["autofix_git"])
        if commit.endswith("-dirty"):
            problems.append(f"{name}.json was measured on a tree with uncommitted changes "
                            f"({commit})")
        commits.setdefault(commit.removesuffix("-dirty"), []).append(name)
    if len(commits) > 1:
        mixed = "; ".join(f"{c}: {', '.join(names)}" for c, names in sorted(commits.items()))
        problems.append(f"the results mix commits ({mixed}): re-measure them on one")
    return problems


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


def _durable_tables(data: dict[str, Any], goals: list[tuple[str, str, bool | None]]
                    ) -> list[str]:
    case, summary, vs = data["case"], data["summary"], data["vs_alerta"]
    lines = ["## 5. What ships: the shipped playbooks on a durable PostgreSQL, beside alerta",
             "", f"From `bench/durable_ack.py`: `receiver/playbooks.yml` as shipped (its "
             "catch-all `notify-unmatched` matches every load alert), PostgreSQL with "
             f"{data['postgres']}, alerta-server {data.get('alerta_version', '?')} on the same "
             f"cluster, 4 gthread workers each, a 2 s discarded warm-up each, every request "
             f"a new alert, {case['concurrency']} connections of "
             f"{_load_generator(data)}, {case['repeats']} repeats alternating the order. "
             "Ratios are medians of per-repeat ratios.", "",
             "| target | req/s (median, min-max) | p50 ms | p99 ms | max ms | requests | "
             "errors |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {_f(s['throughput_rps_median'])} "
                     f"({_f(s['throughput_rps_min'])}-{_f(s['throughput_rps_max'])}) | "
                     f"{_f(s['p50_ms'])} | {_f(s['p99_ms'])} | {_f(s['max_ms'])} | "
                     f"{s['requests']} | {s['errors']} |")
    ratio = vs.get("throughput_ratio_median")
    lines += ["", f"Throughput ratio autofix/alerta (median of repeats): {_f(ratio, 2)}; "
              f"p99 ratio: {_f(vs.get('p99_ratio_median'), 2)}.", ""]
    one_group = data.get("one_group") or {}
    if one_group:
        # Alertmanager never sends one group's notifications this way; its worst case.
        lines += ["Each request above is its own Alertmanager group, as the shipped route "
                  "(`group_by: [alertname, container]`) makes new alerts on different "
                  "containers. With every request in one group instead (one run each, "
                  "after the repeats; Alertmanager itself sends a group at most once per "
                  "`group_interval`): " + "; ".join(
                      f"{name} {_f(r['throughput_rps'])} req/s, p99 {_f(r['p99_ms'])} ms"
                      for name, r in one_group.items()) + ".", ""]
    python = data.get("python_loadgen")
    if python:
        per_repeat = ", ".join(_f(r, 2) for r in python["vs_alerta"]["throughput_ratios"])
        rates = "; ".join(f"{name} {_f(s['throughput_rps_median'])} req/s"
                          for name, s in python["summary"].items())
        lines += [f"With the Python load generator instead (`bench/loadgen.py`, "
                  f"{python['repeats']} repeats alternating, after the above; its own CPU "
                  "comes from the same 2 cores as the servers'): "
                  f"{rates}, ratio {_f(python['vs_alerta']['throughput_ratio_median'], 2)}x "
                  f"(per repeat {per_repeat}), autofix p99 {_f(python['worst_p99_ms'])} ms "
                  "in the worst repeat.", ""]
    goals.append((f">= {data['goals']['throughput_ratio']:g}x alerta's new-alert notifications/s"
                  " (shipped playbooks, durable PostgreSQL, 4 workers each)",
                  f"{_f(ratio, 2)}x", data["goals_met"]["throughput_ratio"]))
    goals.append((f"p99 < {data['goals']['p99_ms']:g} ms at {case['concurrency']} connections "
                  "(shipped playbooks, durable PostgreSQL, worst repeat)",
                  f"{_f(data['worst_p99_ms'])} ms", data["goals_met"]["p99_ms"]))
    return lines


def _load_generator(data: dict[str, Any]) -> str:
    if data.get("load_generator") == "wrk":
        return ("wrk (`bench/wrk_load.py`; the issue measured with wrk; its percentiles "
                "include its correction for coordinated omission)")
    return "the Python load generator (`bench/loadgen.py`)"


def _storm_tables(data: dict[str, Any], goals: list[tuple[str, str, bool | None]]
                  ) -> list[str]:
    g, met = data["goals"], data["goals_met"]
    lines = ["## 6. Alert storms with the shipped playbooks", "",
             "From `bench/storm.py`: `autofix serve --workers 4`, shipped playbooks, PostgreSQL "
             f"with {data['postgres']}, a real private dockerd and a Slack stand-in. One "
             "notification of 5,000 unrelated alerts (one Alertmanager group), then a "
             "TargetDown for a labelled container; then three notifications of 10,000 "
             "alerts, one after the other has settled (medians; each: "
             f"{_runs(data.get('ack_10000_runs_s') or [None], 2)} s to acknowledge). Above "
             "`AUTOFIX_INGEST_DEFER_ALERTS` (1,000) a notification is acknowledged (202) once "
             "stored and its alerts are filed right after; \"settled\" includes that "
             "filing.", "",
             "| measured | value |", "|---|---:|",
             f"| 5,000-alert notification acknowledged | {_f(data['storm_5000_ack_s'], 3)} s |",
             f"| TargetDown acknowledged -> its restart started | "
             f"{_f(data['restart_after_ack_s'], 3)} s |",
             f"| Slack messages about the storm's group | {data['storm_slack_messages']} |",
             f"| 10,000-alert notification acknowledged (median of 3) | "
             f"{_f(data['ack_10000_s'], 3)} s |",
             f"| 10,000 alerts: filed, every run and notification settled (median of 3) | "
             f"{_f(data['settled_10000_s'], 2)} s |", ""]
    goals += [
        (f"storm: TargetDown restart starts < {g['restart_after_ack_s']:g} s after its "
         "acknowledgement", f"{_f(data['restart_after_ack_s'], 2)} s",
         met["restart_after_ack_s"]),
        (f"storm: <= {g['storm_slack_messages']} Slack messages for a 5,000-alert group",
         str(data["storm_slack_messages"]), met["storm_slack_messages"]),
        (f"storm: 10,000-alert notification acknowledged < {g['ack_10000_s']:g} s (shipped "
         "playbooks)", f"{_f(data['ack_10000_s'], 2)} s", met["ack_10000_s"]),
        (f"storm: 10,000 alerts settled < {g['settled_10000_s']:g} s",
         f"{_f(data['settled_10000_s'], 1)} s", met["settled_10000_s"])]
    return lines


def _runs(values: list[float | None], digits: int = 1) -> str:
    return ", ".join("-" if v is None else _f(v, digits) for v in values)


def _hang_tables(data: dict[str, Any], goals: list[tuple[str, str, bool | None]]
                 ) -> list[str]:
    ours, ref = data["autofix_answering_s"], data["docker_unhealthy_s"]
    lines = ["## 7. A hang with the shipped intervals, against Docker's health check", "",
             "From `bench/hang_ttr.py`: the end-to-end stack with the files as shipped (2 s "
             "scrape of the containers job, TargetDown `for: 4s`, the autofix route's "
             f"`group_wait: 1s`), {data['repeats']} rounds alternated in one run. autofix: "
             "from the hang's injection to `/healthz` answering again from the restarted "
             "process. Reference: the same hang in a container autofix may not touch, until "
             "Docker's HEALTHCHECK (target_app's image: 5 s interval, 3 retries) marks it "
             "`unhealthy`, the earliest moment a health-check restarter such as "
             f"docker-autoheal can act (it then polls every {data['autoheal_poll_s']:g} s and "
             "restarts in about 3 s).", "",
             "| measured | median s | runs (s) |", "|---|---:|---|",
             f"| autofix: application answering again | {_f(ours['median_s'], 2)} | "
             f"{_runs(ours['runs'])} |",
             f"| Docker health check: marked unhealthy | {_f(ref['median_s'], 2)} | "
             f"{_runs(ref['runs'])} |", ""]
    limit = None if ref["median_s"] is None else ref["median_s"] + data["autoheal_poll_s"]
    goals.append((f"hang, shipped intervals: autofix recovers (answering) < "
                  f"{data['goal_s']:g} s, and before Docker marks it unhealthy + one "
                  f"{data['autoheal_poll_s']:g} s poll",
                  f"{_f(ours['median_s'], 2)} s (reference {_f(limit, 2)} s)",
                  data["goal_met"]))
    return lines


README = ROOT / "README.md"
_TTR_BEGIN, _TTR_END = "<!-- figures:ttr -->", "<!-- /figures:ttr -->"


def readme_ttr_block(ttr: dict[str, Any]) -> str:
    """The README's time-to-recover table, rendered from the same results file."""
    test, shipped = ttr.get("test_intervals", {}), ttr.get("shipped_intervals", {})
    repeats = ttr.get("repeats", "?")
    lines = [f"| scenario | test intervals (median of {repeats}) | shipped intervals "
             f"(median of {repeats}) |", "|---|---:|---:|"]
    for name in dict.fromkeys([*test, *shipped]):
        cells = []
        for mode in (test, shipped):
            data = mode.get(name)
            rec = (data.get("container_running") or data["recover"]) if data else None
            cells.append(f"{_f(rec['median_s'], 2)} s" if rec else "-")
        label = name
        if "reference" in name:
            label = ("reference: the same crash under Docker's restart policy (container "
                     "running again)")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def update_readme(ttr: dict[str, Any] | None) -> None:
    if not ttr or "test_intervals" not in ttr or not README.exists():
        return
    text = README.read_text()
    if _TTR_BEGIN not in text or _TTR_END not in text:
        return
    head, rest = text.split(_TTR_BEGIN, 1)
    _, tail = rest.split(_TTR_END, 1)
    README.write_text(f"{head}{_TTR_BEGIN}\n{readme_ttr_block(ttr)}\n{_TTR_END}{tail}")
def _evidence_table(data: dict[str, Any]) -> list[str]:
    rows = [("run with capture (the default)", data["run_with_capture_s"]),
            ("run with `capture: false`", data["run_without_capture_s"]),
            ("the capture itself (`took_s`)", data["capture_took_s"])]
    return [
        "## 8. Evidence before action: added time to recover (hang)", "",
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


def _swarm_hang_table(data: dict[str, Any], goals: list[tuple[str, str, bool | None]]
                      ) -> list[str]:
    ours, single = data["swarm_answering_s"], data["single_host_answering_s"]
    goals.append(("hang on a Swarm service: time to recover, median of "
                  f"{data['repeats']} (issue #18: reported beside the single host)",
                  f"{_f(ours['median_s'], 2)} s (single host {_f(single['median_s'], 2)} s)",
                  None))
    return [
        "## 9. A hang on a Swarm service, beside a single host", "",
        "From `bench/swarm_hang_ttr.py`: one stack with the files as shipped (2 s scrapes, "
        "`for: 4s`) on a single-node Swarm's manager (`tests/harness/swarm.py`), "
        f"{data['repeats']} rounds alternated in one run, fresh targets each round. Single "
        "host: a target_app container hangs, TargetDown, autofix restarts it. Swarm: the one "
        "task of a target_app service hangs, SwarmTaskDown (`swarm-tasks` job), autofix "
        "force-updates the service and Swarm replaces the task. Both timed from the hang's "
        "injection to `/healthz` answering again from the new process.", "",
        "| target | median s | runs (s) |", "|---|---:|---|",
        f"| Swarm service (forced update) | {_f(ours['median_s'], 2)} | "
        f"{_runs(ours['runs'])} |",
        f"| single host container (restart) | {_f(single['median_s'], 2)} | "
        f"{_runs(single['runs'])} |", "",
        f"Ratio Swarm / single host (medians): {_f(data.get('ratio'), 2)}.", ""]


SECTIONS = [("1-2", "webhook_ack"), ("3", "restart_latency"), ("4", "ttr"),
            ("5", "durable_ack"), ("6", "storm"), ("7", "hang_ttr"),
            ("8", "evidence_capture"), ("9", "swarm_hang_ttr")]


def _runs_table() -> list[str]:
    def code(value: str | None) -> str:
        return f"`{value}`" if value else "-"

    rows = ["| section | results | date | autofix | command |", "|---|---|---|---|---|"]
    for section, name in SECTIONS:
        data = _load(name)
        if data is None:
            continue
        meta = data.get("meta", {})
        rows.append(f"| {section} | `{name}.json` | {meta.get('date', data.get('date', '-'))} "
                    f"| {code(meta.get('autofix_git'))} | {code(meta.get('command'))} |")
    return rows


def _runs_sentence() -> str:
    """One run of everything, or several (provenance_problems already refused mixed commits)."""
    loaded = [data for _, name in SECTIONS if (data := _load(name)) is not None]
    starts = {data.get("meta", {}).get("date") for data in loaded}
    if len(starts) == 1:
        return ("Every section comes from one run of `make bench` on one commit; each "
                "results file records when, on which commit and with which command:")
    return ("Sections come from separate runs on one commit (`make bench` runs them all); "
            "each one's results file records when, on which commit and with which command:")


def render() -> Path:
    problems = provenance_problems()
    if problems:
        raise RenderRefused("; ".join(problems))
    ack = _load("webhook_ack")
    rst = _load("restart_latency")
    meta = (ack or rst or {}).get("meta", {})
    m = meta.get("machine", {})
    info = (ack or {}).get("info", {})
    lines = ["# Benchmarks", "",
             "Generated by `bench/render.py` from `bench/results/*.json` (issue #8). "
             "Do not edit by hand; the analysis comes from `bench/NOTES.md`.", "",
             "## Setup", "",
             f"- Machine: {m.get('nproc', '?')} CPUs ({m.get('cpu_model', '?')}), "
             f"{m.get('memory_gib', '?')} GiB RAM, Linux {m.get('kernel', '?')}; shared and "
             "noisy: the load generator, PostgreSQL and the servers share the same cores.",
             f"- Versions: Python {meta.get('python', '?')}, PostgreSQL "
             f"{meta.get('postgres_version', info.get('postgres_version', '?'))}, "
             f"alerta-server {info.get('alerta_version', 'not run')}",
             "- PostgreSQL: a throwaway cluster (`tests/harness/postgres.py`) with fsync=off "
             "and synchronous commit on, except sections 5 and 6, whose cluster runs fsync, "
             "full_page_writes and synchronous_commit on.", "",
             _runs_sentence(), "", *_runs_table(), ""]
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
    for name, section in (("durable_ack", _durable_tables), ("storm", _storm_tables),
                          ("hang_ttr", _hang_tables)):
        data = _load(name)
        if data and ("goals_met" in data or "goal_met" in data):
            body += section(data, goals)
        elif data:
            body += [f"## {name}", "", f"Failed: {data.get('error')}", ""]
    evidence = _load("evidence_capture")
    if evidence:
        body += _evidence_table(evidence)
    swarm_hang = _load("swarm_hang_ttr")
    if swarm_hang and "swarm_answering_s" in swarm_hang:
        body += _swarm_hang_table(swarm_hang, goals)
    elif swarm_hang:
        body += ["## 9. A hang on a Swarm service", "", f"Failed: {swarm_hang.get('error')}",
                 ""]
    body += cost_section(RESULTS)
    lines += ["## Goals", "", "| goal | measured | result |", "|---|---|---|"]
    lines += [f"| {g} | {v} | {_ok(p)} |" for g, v, p in goals] + [""]
    lines += body
    if NOTES.exists():
        lines += [NOTES.read_text().rstrip(), ""]
    OUT.write_text("\n".join(lines))
    update_readme(ttr)
    return OUT


if __name__ == "__main__":
    try:
        print(render())
    except RenderRefused as exc:
        raise SystemExit(f"bench/render.py refuses to write BENCHMARKS.md: {exc}") from None
