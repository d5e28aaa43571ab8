"""CPU time per one-alert webhook request, split by process, side by side.

    python -m bench.cpu_per_request [--baseline TREE] [--alerta] [--repeats 5] [--seconds 6]
                                    [--together]

`autofix serve --workers 4` with the shipped playbooks on a durable PostgreSQL, 8 wrk
connections, every request a new alert in a group of its own. Beside it, in the same run
and on the same PostgreSQL server (each its own database): `--baseline TREE` serves another
checkout of autofix (e.g. `git archive e9b1288 | tar -x -C /tmp/base`), `--alerta`
alerta-server as bench/durable_ack.py runs it. Each target first takes 2 s of load
(discarded); then every repeat runs each target once, the order rotating between repeats.
CPU time is read from /proc (utime + stime) for the target's processes and for this
cluster's PostgreSQL backends, per request; the figures are the medians of the repeats, and
throughput ratios are taken within a repeat, then their median. `--together` loads every
target at once, each with its own wrk (on a shared machine the load moves between runs
seconds apart; at once, every target meets the same). Writes
bench/results/cpu_per_request[_together].json. bench/NOTES.md sections 7, 8 and 10 quote it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.loadgen import LoadSpec
from bench.servers import Server, Stack, alerta_venv
from bench.wrk_load import run_wrk

SHIPPED = Path(__file__).resolve().parents[1] / "receiver" / "playbooks.yml"
RESULT = Path(__file__).resolve().parent / "results" / "cpu_per_request.json"
TICK = os.sysconf("SC_CLK_TCK")
WARMUP_S = 2.0


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def process_cpu_s(pids: list[int]) -> tuple[float, float]:
    """(user, system) seconds of `pids`."""
    user = system = 0
    for pid in pids:
        try:
            fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / TICK, system / TICK


def machine_idle_share(before: list[int], after: list[int]) -> float:
    """Idle and iowait over all of /proc/stat's time between two readings."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return (spent[3] + spent[4]) / sum(spent)


def machine_ticks() -> list[int]:
    return [int(v) for v in _read("/proc/stat").splitlines()[0].split()[1:9]]


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def cluster_pids(data_dir: Path) -> list[int]:
    """This cluster's postmaster and backends only: other PostgreSQL servers may run on a
    shared machine."""
    postmaster = int(_read(str(data_dir / "postmaster.pid")).splitlines()[0])
    return [postmaster, *children(postmaster)]


def backend_cpu(data_dir: Path, database: str) -> dict[int, float]:
    """CPU seconds of each of this cluster's backends connected to `database` (the title
    PostgreSQL gives them: `postgres: user database host(port) state`)."""
    out = {}
    for pid in cluster_pids(data_dir)[1:]:
        try:
            title = _read(f"/proc/{pid}/cmdline").replace("\0", " ").split()
        except OSError:
            continue
        if len(title) > 2 and title[0] == "postgres:" and title[2] == database:
            out[pid] = sum(process_cpu_s([pid]))
    return out


def measure_together(targets: list[Server], databases: list[str], postgres_dir: Path,
                     tag: int, seconds: float) -> list[dict[str, Any]]:
    """Every target under its own wrk at the same time, so all of them meet the same
    machine (on a shared machine, load moves between runs seconds apart). PostgreSQL's CPU
    is that of each target's own backends (the WAL writer and checkpointer are shared)."""
    specs = [LoadSpec(t.url, t.webhook, t.headers, 1, 8, 1_000_000, seconds, tag + i,
                      repeat_every=1) for i, t in enumerate(targets)]
    pids = [t.pids() for t in targets]
    before = [(process_cpu_s(p), backend_cpu(postgres_dir, d)) for p, d in zip(
        pids, databases, strict=True)]
    ticks = machine_ticks()
    with ThreadPoolExecutor(len(targets)) as pool:
        results = list(pool.map(run_wrk, specs))
    idle = machine_idle_share(ticks, machine_ticks())
    out = []
    for result, p, d, (cpu, backends) in zip(results, pids, databases, before, strict=True):
        n = max(1, result["requests"])
        now = process_cpu_s(p)
        after = backend_cpu(postgres_dir, d)
        postgres = sum(v - backends.get(pid, 0.0) for pid, v in after.items())
        user, system = (now[0] - cpu[0]) / n * 1000, (now[1] - cpu[1]) / n * 1000
        out.append({"requests": result["requests"], "throughput_rps": result["throughput_rps"],
                    "p99_ms": result["p99_ms"], "errors": sum(result["errors"].values()),
                    "cpu_ms": user + system, "user_ms": user, "system_ms": system,
                    # None: no backend of it lived through the run (alerta connects per
                    # request), so its PostgreSQL time cannot be told apart here.
                    "postgres_cpu_ms": postgres / n * 1000 if after else None,
                    "machine_idle": idle})
    return out


def measure(target: Server, postgres_dir: Path, tag: int, seconds: float) -> dict[str, Any]:
    spec = LoadSpec(target.url, target.webhook, target.headers, 1, 8, 1_000_000, seconds, tag,
                    repeat_every=1)
    ours = target.pids()
    before = (process_cpu_s(ours), process_cpu_s(cluster_pids(postgres_dir)), machine_ticks())
    result = run_wrk(spec)
    # Backends opened during the run are counted from 0: their time is all in the run.
    after = (process_cpu_s(ours), process_cpu_s(cluster_pids(postgres_dir)), machine_ticks())
    n = max(1, result["requests"])
    user = (after[0][0] - before[0][0]) / n * 1000
    system = (after[0][1] - before[0][1]) / n * 1000
    postgres = (sum(after[1]) - sum(before[1])) / n * 1000
    return {"requests": result["requests"], "throughput_rps": result["throughput_rps"],
            "p99_ms": result["p99_ms"], "errors": sum(result["errors"].values()),
            "cpu_ms": user + system, "user_ms": user, "system_ms": system,
            "postgres_cpu_ms": postgres,
            "machine_idle": machine_idle_share(before[2], after[2])}


def idle_cpu_per_s(targets: list[Server], seconds: float = 4.0) -> dict[str, float]:
    """CPU ms per second each target spends with no request at all (runner poller, intent
    follower, gunicorn's loop), all idle at the same time."""
    import time

    pids = {t.name: t.pids() for t in targets}
    before = {name: sum(process_cpu_s(p)) for name, p in pids.items()}
    time.sleep(seconds)
    return {name: round((sum(process_cpu_s(p)) - before[name]) / seconds * 1000, 2)
            for name, p in pids.items()}


def main(argv: list[str] | None = None) -> None:
    from bench.run import run_meta

    parser = argparse.ArgumentParser(prog="python -m bench.cpu_per_request")
    parser.add_argument("--baseline", type=Path, help="another autofix tree, served beside")
    parser.add_argument("--alerta", action="store_true", help="alerta-server beside")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--together", action="store_true",
                        help="load every target at the same time (measure_together)")
    args = parser.parse_args(argv)
    from tests.harness.postgres import start_postgres

    meta = run_meta("bench.cpu_per_request", argv)

    stack = Stack()
    info: dict[str, Any] = {}
    try:
        stack.postgres = pg = start_postgres(durable=True)
        targets = [stack.start_autofix("autofix", pg.create_database("cpu"), 4,
                                       playbooks=SHIPPED.read_text())]
        databases = ["cpu"]
        if args.baseline is not None:
            info["baseline"] = str(args.baseline)
            targets.append(stack.start_autofix("baseline", pg.create_database("cpu_base"), 4,
                                               playbooks=SHIPPED.read_text(),
                                               source=args.baseline.resolve()))
            databases.append("cpu_base")
        if args.alerta:
            python, version = alerta_venv()
            if python is None:
                raise RuntimeError(f"alerta-server unavailable: {version}")
            info["alerta_version"] = version
            pg.create_database("cpu_alerta")
            targets.append(stack.start_alerta(
                python, pg.url("cpu_alerta").replace("postgresql+psycopg2://", "postgresql://"),
                4))
            databases.append("cpu_alerta")
        tag = 20_000
        for target in targets:
            tag += 1
            measure(target, pg.data, tag, WARMUP_S)
        idle = idle_cpu_per_s(targets)
        info["idle_cpu_ms_per_s"] = idle
        runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
        for repeat in range(args.repeats):
            shift = repeat % len(targets)
            order = targets[shift:] + targets[:shift]
            if args.together:
                tag += len(targets)
                measured = measure_together(targets, databases, pg.data, tag, args.seconds)
            else:
                measured = []
                for target in order:
                    tag += 1
                    measured.append(measure(target, pg.data, tag, args.seconds))
                measured = [measured[order.index(t)] for t in targets]
            for target, result in zip(targets, measured, strict=True):
                # Net of what the target spends idle (its pollers), spread over the run.
                result["net_cpu_ms"] = result["cpu_ms"] - (idle[target.name] / result[
                    "throughput_rps"] if result["throughput_rps"] else 0.0)
                runs[target.name].append(result)
                print(f"rep {repeat} {target.name:<9} {result['throughput_rps']:5.0f} req/s "
                      f"p99 {result['p99_ms']:6.1f} ms; CPU ms per request: "
                      f"{result['cpu_ms']:.2f} (user {result['user_ms']:.2f}, system "
                      f"{result['system_ms']:.2f}; net of idle {result['net_cpu_ms']:.2f}), "
                      f"postgres {_ms(result['postgres_cpu_ms'])}; "
                      f"machine idle {result['machine_idle']:.0%}", flush=True)
        summary = _summary(runs)
        print(json.dumps(summary, indent=2))
        RESULT.parent.mkdir(exist_ok=True)
        result_path = RESULT.with_stem(RESULT.stem + "_together") if args.together else RESULT
        result_path.write_text(json.dumps({"name": "cpu_per_request", "info": info,
                                      "repeats": args.repeats, "seconds": args.seconds,
                                      "together": args.together,
                                      "summary": summary, "runs": runs,
                                      "meta": {**meta, "postgres_version":
                                               stack.postgres_version()}},
                                     indent=2) + "\n")
    finally:
        stack.close()


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, results in runs.items():
        out[name] = {key: _median([r[key] for r in results])
                     for key in ("cpu_ms", "net_cpu_ms", "user_ms", "system_ms",
                                 "postgres_cpu_ms", "throughput_rps", "p99_ms")}
        out[name]["errors"] = sum(r["errors"] for r in results)
    for reference in ("alerta", "baseline"):
        if reference not in runs:
            continue
        for name, results in runs.items():
            if name == reference or (reference == "baseline" and name == "alerta"):
                continue
            ratios = [a["throughput_rps"] / b["throughput_rps"]
                      for a, b in zip(results, runs[reference], strict=True)
                      if b["throughput_rps"] > 0]
            out[name][f"throughput_vs_{reference}"] = {
                "median": round(statistics.median(ratios), 3) if ratios else None,
                "per_repeat": [round(r, 3) for r in ratios]}
    return out


if __name__ == "__main__":
    main()
