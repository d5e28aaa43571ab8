"""The whole loop on a real Swarm: Prometheus (`swarm-tasks`) → SwarmTaskDown →
Alertmanager → autofix serve (Swarm backend) → a forced update of the service.

The shipped configs with addresses, secrets and intervals overridden, as in test_e2e.py;
the stack's dockerd is the Swarm manager (tests/harness/swarm.py), so the `containers` and
`swarm-tasks` jobs and the receiver all ask the Swarm's own daemon.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from receiver.store.migrate import upgrade
from tests.harness.images import ensure_target_app_image
from tests.harness.procs import wait_for
from tests.harness.stack import Stack, SwarmTarget, start_stack
from tests.harness.swarm import Swarm

pytestmark = pytest.mark.e2e

TIMEOUT_S = 240.0  # detection, a forced update and the new task's scrape on 2 slow cores
PLAYBOOK = "force-update-swarm-task-down"


@pytest.fixture(scope="module")
def swarm_stack(postgres: Any, swarm_daemon: Swarm,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = postgres.create_database()
    upgrade(url)
    image = ensure_target_app_image(swarm_daemon.dockerd)
    stack = start_stack(tmp_path_factory.mktemp("e2e-swarm"), swarm_daemon.dockerd, image,
                        url, swarm=True)
    try:
        yield stack
    finally:
        stack.stop()


def _incidents(stack: Stack, service: str) -> list[Any]:
    return stack.sql("select * from incidents where alertname = 'SwarmTaskDown' and "
                     "labels->>'service' = :s order by id", s=service)


def _runs(stack: Stack, service: str) -> list[Any]:
    return stack.sql("select * from runs where target = :s order by id", s=service)


def _answers(target: SwarmTarget) -> bool:
    try:
        with urllib.request.urlopen(f"{target.url}/healthz", timeout=1) as response:
            return response.status == 200
    except Exception:  # hung, being replaced, refused
        return False


def _wait(stack: Stack, check: Any, what: str) -> None:
    try:
        wait_for(check, TIMEOUT_S, what, interval=0.5)
    except TimeoutError as exc:
        log = stack.receiver.process.log_tail(80) if stack.receiver.process else ""
        raise AssertionError(f"{exc}\nalerts: {stack.prometheus.alerts()}\n"
                             f"receiver log:\n{log}") from None


def test_a_hung_task_is_force_updated_and_the_incident_resolves(swarm_stack: Stack) -> None:
    stack = swarm_stack
    target = stack.run_swarm_target()
    before = target.running_task_ids()
    assert target.fault("hang") == 202

    def settled() -> bool:
        return ([i.status for i in _incidents(stack, target.service)] == ["resolved"]
                and bool(_runs(stack, target.service))
                and all(r.finished_at is not None for r in _runs(stack, target.service)))

    _wait(stack, settled, f"SwarmTaskDown on {target.service} fired, acted on and resolved")
    [incident] = _incidents(stack, target.service)
    assert incident.playbook == PLAYBOOK
    [run] = _runs(stack, target.service)
    assert run.status == "succeeded", (run.status, run.error)
    steps = [(a.action, a.outcome) for a in stack.sql(
        "select * from actions where run_id = :r order by step", r=run.id) if a.step >= 0]
    assert steps == [("restart", "succeeded"), ("wait_healthy", "succeeded")], steps
    # Swarm replaced the task: a forced update, a new task, the old one gone.
    assert target.force_updates() == 1
    after = target.running_task_ids()
    assert after and not before & after
    assert _answers(target)
    assert stack.swarm_up(target.service) == 1.0


def test_a_service_without_the_opt_in_label_is_never_touched(swarm_stack: Stack) -> None:
    stack = swarm_stack
    target = stack.run_swarm_target(opt_in=False)
    before = target.running_task_ids()
    assert target.fault("hang") == 202

    def skipped() -> bool:
        return any(a.reason == "target_not_allowed" for a in stack.sql(
            "select * from actions where target = :s", s=target.service))

    _wait(stack, skipped, f"SwarmTaskDown on {target.service} skipped: not opted in")
    assert target.force_updates() == 0
    assert target.running_task_ids() == before
    [incident] = _incidents(stack, target.service)
    assert incident.status in ("open", "escalated")
