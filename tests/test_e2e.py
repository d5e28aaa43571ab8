"""The whole loop, live: real Prometheus → Alertmanager → autofix serve → dockerd.

Each scenario injects a fault through target_app's own endpoint and waits for the loop to
detect, act, and see the target recover; it prints its timeline. The configs are the
shipped ones with addresses, secrets and intervals overridden (tests/harness/overrides.py).
"""

from __future__ import annotations

import time

import pytest

from tests.harness.e2e_scenarios import (
    assert_restarted_and_notified,
    incidents_since_fault,
    remove_earlier_targets,
    run_scenario,
)
from tests.harness.procs import wait_for
from tests.harness.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(e2e_stack: Stack) -> Stack:
    return e2e_stack


def test_crash_without_restart_policy_is_restarted(stack: Stack) -> None:
    target = stack.run_target()
    timeline = run_scenario(stack, target, "TargetDown", "crash")
    assert_restarted_and_notified(stack, target, "TargetDown", timeline)
    assert timeline.seconds("container exited") < timeline.seconds("container running again")


def test_crash_with_restart_policy_is_left_to_docker(stack: Stack) -> None:
    # A slow boot (6 s) keeps it down long enough to alert, as real apps often do.
    target = stack.run_target(restart_policy="on-failure", startup_delay_s=6)
    timeline = run_scenario(stack, target, "TargetDown", "crash", acts=False)
    [incident] = incidents_since_fault(stack, target, "TargetDown", timeline)
    assert incident.status == "resolved"
    steps = [(a.action, a.outcome, a.reason) for a in stack.actions(target.name)
             if a.incident_id == incident.id]
    assert steps == [("guard", "skipped", "already_recovered")]
    assert target.state()["Status"] == "running"
    assert target.container.attrs["RestartCount"] == 1  # Docker's one restart, not ours


def test_hang_is_restarted(stack: Stack) -> None:
    target = stack.run_target()
    timeline = run_scenario(stack, target, "TargetDown", "hang")
    assert_restarted_and_notified(stack, target, "TargetDown", timeline)


def test_error_spike_is_restarted(stack: Stack) -> None:
    target = stack.run_target()
    timeline = run_scenario(stack, target, "HighErrorRate", "error-spike",
                            {"ratio": 0.9, "duration_s": 600})
    assert_restarted_and_notified(stack, target, "HighErrorRate", timeline)


def test_latency_spike_is_restarted(stack: Stack) -> None:
    target = stack.run_target()
    timeline = run_scenario(stack, target, "HighLatencyP95", "latency-spike",
                            {"seconds": 1.0, "duration_s": 600})
    assert_restarted_and_notified(stack, target, "HighLatencyP95", timeline)


def test_cpu_spike_is_restarted(stack: Stack) -> None:
    remove_earlier_targets(stack)
    target = stack.run_target()
    timeline = run_scenario(stack, target, "HighCPU", "cpu-spike",
                            {"duration_s": 600, "threads": 2}, timeout=300)
    assert_restarted_and_notified(stack, target, "HighCPU", timeline)


def test_crash_loop_opens_the_breaker_and_escalates(stack: Stack) -> None:
    target = stack.run_target()
    for attempt in range(3):  # max_actions of restart-on-target-down
        timeline = run_scenario(stack, target, "TargetDown", "crash")
        assert timeline.seconds("action started") is not None, attempt
    target.fault("crash")
    wait_for(lambda: any(a.reason == "breaker_open" for a in stack.actions(target.name)), 60,
             "breaker opens")
    time.sleep(5)  # no further restart happens while it is open
    restarts = [a for a in stack.actions(target.name) if a.action == "restart"]
    assert len(restarts) == 3
    assert target.state()["Status"] == "exited"
    assert stack.incidents(target.name)[-1].status == "escalated"
    status, breakers = stack.api("GET", "/api/v1/breakers")
    assert status == 200
    assert {b["target"]: b["state"] for b in breakers["items"]}[target.name] == "open"
    assert any("breaker" in str(m.body).lower() for m in stack.slack.messages())


def test_silenced_alert_is_never_acted_on(stack: Stack) -> None:
    target = stack.run_target()
    stack.alertmanager.silence([
        {"name": "alertname", "value": "TargetDown", "isRegex": False, "isEqual": True},
        {"name": "container", "value": target.name, "isRegex": False, "isEqual": True}])
    target.fault("crash")
    wait_for(lambda: stack.alert_state("TargetDown", target.name) == "firing", 60, "firing")
    time.sleep(5)  # well past group_wait: Alertmanager holds it back
    assert stack.incidents(target.name) == []
    assert stack.actions(target.name) == []
    assert target.state()["Status"] == "exited"


def test_manual_run_against_a_target_without_opt_in_is_refused(stack: Stack) -> None:
    target = stack.run_target(opt_in=False)
    before = target.state()["StartedAt"]
    status, body = stack.api("POST", "/api/v1/playbooks/restart-on-target-down/run",
                             {"labels": {"container": target.name}, "reason": "e2e"})
    assert status == 403 and body["reason"] == "target_not_allowed"
    time.sleep(1)
    assert target.state()["StartedAt"] == before
