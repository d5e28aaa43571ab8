"""The registry every receiver starts with."""

from __future__ import annotations

from receiver.actions import check_actions as checks
from receiver.actions import docker_actions as docker
from receiver.actions import evidence_actions as evidence
from receiver.actions import swarm_actions as swarm
from receiver.actions.registry import ActionRegistry

__all__ = ["build_registry"]


def build_registry() -> ActionRegistry:
    registry = ActionRegistry()
    containers = frozenset({"docker"})
    registry.register("restart", docker.restart_container, mutating=True)
    registry.register("start", docker.start_container, mutating=True, backends=containers)
    registry.register("stop", docker.stop_container, mutating=True, backends=containers)
    registry.register("kill", docker.kill_container, mutating=True, backends=containers)
    registry.register("exec", docker.exec_command, mutating=True, backends=containers)
    registry.register("rollback_image", docker.rollback_image, mutating=True)
    services = frozenset({"swarm"})
    registry.register("scale", swarm.scale_service, mutating=True, backends=services)
    registry.register("rollback", swarm.rollback_service, mutating=True, backends=services)
    registry.register("capture", evidence.capture_evidence, mutating=False)
    registry.register("wait_healthy", checks.wait_healthy, mutating=False)
    registry.register("promql_check", checks.check_promql, mutating=False)
    registry.register("http", checks.call_http, mutating=False, endpoint="url")
    registry.register("notify", checks.send_notification, mutating=False, leaves_process=False)
    registry.register("escalate", checks.escalate_incident, mutating=False,
                      leaves_process=False)
    return registry
