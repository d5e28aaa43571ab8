"""BENCHMARKS.md's section for issue #33, "Cost as the work grows": each goal of the issue
with its measured value, met or missed by how much (and why), or not measured yet.

Its results come from separate commands on separate commits (bench.scale, bench.fleet,
bench.soak, bench.durable_ack, all in `make bench`), so each row names its own results file,
commit, date and command; a file without them is not published.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from bench.common import RESULTS

__all__ = ["cost_section", "goal_rows"]

SOURCES = ("scale", "scale_ingest", "fleet", "soak", "durable_ack")
LIST_P99_MS, DASH_24H_MS, DASH_30D_MS = 100.0, 300.0, 1000.0
THROUGHPUT_RATIO, P99_RATIO, PRUNE_P99_MS, PRUNE_LOCK_MS = 0.8, 1.5, 100.0, 100.0
ALERTA_RATIO = 4.0
CPU_MS_GOAL = 3.0
DRIFT = 0.10
NOT_YET = "not measured yet"
Row = tuple[str, str, str, str]  # goal, measured, result, source


def _load(name: str, results: Path) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def source(name: str, data: dict[str, Any] | None) -> str:
    if data is None:
        return "-"
    meta = data.get("meta") or {}
    return (f"`{name}.json`: `{meta['autofix_git']}`, {meta['date']}, `{meta['command']}`"
            if all(meta.get(k) for k in ("autofix_git", "date", "command")) else "-")


def _published(name: str, data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The file's figures, or None: absent, failed, or not saying where it comes from."""
    if data is None or "error" in data or source(name, data) == "-":
        return None
    return data


def _met(ok: bool, missed: str) -> str:
    return "met" if ok else f"**missed** {missed}"


def _webhook_rows(goals: list[str], name: str, data: dict[str, Any]) -> list[Row]:
    """Throughput and p99 at the largest size as ratios to the first size's (same run)."""
    src = source(name, data)
    top, base = max(data["sizes"]), data["sizes"][0]
    at, first = data["at"][str(top)]["webhook"], data["at"][str(base)]["webhook"]
    ratio = data["growth"][str(top)]["webhook"]
    where = "" if top >= 10_000_000 else f" at {top:,}"
    # A 10M goal measured at a smaller size says so in its result too.
    short = "" if top >= 10_000_000 else f" at {top:,}; 10M not run yet"
    load = data["at"][str(top)].get("load_average")
    runs = (f"median of {at['repeats']} wrk runs of {at.get('window_s', 5)} s"
            + (f"; load average {load[0]:g} on 2 cores" if load else ""))
    thr, p99 = ratio["throughput_ratio"], ratio["p99_ratio"]
    return [
        (goals[0], f"{thr}x: {at['throughput_rps_median']:.1f} req/s{where} vs "
                   f"{first['throughput_rps_median']:.1f} at {base:,} ({runs})",
         _met(thr is not None and thr >= THROUGHPUT_RATIO,
              f"by {THROUGHPUT_RATIO - (thr or 0):.2f}x") + short, src),
        (goals[1], f"{p99}x: {at['p99_ms']:.1f} ms{where} vs {first['p99_ms']:.1f} ms at "
                   f"{base:,} ({runs})",
         _met(p99 is not None and p99 <= P99_RATIO, f"by {(p99 or 0) - P99_RATIO:.2f}x")
         + short, src)]


def _prune_rows(goals: list[str], name: str, data: dict[str, Any]) -> list[Row]:
    src = source(name, data)
    prune = data["prune"]
    during, without = prune["webhook_during"], prune["webhook_without"]
    deleted = (prune["prune"].get("deleted") or {}).get("incidents")
    what = (f"{deleted:,} incidents (with their runs and actions) in "
            f"{prune['prune']['seconds']:g} s" if deleted is not None
            else f"prune failed: {prune['prune'].get('error')}")
    load = prune.get("load_average", {}).get("before")
    loaded = f"; load average {load[0]:g} on 2 cores" if load else ""
    waits = prune["lock_wait_max_ms"]
    p99 = during["p99_ms"]
    lock = waits["during_blocked_by_prune"]
    return [
        (goals[0], f"p99 {p99:.1f} ms during the prune ({prune['windows_during']} wrk windows"
                   f", worst {prune['worst_window_p99_ms']:.1f} ms) vs {without['p99_ms']:.1f}"
                   f" ms without; {what}{loaded}",
         _met(p99 <= PRUNE_P99_MS and deleted is not None,
              f"by {p99 - PRUNE_P99_MS:.1f} ms" + (" (also without the prune: the machine"
                                                    " was loaded)" if without["p99_ms"] >
                                                   PRUNE_P99_MS else "")), src),
        (goals[1], f"longest wait blocked by the prune {lock:g} ms (any lock wait: "
                   f"{waits['during_any']:g} ms during, {waits['without_prune']:g} ms "
                   f"without; pg_locks sampled every {prune['sample_every_s'] * 1000:g} ms)",
         _met(lock <= PRUNE_LOCK_MS and deleted is not None,
              f"by {lock - PRUNE_LOCK_MS:.1f} ms"), src)]


def _pick(candidates: tuple[tuple[str, dict[str, Any] | None], ...],
          has: Any) -> tuple[str, dict[str, Any]] | None:
    """The first published file that has the figures."""
    return next(((n, d) for n, d in candidates if d is not None and has(d)), None)


def _has_webhook(data: dict[str, Any]) -> bool:
    return "webhook" in data.get("growth", {}).get(
        str(max(data["sizes"])), {})


def _scale_rows(data: dict[str, Any] | None, ingest: dict[str, Any] | None = None
                ) -> list[Row]:
    """`data` (scale.json): lists and dashboards; the webhook and the prune come from it
    when it has them, else from `ingest` (scale_ingest.json, the write-side slices)."""
    src = source("scale", data)
    goals = ["10M incidents: webhook throughput >= 0.8x the empty database's (same run)",
             "10M incidents: webhook p99 <= 1.5x the empty database's (same run)",
             f"10M incidents: incident and action lists p99 < {LIST_P99_MS:g} ms",
             f"10M incidents: every dashboard query < {DASH_24H_MS:g} ms over 24 h",
             f"10M incidents: every dashboard query < {DASH_30D_MS / 1000:g} s over 30 d",
             "1M-row prune: webhook p99 <= 100 ms while it runs",
             "1M-row prune: no lock blocks ingest > 100 ms"]
    candidates = (("scale", data), ("scale_ingest", ingest))
    webhook_from = _pick(candidates, _has_webhook)
    prune_from = _pick(candidates, lambda d: "prune" in d)
    write_rows = (_webhook_rows(goals[:2], *webhook_from) if webhook_from
                  else [(goal, "-", f"{NOT_YET} (bench/scale.py --slices webhook)", "-")
                        for goal in goals[:2]])
    prune_rows = (_prune_rows(goals[5:], *prune_from) if prune_from
                  else [(goal, "-", f"{NOT_YET} (bench/scale.py --slices prune)", "-")
                        for goal in goals[5:]])
    if data is None:
        return [*write_rows, *((goal, "-", NOT_YET, "-") for goal in goals[2:5]), *prune_rows]
    top = max(data["sizes"])
    at = data["at"][str(top)]
    where = "" if top >= 10_000_000 else f" (at {top:,}, not 10M)"
    rows: list[Row] = list(write_rows)
    cases = [(f"{route} {case}", f["p99_ms"]) for route, by_case in at.get("api", {}).items()
             for case, f in by_case.items()]
    if cases:
        worst, p99 = max(cases, key=lambda c: c[1])
        rows.append((goals[2], f"worst p99 {p99:.1f} ms ({worst}){where}",
                     _met(p99 < LIST_P99_MS, f"by {p99 - LIST_P99_MS:.1f} ms"), src))
    else:
        rows.append((goals[2], "-", NOT_YET, src))
    queries = at.get("dashboards", {}).get("queries", [])
    for goal, label, limit in ((goals[3], "24h", DASH_24H_MS), (goals[4], "30d", DASH_30D_MS)):
        timed = [(q["where"], q["ranges"][label]["ms"]) for q in queries
                 if label in q.get("ranges", {})]
        failed = [q["where"] for q in queries if q.get("error")]
        over = sorted(((w, ms) for w, ms in timed if ms >= limit), key=lambda x: -x[1])
        slowest = max(timed, key=lambda x: x[1]) if timed else ("-", float("nan"))
        measured = (f"slowest {slowest[1]:,.1f} ms ({slowest[0]}) of {len(timed)} queries"
                    f"{where}" + (f"; {len(failed)} failed" if failed else ""))
        missed = ("by " + ", ".join(f"{w} {ms - limit:,.0f} ms" for w, ms in over)
                  + ": each aggregates every row of the range (millions at 10M); what would "
                  "meet it is pre-aggregation (bench/NOTES.md section 9)") if over else \
            f"({len(failed)} queries failed)"
        rows.append((goal, measured, _met(not over and not failed, missed), src))
    return [*rows, *prune_rows]


def _why_lost(lost: dict[str, int]) -> str:
    why = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in lost.items() if n)
    if lost.get("rejected"):
        why += ("; refused with a 5xx, nothing acknowledged: Alertmanager resends it, the "
                "soak's sender does not")
    return why


def _soak_rows(data: dict[str, Any] | None) -> list[Row]:
    goals = [f"soak: RSS of each worker within {DRIFT:.0%} of its value after 5 minutes",
             f"soak: open fds of each worker within {DRIFT:.0%} of their value after 5 "
             "minutes", "soak: 0 notifications lost", "soak: 0 runs stuck",
             "soak: outbox drained at the end"]
    if data is None:
        return [(goal, "-", f"{NOT_YET} (python -m bench.soak --minutes 60)", "-")
                for goal in goals]
    src = source("soak", data)
    span = (f" over {data['minutes']:g} min at {data['load']['achieved_rate_per_s']:g}/s"
            + ("" if data["minutes"] >= 60 else "; the hour not run yet"))
    workers = data["memory"]["workers"]
    rows: list[Row] = []
    for goal, key, unit in ((goals[0], "rss_kib", "RSS"), (goals[1], "fds", "fds")):
        changes = [w[f"{key}_max_change"] for w in workers.values()]
        known = [c for c in changes if c is not None]
        if not known:
            rows.append((goal, "-", NOT_YET, src))
            continue
        worst = max(known)
        gone = any(w.get("gone") for w in workers.values())
        measured = (f"largest {unit} change {worst:.1%} from {data['memory']['baseline_t_s']:g}"
                    f" s on{span}" + ("; a worker was replaced" if gone else ""))
        rows.append((goal, measured, _met(worst <= DRIFT and not gone and len(known) ==
                                          len(changes), f"by {worst - DRIFT:.1%}"), src))
    lost = data["lost_total"]
    rows.append((goals[2], f"{lost} of {data['load']['sent']:,} sent{span}",
                 _met(lost == 0, f"by {lost} ({_why_lost(data['lost'])})"), src))
    stuck = max([data["final"]["runs_stuck"], *(s["runs_stuck"] for s in data["samples"])])
    rows.append((goals[3], f"{stuck} at most (a run unfinished {data['stuck_after_s']} s after "
                 f"it was queued){span}", _met(stuck == 0, f"by {stuck}"), src))
    drained = data["drained_after_s"]
    left = data["final"]["outbox_pending"]
    rows.append((goals[4], f"{left} left, drained {drained} s after the load stopped"
                 if drained is not None else f"{left} left after {data['drain_limit_s']:g} s",
                 _met(drained is not None, f"({left} messages left)"), src))
    return rows


def _fleet_rows(data: dict[str, Any] | None) -> list[Row]:
    goals = ["fleet: one hung container among 500 answering again within the hang budget "
             "(12.25 s) + 2 s", "fleet: idle Docker API calls < 1/s per host",
             "fleet: no guard inspects every container during a 50-container storm"]
    if data is None:
        return [(goal, "-", NOT_YET, "-") for goal in goals]
    src = source("fleet", data)
    hang, idle = data["hang"], data["idle_docker_calls"]
    limit = data["goals"]["hang_answering_s"]
    median = hang["answering_median_s"]
    of = f" ({data['containers']} containers)"
    touched = sorted({name for phase in data["storm"].values()
                      for name in phase["docker_calls"]["other_containers_touched"]})
    return [
        (goals[0], f"median {median} s, max {hang['answering_max_s']} s of {data['repeats']}"
                   f"{of}", _met(median is not None and median < limit,
                                 f"by {(median or 0) - limit:.2f} s"), src),
        (goals[1], f"{idle['per_s']} /s over {idle['seconds']:g} s{of}",
         _met(idle["per_s"] is not None and idle["per_s"] < 1.0,
              f"by {(idle['per_s'] or 0) - 1:.2f} /s"), src),
        (goals[2], f"{len(touched)} containers outside the storm touched",
         _met(not touched, f"({', '.join(touched[:5])})"), src),
    ]


def _cpu_measured(cpu: dict[str, Any] | None) -> str:
    """What callgrind counted (cpu_instructions.json): instructions, not milliseconds, so
    load-independent; the milliseconds wait for a quiet machine."""
    if cpu is None:
        return "-"
    worker = cpu["whole_worker"]["per_request_millions"]
    raw, net = worker["raw_difference"], worker["net_of_idle"]
    return (f"instructions per request {raw['before']:g} M -> {raw['after']:g} M "
            f"({raw['change']:+.0%}; {net['change']:+.0%} net of idle), callgrind, "
            f"{cpu['before']} vs {_commit_in(cpu['after'])} (`cpu_instructions.json`)")


def _commit_in(text: str) -> str:
    found = re.search(r"\b[0-9a-f]{7,40}\b", text)
    return found.group(0) if found else text


def _cpu_ms_row(cpu: dict[str, Any] | None, ms: dict[str, Any] | None) -> Row:
    """Milliseconds from bench.cpu_per_request (cpu_per_request.json) when a published run
    exists, beside the instructions callgrind counted."""
    goal = f"receiver CPU per one-alert notification from 4.8 ms toward {CPU_MS_GOAL:g} ms"
    if ms is None:
        return (goal, _cpu_measured(cpu), f"{NOT_YET} in milliseconds on a quiet machine "
                "(4.80-4.93 ms before, bench/NOTES.md sections 8 and 12)", "-")
    ours = ms["summary"]["autofix"]
    measured = (f"{ours['cpu_ms']:.2f} ms ({ours['net_cpu_ms']:.2f} ms net of idle; median of "
                f"{ms['repeats']} repeats, machine idle "
                f"{statistics.median(r['machine_idle'] for r in ms['runs']['autofix']):.0%})")
    if "alerta" in ms["summary"]:
        measured += f"; alerta-server {ms['summary']['alerta']['cpu_ms']:.2f} ms in the same run"
    if cpu is not None:
        measured += f"; {_cpu_measured(cpu)}"
    return (goal, measured, _met(ours["cpu_ms"] <= CPU_MS_GOAL,
                                 f"by {ours['cpu_ms'] - CPU_MS_GOAL:.2f} ms"),
            source("cpu_per_request", ms))


def _ingest_rows(ack: dict[str, Any] | None, cpu: dict[str, Any] | None = None,
                 ms: dict[str, Any] | None = None) -> list[Row]:
    rows: list[Row] = [_cpu_ms_row(cpu, ms)]
    goal = f">= {ALERTA_RATIO:g}x alerta-server's new-alert rate in the same run"
    if ack is None or "vs_alerta" not in ack:
        return [*rows, (goal, "-", NOT_YET, "-")]
    ratio = ack["vs_alerta"]["throughput_ratio_median"]
    measured = (f"{ratio:.2f}x (median of {len(ack['vs_alerta']['throughput_ratios'])} "
                "repeats, section 5)")
    src = source("durable_ack", ack)
    before_cut = cpu is not None and str(ack["meta"]["date"]) < str(cpu["date"])
    later = (ms or {}).get("summary", {}).get("autofix", {}).get("throughput_vs_alerta")
    why = ("the 2 cores are saturated during autofix's runs (wrk, the 4 workers and "
           "PostgreSQL's share of each request); alerta-server is bounded by something other "
           "than CPU, so a cheaper request moves the ratio little (bench/NOTES.md section 14)")
    if before_cut and later and later.get("median") is not None:
        # Section 5 predates the CPU cut; cpu_per_request measured the ratio since.
        ratio = later["median"]
        measured = (f"{ratio:.2f}x after the CPU cut (median of {len(later['per_repeat'])} "
                    f"repeats, {min(later['per_repeat']):.2f}-{max(later['per_repeat']):.2f}); "
                    f"before it {measured}")
        src = f"{source('cpu_per_request', ms)}; {src}"
    elif before_cut:
        why = ("measured before #33's changes; since then ingest costs about 40% fewer "
               "instructions, not re-measured")
    return [*rows, (goal, measured, _met(ratio >= ALERTA_RATIO,
                                         f"by {ALERTA_RATIO - ratio:.2f}x, {why}"), src)]


def goal_rows(results: Path | None = None) -> list[Row]:
    where = results or RESULTS
    rows: list[Row] = []
    ingest = _published("scale_ingest", _load("scale_ingest", where))
    cpu = _load("cpu_instructions", where)
    ms = _published("cpu_per_request", _load("cpu_per_request", where))
    for name, make in (("scale", lambda d: _scale_rows(d, ingest)), ("soak", _soak_rows),
                       ("fleet", _fleet_rows), ("durable_ack", lambda d: _ingest_rows(d, cpu, ms))):
        raw = _load(name, where)
        made = make(_published(name, raw))
        if raw is not None and "error" in raw and source(name, raw) != "-":
            # Its last run failed: say so rather than "not measured yet".
            made = [(g, m, f"run failed: {str(raw['error'])[:120]}", source(name, raw))
                    if r.startswith(NOT_YET) else (g, m, r, s) for g, m, r, s in made]
        rows += made
    return rows


def _soak_table(data: dict[str, Any]) -> list[str]:
    pids = list(data["memory"]["workers"])
    lines = ["| t s | " + " | ".join(f"worker {i + 1} RSS MiB / fds" for i in range(len(pids)))
             + " | outbox pending | runs unfinished | runs stuck | load 1 min |",
             "|---:|" + "---:|" * (len(pids) + 4)]
    for s in data["samples"]:
        cells = [f"{w['rss_kib'] / 1024:.1f} / {w['fds']}" if (w := s["workers"].get(p))
                 else "gone" for p in pids]
        label = f"{s['t_s']:g}" + (" (drained)" if s.get("after_load") else "") + (
            " (baseline)" if s["t_s"] == data["memory"]["baseline_t_s"] else "")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {s['outbox_pending']} | "
                     f"{s['runs_unfinished']} | {s['runs_stuck']} | {s.get('load_1m', '-')} |")
    return lines


def write_side_table(name: str, data: dict[str, Any]) -> list[str]:
    """Webhook and claim at each size, then the prune, with the machine's load."""
    lines = ["### Scale: the webhook, the claim and the prune", "",
             f"From `bench/scale.py` ({source(name, data)}): wrk as section 5 measures it "
             "(8 connections, every request a new alert, shipped playbooks, 4 gthread "
             "workers, durable PostgreSQL), and `runner.claim_next` with 10,000 runs queued, "
             "the receiver stopped. The machine was shared with other benchmarks (load "
             "average below, 2 cores): the webhook figures are not ones to quote, and their "
             "ratios carry the load's swings as much as the database's size.", "",
             "| incidents | webhook req/s (median) | webhook p50 / p99 ms | x size 0 "
             "(throughput / p99) | claim p50 / p99 / max ms | load 1 min |",
             "|---:|---:|---:|---:|---:|---:|"]
    for size in data["sizes"]:
        at = data["at"][str(size)]
        w, c = at.get("webhook"), at.get("claim")
        g = data.get("growth", {}).get(str(size), {}).get("webhook")
        lines.append(
            f"| {size:,} | " + (f"{w['throughput_rps_median']:.1f} | {w['p50_ms']:.1f} / "
                               f"{w['p99_ms']:.1f} | " if w else "- | - | ")
            + (f"{g['throughput_ratio']} / {g['p99_ratio']} | " if g else "- | ")
            + (f"{c['p50_ms']:.1f} / {c['p99_ms']:.1f} / {c['max_ms']:.1f} | " if c else "- | ")
            + f"{(at.get('load_average') or ['-'])[0]} |")
    prune = data.get("prune")
    if prune:
        out, seeded = prune["prune"], prune["seeded"]
        windows = prune["window_p99s_ms"] or [float("nan")]
        deleted = out.get("deleted") or {}
        lines += ["", f"The prune: {seeded['incidents']:,} incidents ({seeded['runs']:,} runs, "
                  f"{seeded['actions']:,} actions) whose 90 days ended 92 days ago, in their "
                  f"own database, pruned with a {prune['retention_days']}-day retention by "
                  f"`receiver.store.migrate.prune` while wrk drove the webhook: deleted "
                  + (", ".join(f"{k} {v:,}" for k, v in deleted.items() if v) or
                     f"nothing ({out.get('error')})")
                  + f" in {out['seconds']:g} s; {prune['expired_left']:,} expired finished "
                  "incidents left (unfinished ones stay, as lifecycle says). "
                  f"Webhook p99 {prune['webhook_without']['p99_ms']:.1f} ms without, "
                  f"{prune['webhook_during']['p99_ms']:.1f} ms during ("
                  f"{len(windows)} windows of {prune['window_s']} s, their p99 from "
                  f"{min(windows):g} to {max(windows):g} ms, median "
                  f"{statistics.median(windows):g}); throughput "
                  f"{prune['webhook_without']['throughput_rps_median']:.1f} req/s without, "
                  f"{prune['webhook_during']['throughput_rps_median']:.1f} during. Longest "
                  f"lock wait (pg_locks.waitstart every {prune['sample_every_s'] * 1000:g} "
                  f"ms, {prune['lock_samples']:,} samples): "
                  f"{prune['lock_wait_max_ms']['during_blocked_by_prune']:g} ms blocked by "
                  f"the prune, {prune['lock_wait_max_ms']['during_any']:g} ms of any backend "
                  f"during it, {prune['lock_wait_max_ms']['without_prune']:g} ms without. "
                  f"Load average {prune['load_average']['before'][0]:g} before, "
                  f"{prune['load_average']['after'][0]:g} after."]
    return [*lines, ""]


def cost_section(results: Path | None = None) -> list[str]:
    where = results or RESULTS
    lines = ["## 10. Cost as the work grows (issue #33)", "",
             "Each goal of issue #33, with what ships (shipped playbooks, durable PostgreSQL, "
             "4 gthread workers). These come from separate commands, some on other commits "
             "than the sections above: each row names its results file, commit, date and "
             "command (`-dirty`: measured with uncommitted changes, as that file says). "
             "`make bench` runs all three: the soak's 10-minute mode (the issue's hour is "
             "`.venv/bin/python -m bench.soak --minutes 60`, about 65 minutes), the fleet "
             "of 500 containers and the scale at 0, 1M and 10M incidents (`python -m "
             "bench.run --only scale`; the smoke runs are `--quick`).", "",
             "| goal | measured | result | source |", "|---|---|---|---|"]
    lines += [f"| {g} | {m} | {r} | {s} |" for g, m, r, s in goal_rows(where)]
    lines.append("")
    for name in ("scale", "scale_ingest"):
        data = _published(name, _load(name, where))
        if data is not None and (_has_webhook(data) or "prune" in data):
            lines += write_side_table(name, data)
    soak = _published("soak", _load("soak", where))
    if soak is not None:
        load = soak["load"]
        kinds = ", ".join(f"{k} {v['accepted']:,}" for k, v in load["by_kind"].items())
        lines += ["### Soak", "",
                  f"From `bench/soak.py` ({source('soak', soak)}): {soak['receiver']}, "
                  f"{soak['pool_containers']} opted-in containers. {load['sent']:,} "
                  f"notifications sent in {soak['minutes']:g} min (target "
                  f"{load['target_rate_per_s']:g}/s, achieved {load['achieved_rate_per_s']:g}"
                  f"/s, {soak['connections']} connections, open loop: a request late is "
                  "sent at once, none skipped; at worst "
                  f"{load['behind_schedule_s']['max']:g} s behind schedule; accepted per "
                  f"minute {', '.join(f'{n:,}' for n in load['accepted_per_minute'])}), "
                  "accepted: "
                  f"{kinds}; webhook p50 {load['latency_ms']['p50']:g} ms, p99 "
                  f"{load['latency_ms']['p99']:g} ms. {soak['slack_requests']:,} Slack "
                  f"requests; receiver log errors: {soak['receiver_log_errors']}. The "
                  "machine was shared with other work: the latencies are not figures to "
                  "quote; RSS, fds, lost and stuck are.", "", *_soak_table(soak), ""]
    return lines
