"""`make bench`: run the benchmarks, write bench/results/<name>.json, render BENCHMARKS.md.

    python -m bench.run                       # everything: an estimated 1.5 hours
                                              # (not timed end to end), from its parts'
                                              # own runs: scale at 0, 1M and 10M about
                                              # 40 min, fleet 6, the soak's 10-minute
                                              # mode 12, the rest about 18
    python -m bench.run --quick --only webhook_ack   # smoke run: SQLite only, seconds;
                                                     # writes bench/results/quick/
    python -m bench.soak --minutes 60         # the full one-hour soak (issue #33), alone
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import render
from bench.common import QUICK_RESULTS, RESULTS, results_dir, set_results_dir
from bench.servers import ROOT, Stack

BENCHMARKS = ("webhook_ack", "restart_latency", "ttr", "durable_ack", "storm", "hang_ttr",
              "evidence_capture", "swarm_hang_ttr", "soak", "fleet", "scale")
# What ships (issue #17), evidence (#20) and the soak (#33; its smoke is tests/
# test_bench_smoke.py): minutes each, nothing to shrink into a smoke run here. The fleet
# and scale (#33) have smoke runs: 50 containers; 2,000 incidents.
FULL_ONLY = ("durable_ack", "storm", "hang_ttr", "evidence_capture", "swarm_hang_ttr",
             "soak")
SOAK_MINUTES = 10  # `make bench`'s soak; the full hour: python -m bench.soak --minutes 60


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo
                    if line.startswith("model name")), cpu)
        mem_kb = next(int(line.split()[1]) for line in
                      Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
    except OSError:
        mem_kb = 0
    import os

    return {"nproc": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "cpu_model": cpu, "kernel": platform.release()}


def git_sha() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + ("-dirty" if dirty else "")


def run_meta(module: str, argv: list[str] | None) -> dict[str, Any]:
    """What every results file says of itself: when, by which command, on which commit
    (bench/render.py refuses a file without them) and on what machine."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([f".venv/bin/python -m {module}",
                             *map(shlex.quote, argv if argv is not None else sys.argv[1:])]),
        "machine": machine(), "python": platform.python_version(), "autofix_git": git_sha(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of a few seconds (SQLite only, tiny cases)")
    parser.add_argument("--only", choices=BENCHMARKS, action="append",
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--no-render", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--repeats", type=int, default=5, help="runs per TTR scenario")
    parser.add_argument("--no-shipped", action="store_true",
                        help="time to recover with the test intervals only")
    args = parser.parse_args(argv)
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so every server started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    selected = args.only or [b for b in BENCHMARKS if not (args.quick and b in FULL_ONLY)]
    meta = run_meta("bench.run", argv)
    set_results_dir(QUICK_RESULTS if args.quick else RESULTS)
    stack = Stack()
    status = 0
    try:
        for name in selected:
            started = time.monotonic()
            own_meta: dict[str, Any] = {}
            print(f"== {name}", flush=True)
            try:
                if name == "webhook_ack":
                    from bench import webhook_ack

                    data = webhook_ack.run(stack, quick=args.quick)
                elif name == "ttr":
                    from bench import ttr

                    data = ttr.run(quick=args.quick, repeats=args.repeats,
                                   shipped=not args.no_shipped)
                elif name == "durable_ack":
                    from bench import durable_ack

                    data = durable_ack.run()
                elif name == "storm":
                    from bench import storm

                    data = storm.run()
                elif name == "hang_ttr":
                    from bench import hang_ttr

                    data = hang_ttr.run(repeats=args.repeats)
                elif name == "swarm_hang_ttr":
                    from bench import swarm_hang_ttr

                    data = swarm_hang_ttr.run(repeats=args.repeats)
                elif name == "soak":
                    from bench import soak

                    data = soak.run(minutes=SOAK_MINUTES)
                elif name == "fleet":
                    from bench import fleet

                    data = {**fleet.run_mode(args.quick), "quick": args.quick}
                elif name == "scale":
                    from bench import scale

                    data = {**scale.run_mode(args.quick), "quick": args.quick}
                    own_meta = {"postgres_version": data.pop("postgres_version", None)}
                elif name == "evidence_capture":
                    from bench import evidence_capture

                    data = evidence_capture.run()
                else:
                    from bench import restarts

                    data = restarts.run(stack, quick=args.quick)
            except Exception as exc:
                status = 1
                data = {"name": name, "error": f"{type(exc).__name__}: {exc}"}
                print(f"   {name} failed: {data['error']}", file=sys.stderr)
            if stack.postgres is not None:
                meta["postgres_version"] = stack.postgres_version()
            data["meta"] = {**meta, **own_meta,
                            "seconds": round(time.monotonic() - started, 1)}
            results_dir().mkdir(parents=True, exist_ok=True)
            (results_dir() / f"{name}.json").write_text(
                json.dumps(data, indent=2, default=str) + "\n")
    finally:
        stack.close()
    if not args.no_render and not args.quick:
        try:
            print(f"wrote {render.render()}")
        except render.RenderRefused as exc:
            print(f"BENCHMARKS.md not written: {exc}", file=sys.stderr)
            return 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
