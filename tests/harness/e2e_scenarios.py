"""The e2e scenarios' steps on the live stack (tests/harness/stack.py): inject a fault through
target_app, wait for detect → act → recover while recording the timeline, and check that the
target was restarted and the incident notified in one Slack thread."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import docker.errors

from tests.harness.procs import wait_for
from tests.harness.stack import Stack, TargetContainer
from tests.harness.timeline import Timeline


def remove_earlier_targets(stack: Stack) -> None:
    """Finished scenarios' targets go on serving self-traffic and health checks: on 2 slow
    cores they starve a CPU spike that must reach 0.8 cores."""
    for target in stack.targets:
        with contextlib.suppress(docker.errors.DockerException):
            target.container.remove(force=True)
    stack.targets.clear()


def run_scenario(stack: Stack, target: TargetContainer, alertname: str, fault: str,
                 params: dict[str, Any] | None = None, timeout: float = 240,
                 acts: bool = True) -> Timeline:
    # A slow boot on a loaded machine can alert, and autofix restarts it (documented): let
    # that run end first, or the fault's own run would queue behind it (one per target).
    wait_for(lambda: stack.sql("select count(*) from runs where target = :t and status in "
                               "('queued', 'running')", t=target.key)[0][0] == 0, 120,
             f"{target.name}: no run under way before the fault")
    timeline = Timeline(stack, target, alertname).start()
    awaited = ["incident resolved", *(["action finished", "target up"] if acts else [])]
    try:
        target.fault(fault, params)
        wait_for(lambda: all(event in timeline.events for event in awaited), timeout,
                 f"{alertname} on {target.name}: {', '.join(awaited)}")
        time.sleep(0.3)
    finally:
        timeline.stop()
        print("\n" + timeline.report(f"{fault} -> {alertname}"))
        # Whatever else fired on the target meanwhile (a fault can trip another rule first).
        others = [(i.alertname, i.status, str(i.first_seen)) for i in stack.incidents(
            target.name) if i.first_seen.timestamp() >= timeline.fault_at - 1]
        print(f"  incidents on {target.name} since the fault: {others}")
    return timeline


def incidents_since_fault(stack: Stack, target: TargetContainer, alertname: str,
                          timeline: Timeline) -> list[Any]:
    """The fault's incidents only: a slow boot on a loaded machine may have alerted before."""
    return [i for i in stack.incidents(target.name)
            if i.alertname == alertname and i.first_seen.timestamp() >= timeline.fault_at - 1]


def assert_restarted_and_notified(stack: Stack, target: TargetContainer, alertname: str,
                                  timeline: Timeline) -> None:
    [incident] = incidents_since_fault(stack, target, alertname, timeline)
    assert incident.status == "resolved" and incident.time_to_resolve_s > 0
    steps = [(a.action, a.outcome) for a in stack.actions(target.key)
             if a.incident_id == incident.id]
    assert steps[0] == ("restart", "succeeded"), steps
    assert all(outcome == "succeeded" for _, outcome in steps), steps
    assert stack.up(target.name, target.host) == 1.0
    assert timeline.seconds("action started") < timeline.seconds("target up")
    marker = f"incident #{incident.id} "
    messages = [m for m in stack.slack.messages() if marker in json.dumps(m.body)]
    assert messages, "no Slack message for the incident"
    first, replies = messages[0], messages[1:]
    assert "thread_ts" not in first.json()  # one thread per incident, opened once
    assert {m.json()["thread_ts"] for m in replies} == {first.ts}
    text = json.dumps([m.body for m in messages]).lower()
    assert "restart" in text and "resolved" in text
