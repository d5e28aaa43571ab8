"""CPU time per one-alert webhook request, split by process.

    python -m bench.cpu_per_request

`autofix serve --workers 4` with the shipped playbooks on a durable PostgreSQL, 8 senders,
every request a new alert, after a 2 s warm-up; CPU time is read from /proc over 8 s of
load for the receiver's processes, for PostgreSQL's, and for the whole machine (the load
generator is most of the rest). bench/NOTES.md section 7 quotes it (5.86 -> 4.92 ms).
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.loadgen import LoadSpec, run_load
from bench.servers import Stack

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


def machine_cpu_s() -> float:
    return sum(float(v) for v in _read("/proc/stat").splitlines()[0].split()[1:8]) / TICK


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

        def load(seconds: float, tag: int) -> dict[str, float]:
            return run_load(LoadSpec(ours.url, ours.webhook, ours.headers, 1, 8, 20000,
                                     seconds, tag, repeat_every=1))

        load(2.0, 1)  # warm-up
        receiver, postgres = ours.pids(), postgres_pids()
        before = (process_cpu_s(receiver), process_cpu_s(postgres), machine_cpu_s())
        result = load(8.0, 2)
        after = (process_cpu_s(receiver), process_cpu_s(postgres), machine_cpu_s())
        n = result["requests"]
        per = [(b - a) / n * 1000 for a, b in zip(before, after, strict=True)]
        print(f"{result['throughput_rps']:.0f} req/s over {n} requests; CPU ms per request: "
              f"receiver {per[0]:.2f}, postgres {per[1]:.2f}, whole machine {per[2]:.2f}")
    finally:
        stack.close()


if __name__ == "__main__":
    main()
