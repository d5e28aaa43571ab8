"""Time to recover per scenario, from the end-to-end harness, with test and shipped intervals.

Each scenario runs `repeats` times on a fresh target_app container: inject the fault
through target_app's endpoint, then time (from real components) until Prometheus sees the
container up again after autofix acted. The reference line is the same crash handled by
Docker's own restart policy: autofix is not needed there, and this shows by how much.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SCENARIOS: list[dict[str, Any]] = [
    {"name": "crash (no restart policy)", "alert": "TargetDown", "fault": "crash"},
    {"name": "hang", "alert": "TargetDown", "fault": "hang"},
    {"name": "error spike", "alert": "HighErrorRate", "fault": "error-spike",
     "params": {"ratio": 0.9, "duration_s": 900}},
    {"name": "latency spike", "alert": "HighLatencyP95", "fault": "latency-spike",
     "params": {"seconds": 1.0, "duration_s": 900}},
    {"name": "cpu spike", "alert": "HighCPU", "fault": "cpu-spike",
     "params": {"duration_s": 900, "threads": 2}},
]
GOALS_S = {"crash (no restart policy)": 8.0, "hang": 10.0}  # medians, test intervals


def _summary(values: list[float | None]) -> dict[str, Any]:
    measured = [v for v in values if v is not None]
    return {"runs": values, "median_s": statistics.median(measured) if measured else None,
            "max_s": max(measured) if measured else None, "missing": len(values) - len(measured)}


def _one(stack: Any, scenario: dict[str, Any]) -> dict[str, Any]:
    from tests.harness.procs import wait_for
    from tests.harness.timeline import Timeline

    target = stack.run_target()
    timeline = Timeline(stack, target, scenario["alert"]).start()
    try:
        target.fault(scenario["fault"], scenario.get("params"))
        wait_for(lambda: {"target up", "action started"} <= set(timeline.events), 400,
                 f"{scenario['name']} recovered")
        # Let the run finish before the container goes, or its verification step would
        # hold a runner slot and delay the next scenario's action.
        wait_for(lambda: "action finished" in timeline.events, 200, "run finished")
    except TimeoutError:
        pass
    finally:
        timeline.stop()
        target.container.remove(force=True)
    print(f"   {scenario['name']}: detect {timeline.time_to_detect()}s, "
          f"recover {timeline.time_to_recover()}s", flush=True)
    return timeline.as_dict()


def _docker_reference(stack: Any) -> dict[str, Any]:
    """The same crash with `--restart on-failure`: Docker restarts it, autofix stays out."""
    from tests.harness.procs import wait_for
    from tests.harness.timeline import Timeline

    target = stack.run_target(restart_policy="on-failure")
    timeline = Timeline(stack, target, "TargetDown").start()
    try:
        target.fault("crash")
        wait_for(lambda: "container running again" in timeline.events, 60, "docker restart")
        time.sleep(2)  # past the stale sample from before the crash
        wait_for(lambda: stack.up(target.name) == 1.0, 60, "scraped again")
        up_at = time.time() - timeline.fault_at
    finally:
        timeline.stop()
        target.container.remove(force=True)
    return {"container_running_s": timeline.seconds("container running again"),
            "scraped_up_s": round(up_at, 2)}


def _mode(dockerd: Any, image: str, postgres: Any, fast: bool, repeats: int,
          scenarios: list[dict[str, Any]]) -> dict[str, Any]:
    from receiver.store.migrate import upgrade
    from tests.harness.stack import start_stack

    url = postgres.create_database()
    upgrade(url)
    stack = start_stack(Path(tempfile.mkdtemp(prefix="autofix-ttr-")), dockerd, image, url,
                        fast=fast)
    label = "test intervals" if fast else "shipped intervals"
    print(f"== time to recover, {label}", flush=True)
    try:
        out: dict[str, Any] = {}
        for scenario in scenarios:
            runs = [_one(stack, scenario) for _ in range(repeats)]
            out[scenario["name"]] = {
                "recover": _summary([r["time_to_recover_s"] for r in runs]),
                "detect": _summary([r["time_to_detect_s"] for r in runs]),
            }
        references = [_docker_reference(stack) for _ in range(repeats)]
        out["docker restart policy (reference)"] = {
            "recover": _summary([r["container_running_s"] for r in references]),
            "container_running": _summary([r["container_running_s"] for r in references]),
        }
        return out
    finally:
        stack.stop()


def run(quick: bool = False, repeats: int = 5, shipped: bool = True) -> dict[str, Any]:
    from tests.harness.dockerd import start_dockerd
    from tests.harness.images import ensure_target_app_image
    from tests.harness.postgres import start_postgres

    scenarios = SCENARIOS[:1] if quick else SCENARIOS
    repeats = 1 if quick else repeats
    postgres = start_postgres()
    dockerd = start_dockerd(Path(tempfile.mkdtemp(prefix="autofix-ttr-dockerd-")))
    try:
        image = ensure_target_app_image(dockerd)
        result: dict[str, Any] = {"name": "ttr", "repeats": repeats, "goals_s": GOALS_S,
                                  "test_intervals": _mode(dockerd, image, postgres, True,
                                                          repeats, scenarios)}
        if shipped and not quick:
            result["shipped_intervals"] = _mode(dockerd, image, postgres, False, repeats,
                                                scenarios)
        return result
    finally:
        dockerd.remove_all_containers()
        dockerd.stop()
        postgres.discard()
