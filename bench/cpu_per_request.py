"""CPU time per one-alert webhook request, split by process.

    python -m bench.cpu_per_request

`autofix serve --workers 4` with the shipped playbooks on a durable PostgreSQL, 8
connections, every request a new alert, after a 2 s warm-up; then 6 s runs alternating wrk
and the Python load generator, twice. CPU time is read from /proc for the receiver's
processes and PostgreSQL's, per request, and the machine's idle share (near 0: CPU-bound).
bench/NOTES.md sections 7 and 8 quote it.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.loadgen import LoadSpec, run_load
from bench.servers import Stack
from bench.wrk_load import run_wrk

SHIPPED = Path(__file__).resolve().parents[1] / "receiver" / "playbooks.yml"
TICK = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def process_cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICK


def machine_idle_share(before: list[int], after: list[int]) -> float:
    """Idle and iowait over all of /proc/stat's time between two readings."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return (spent[3] + spent[4]) / sum(spent)


def machine_ticks() -> list[int]:
    return [int(v) for v in _read("/proc/stat").splitlines()[0].split()[1:9]]


def postgres_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _read(f"/proc/{entry}/comm").startswith("postgres"):
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def main() -> None:
    from tests.harness.postgres import start_postgres

    stack = Stack()
    try:
        stack.postgres = start_postgres(durable=True)
        ours = stack.start_autofix("cpu", stack.postgres.create_database("cpu"), 4,
                                   playbooks=SHIPPED.read_text())

        def spec(seconds: float, tag: int) -> LoadSpec:
            return LoadSpec(ours.url, ours.webhook, ours.headers, 1, 8, 20000, seconds, tag,
                            repeat_every=1)

        run_wrk(spec(2.0, 1))  # warm-up
        receiver, postgres = ours.pids(), postgres_pids()
        for tag, load in enumerate((run_wrk, run_load, run_wrk, run_load), start=2):
            before = (process_cpu_s(receiver), process_cpu_s(postgres), machine_ticks())
            result = load(spec(6.0, tag))
            after = (process_cpu_s(receiver), process_cpu_s(postgres), machine_ticks())
            n = result["requests"]
            print(f"{load.__module__.split('.')[-1]:<9} {result['throughput_rps']:4.0f} req/s; "
                  f"CPU ms per request: receiver {(after[0] - before[0]) / n * 1000:.2f}, "
                  f"postgres {(after[1] - before[1]) / n * 1000:.2f}; machine idle "
                  f"{machine_idle_share(before[2], after[2]):.0%}", flush=True)
    finally:
        stack.close()


if __name__ == "__main__":
    main()
