"""A hang on a Swarm service beside the same hang on a plain container, shipped intervals.

One stack (tests/harness/stack.py, fast=False) on a Swarm manager's dockerd, rounds
alternated in one run, fresh targets each round:
  * single host: a target_app container hangs; TargetDown, then autofix's `restart`;
  * Swarm: a target_app service's one task hangs; SwarmTaskDown, then autofix's forced
    update (Swarm replaces the task under the service's update policy).
Each is timed from the hang's injection until `/healthz` answers again from the new
process (the restarted container; a new task of the service).

Issue #18: the median of 5 for Swarm, beside the single-host figure.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.hang_ttr import _answers, _median
from bench.hang_ttr import _autofix as _single_host

TIMEOUT_S = 120.0


def _swarm(stack: Any) -> float | None:
    target = stack.run_swarm_target()
    before = target.running_task_ids()
    fault_at = time.monotonic()
    target.fault("hang")
    try:
        while time.monotonic() - fault_at < TIMEOUT_S:
            now = target.running_task_ids()
            if now and not now & before and _answers(target.url):
                return round(time.monotonic() - fault_at, 2)
            time.sleep(0.2)
        return None
    finally:
        target.remove()
        stack.swarm_targets.remove(target)


def run(repeats: int = 5) -> dict[str, Any]:
    from receiver.store.migrate import upgrade
    from tests.harness.images import ensure_target_app_image
    from tests.harness.postgres import start_postgres
    from tests.harness.stack import start_stack
    from tests.harness.swarm import start_swarm

    postgres = start_postgres()
    swarm = start_swarm(Path(tempfile.mkdtemp(prefix="autofix-swarm-hang-")))
    try:
        image = ensure_target_app_image(swarm.dockerd)
        url = postgres.create_database()
        upgrade(url)
        stack = start_stack(Path(tempfile.mkdtemp(prefix="autofix-swarm-hang-stack-")),
                            swarm.dockerd, image, url, fast=False, swarm=True)
        single: list[float | None] = []
        service: list[float | None] = []
        try:
            for index in range(repeats):
                # Alternate which goes first, so a drift in load weighs on both alike.
                order = [("single", single), ("swarm", service)]
                for kind, runs in order if index % 2 == 0 else order[::-1]:
                    runs.append(_single_host(stack) if kind == "single" else _swarm(stack))
                print(f"   round {index + 1}: single host {single[-1]}s, "
                      f"Swarm service {service[-1]}s", flush=True)
        finally:
            stack.stop()
        ours, reference = _median(service), _median(single)
        return {
            "name": "swarm_hang_ttr", "repeats": repeats,
            "swarm_answering_s": {"runs": service, "median_s": ours},
            "single_host_answering_s": {"runs": single, "median_s": reference},
            "ratio": (round(ours / reference, 2) if ours and reference else None),
            "goal_met": ours is not None and None not in service,
        }
    finally:
        swarm.stop()
        postgres.discard()


if __name__ == "__main__":
    import json
    import sys

    result = run(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    print(json.dumps(result, indent=2))
    out = Path(__file__).with_name("results") / "swarm_hang_ttr.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    raise SystemExit(0 if result["goal_met"] else 1)
