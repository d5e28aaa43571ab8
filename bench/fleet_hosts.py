"""A hang on the second Docker host of a fleet (issue #32), with the shipped intervals.

    python -m bench.fleet_hosts            # 5 rounds each -> bench/results/fleet_hosts.json
    python -m bench.fleet_hosts --hosts 2  # 1 host, then 2 hosts only

One stack per configuration (tests/harness/stack.py, fast=False: the shipped rules,
Alertmanager config and playbooks), all running at once, each on its own daemons and
database, rounds alternated between them:
  * one host: AUTOFIX_DOCKER_HOST and the shipped `containers` job, as bench/hang_ttr.py;
  * N hosts (2 and 4): AUTOFIX_DOCKER_HOSTS naming host `a` (a private dockerd's unix
    socket) and `b`, `c`, ... (private dockerds over tcp:// with TLS client certificates),
    Prometheus with docs/examples/prometheus-fleet.yml's jobs (one docker_sd job per host,
    https:// with the client certificate), a target_app `app` idling on every host but b.
In every round a fresh target_app on host b (on the one host) hangs;
timed, as bench/hang_ttr.py does (its code), from the hang to `/healthz` answering again
from the restarted container. Goal: each fleet median within the hang budget of
BENCHMARKS.md (12.25 s, median of 5), reported beside the one-host median of this run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker.errors

from bench.hang_ttr import _autofix, _median

HANG_BUDGET_S = 12.25
MEASURED = "b"  # the second host


def _stack(postgres: Any, root: Path, dockerd: Any, image: str, hosts: list[Any]) -> Any:
    """A stack on its own daemons (each Prometheus would scrape, and each receiver restart,
    what another stack runs on a shared one), `app` idling on every host but b."""
    from receiver.store.migrate import upgrade
    from tests.harness.stack import start_stack

    url = postgres.create_database()
    upgrade(url)
    stack = start_stack(root, dockerd, image, url, fast=False, hosts=hosts)
    try:
        for host in hosts:
            if host.name != MEASURED:
                stack.run_target(host=host.name, name="app")
    except BaseException:
        stack.stop()
        raise
    return stack


def run(repeats: int = 5, host_counts: tuple[int, ...] = (2, 4)) -> dict[str, Any]:
    from tests.harness.dockerd import Dockerd, start_dockerd
    from tests.harness.fleet_hosts import copy_image, start_tls_host, unix_host
    from tests.harness.images import ensure_target_app_image
    from tests.harness.postgres import start_postgres
    from tests.harness.tls_certs import make_docker_certs

    root = Path(tempfile.mkdtemp(prefix="autofix-fleet-hosts-"))
    postgres = start_postgres()
    daemons: list[Dockerd] = [start_dockerd(root / "one")]
    stacks: dict[int, Any] = {}
    try:
        image = ensure_target_app_image(daemons[0])
        certs = make_docker_certs(root / "certs")
        stacks[1] = _stack(postgres, root / "stack-1", daemons[0], image, [])
        for count in host_counts:
            first = start_dockerd(root / f"{count}-a")
            daemons.append(first)
            copy_image(daemons[0], first, image)
            hosts = [unix_host("a", first, certs)]
            for name in string.ascii_lowercase[1:count]:
                hosts.append(start_tls_host(name, root / f"{count}-{name}", certs))
                daemons.append(hosts[-1].dockerd)
                copy_image(daemons[0], hosts[-1].dockerd, image)
            stacks[count] = _stack(postgres, root / f"stack-{count}", first, image, hosts)
        load_before = round(os.getloadavg()[0], 2)
        # Rounds alternate between the stacks: load on a shared machine drifts, and each
        # round's figures are taken under the same.
        runs: dict[int, list[float | None]] = {count: [] for count in stacks}
        for index in range(repeats):
            for count, stack in stacks.items():
                runs[count].append(_autofix(stack, **({"host": MEASURED} if count > 1 else {})))
                print(f"   round {index + 1}, {count} host(s): answering again "
                      f"{runs[count][-1]}s", flush=True)
        fleets = [{"hosts": count, "runs": runs[count], "median_s": _median(runs[count])}
                  for count in host_counts]
        return {
            "name": "fleet_hosts", "repeats": repeats, "measured_host": MEASURED,
            "hang_budget_s": HANG_BUDGET_S,
            "one_host": {"hosts": 1, "runs": runs[1], "median_s": _median(runs[1])},
            "fleets": fleets, "nproc": os.cpu_count(),
            "load_average_1m": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
            "goal_met": all(f["median_s"] is not None and f["median_s"] <= HANG_BUDGET_S
                            for f in fleets),
        }
    finally:
        for stack in stacks.values():
            stack.stop()
        for daemon in reversed(daemons):
            # A container dockerd fails to kill (it happens under heavy load) must not
            # leave the other daemons running: stop() ends its containers anyway.
            with contextlib.suppress(docker.errors.DockerException):
                daemon.remove_all_containers()
            daemon.stop()
        postgres.discard()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    from bench.common import RESULTS
    from bench.run import run_meta

    parser = argparse.ArgumentParser(prog="python -m bench.fleet_hosts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hosts", type=int, nargs="+", default=[2, 4],
                        help="fleet sizes to measure after the one host")
    args = parser.parse_args(argv)
    # SIGTERM (timeout, kill) unwinds like Ctrl-C: every daemon and server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    meta = run_meta("bench.fleet_hosts", argv)
    began = time.monotonic()
    try:
        data = run(args.repeats, tuple(args.hosts))
        status = 0 if data["goal_met"] else 1
    except Exception as exc:
        data = {"name": "fleet_hosts", "error": f"{type(exc).__name__}: {exc}"}
        status = 1
    data["meta"] = {**meta, "seconds": round(time.monotonic() - began, 1)}
    out = RESULTS / "fleet_hosts.json"
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(json.dumps(data, indent=2, default=str))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
