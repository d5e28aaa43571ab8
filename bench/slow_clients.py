"""Latency of /healthz and an authenticated webhook POST while N unauthenticated sockets
trickle their headers one byte every 2 s (issue #14), against the real `autofix serve`
with its default 2 workers on PostgreSQL.

    python -m bench.slow_clients                  # 0, 64 and 256 slow sockets
    python -m bench.slow_clients --sockets 0,64 --samples 20

Writes bench/results/slow_clients.json. Not part of `bench.run` (a separate measurement,
so BENCHMARKS.md is left as the last full run wrote it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import RESULTS
from bench.loadgen import percentile
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN
from tests.harness.postgres import start_postgres
from tests.harness.receiver import start_receiver
from tests.harness.slow_clients import TRICKLE_EVERY_S, Trickler, timed
from tests.payloads import alert, notification


def measure(url: str, samples: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"healthz_ms": [], "webhook_ms": []}
    for index in range(samples):
        _, took = timed(urllib.request.Request(f"{url}/healthz"))
        out["healthz_ms"].append(took * 1000)
        body = json.dumps(notification([alert({"container": f"b{index}"})])).encode()
        _, took = timed(urllib.request.Request(
            f"{url}/webhook/alertmanager", data=body, method="POST",
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {WEBHOOK_TOKEN}"}))
        out["webhook_ms"].append(took * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", default="0,64,256")
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    postgres = start_postgres()
    rows: list[dict[str, Any]] = []
    try:
        for count in (int(n) for n in args.sockets.split(",")):
            root = Path(tempfile.mkdtemp(prefix="autofix-bench-slow-"))
            receiver = start_receiver(postgres.create_database(), workers=2, root=root, env={
                "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
                "AUTOFIX_DOCKER_HOST": "unix:///nonexistent/docker.sock"})
            trickler = Trickler(receiver.port, count).start() if count else None
            try:
                time.sleep(TRICKLE_EVERY_S + 0.5)
                result = measure(receiver.url, args.samples)
            finally:
                if trickler is not None:
                    trickler.stop()
                    trickler.reap()
                receiver.stop()
            row = {"slow_sockets": count, "samples": args.samples}
            for name, values in result.items():
                row[f"{name}_p50"] = round(percentile(values, 50), 2)
                row[f"{name}_p99"] = round(percentile(values, 99), 2)
                row[f"{name}_max"] = round(max(values), 2)
            rows.append(row)
            print(json.dumps(row))
    finally:
        postgres.discard()
    RESULTS.mkdir(parents=True, exist_ok=True)
    from bench.run import run_meta

    (RESULTS / "slow_clients.json").write_text(json.dumps(
        {"benchmark": "slow_clients", "workers": 2, "threads_per_worker": 8,
         "trickle_every_s": TRICKLE_EVERY_S, "rows": rows,
         "meta": run_meta("bench.slow_clients", None)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
