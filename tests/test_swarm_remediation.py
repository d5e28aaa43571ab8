"""Swarm playbooks end to end on a real single-node Swarm: an alert in, the receiver's own
guards and runner, the service force-updated, scaled or rolled back (or left alone)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker.types
import pytest

from receiver.store.models import Breaker
from tests.conftest import webhook_headers
from tests.harness.app_driver import actions, drain, incident_status
from tests.harness.procs import wait_for
from tests.harness.swarm import create_service, force_updates, running_ids
from tests.payloads import alert, notification

PLAYBOOKS = """
playbooks:
  - name: swarm-task-down
    matchers: ['alertname="SwarmTaskDown"']
    executor: swarm
    target: "{{ labels.service }}"
    cooldown: 0s
    circuit_breaker: {max_actions: 2, window: 1h, open_for: 1h, open_for_max: 2h,
                      reset_after: 1h}
    actions:
      - restart: {}
      - wait_healthy: {timeout_s: 90, running_for_s: 0.5}
  - name: swarm-scale-out
    matchers: ['alertname="SwarmOverloaded"']
    executor: swarm
    target: "{{ labels.service }}"
    cooldown: 0s
    actions:
      - scale: {replicas: 2, min_replicas: 1, max_replicas: 3}
  - name: swarm-bad-deploy
    matchers: ['alertname="SwarmBadDeploy"']
    executor: swarm
    target: "{{ labels.service }}"
    cooldown: 0s
    actions:
      - rollback: {}
"""


@pytest.fixture
def swarm_app(db_url: str, app_factory: Any, swarm: Any, tmp_path: Path) -> Any:
    def make(**overrides: Any) -> Any:
        path = tmp_path / f"playbooks-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(PLAYBOOKS)
        return app_factory(db_url, docker_host=swarm.url, swarm_enabled=True,
                           swarm_host=swarm.url, playbooks=path, **overrides)
    return make


def fire(app: Any, service: str, alertname: str = "SwarmTaskDown",
         starts: datetime | None = None, status: str = "firing") -> None:
    labels = {"alertname": alertname, "service": service, "task": "t", "node": "n"}
    starts = starts or datetime.now(UTC)
    body = notification([alert(labels, status=status, starts_at=starts,
                               ends_at=datetime.now(UTC) if status == "resolved" else None)])
    response = app.test_client().post("/webhook/alertmanager", json=body,
                                      headers=webhook_headers())
    assert response.status_code == 200, response.json


def test_a_labelled_service_with_a_hung_task_is_force_updated_until_resolved(
        swarm_app: Any, swarm: Any) -> None:
    app = swarm_app()
    service = create_service(swarm)
    before = running_ids(swarm, service.name)
    starts = datetime.now(UTC)
    fire(app, service.name, starts=starts)
    drain(app)
    after = running_ids(swarm, service.name)
    assert force_updates(swarm, service.name) == 1 and not before & after
    restart, wait = [a for a in actions(app, service.name) if a.step is not None
                     and a.step >= 0]
    assert (restart.action, restart.outcome) == ("restart", "succeeded")
    assert (wait.action, wait.outcome) == ("wait_healthy", "succeeded")
    detail = restart.params["detail"]
    assert service.id in detail and all(task in detail for task in before | after)
    fire(app, service.name, starts=starts, status="resolved")
    assert incident_status(app, service.name) == ["resolved"]


def test_an_unlabelled_service_is_never_touched(swarm_app: Any, swarm: Any) -> None:
    app = swarm_app()
    service = create_service(swarm, labelled=False)
    before = running_ids(swarm, service.name)
    fire(app, service.name)
    drain(app)
    [skip] = actions(app, service.name)
    assert (skip.outcome, skip.reason) == ("skipped", "target_not_allowed")
    assert "autofix.enable=true" in (skip.error or "") or "autofix.enable" in str(skip.params)
    assert force_updates(swarm, service.name) == 0
    assert running_ids(swarm, service.name) == before


def test_the_receivers_own_service_and_protected_services_are_refused(
        swarm_app: Any, swarm: Any) -> None:
    own, protected = create_service(swarm), create_service(swarm)
    app = swarm_app(swarm_self_service=own.name, protected_containers=[protected.id[:10]])
    for service in (own, protected):
        running_ids(swarm, service.name)
        fire(app, service.name)
    drain(app)
    for service in (own, protected):
        [skip] = actions(app, service.name)
        assert (skip.outcome, skip.reason) == ("skipped", "target_not_allowed")
        assert force_updates(swarm, service.name) == 0


def test_a_crash_looping_service_opens_the_breaker(swarm_app: Any, swarm: Any) -> None:
    app = swarm_app(swarm_converge_timeout_s=20)
    policy = docker.types.RestartPolicy(condition="any", delay=500_000_000)
    service = create_service(swarm, command=["sh", "-c", "exit 3"], restart_policy=policy)
    created = datetime.now(UTC) - timedelta(seconds=5)
    _wait_failed_tasks(swarm, service.name, 2)
    for occurrence in range(4):
        # Each a new occurrence; all began before the loop's latest failures.
        fire(app, service.name, starts=created + timedelta(milliseconds=occurrence))
        drain(app)
    done = actions(app, service.name)
    restarts = [a for a in done if a.action == "restart"]
    assert len(restarts) == 2 and all(a.outcome == "failed" for a in restarts)
    assert [a.reason for a in done if a.outcome == "skipped"] == ["breaker_open"] * 2
    with app.extensions["autofix"].database.session() as session:
        assert session.get(Breaker, service.name).state == "open"


def update_state(swarm: Any, name: str) -> str:
    return str((swarm.client.api.inspect_service(name).get("UpdateStatus") or {}).get("State"))


def _wait_failed_tasks(swarm: Any, name: str, count: int) -> None:
    wait_for(lambda: sum(t["Status"]["State"] == "failed" for t in swarm.tasks(name)) >= count,
             120, f"{count} failed tasks of {name}")


def test_scale_within_the_playbooks_bounds(swarm_app: Any, swarm: Any) -> None:
    app = swarm_app()
    service = create_service(swarm)
    running_ids(swarm, service.name)
    fire(app, service.name, alertname="SwarmOverloaded")
    drain(app)
    [scale] = [a for a in actions(app, service.name) if a.action == "scale"]
    assert scale.outcome == "succeeded", scale.error
    assert len(running_ids(swarm, service.name, 2)) == 2
    spec = swarm.client.api.inspect_service(service.name)["Spec"]
    assert spec["Mode"]["Replicated"]["Replicas"] == 2


def test_rollback_returns_the_previous_spec_and_is_refused_without_one(
        swarm_app: Any, swarm: Any) -> None:
    app = swarm_app()
    service = create_service(swarm)
    running_ids(swarm, service.name)
    fire(app, service.name, alertname="SwarmBadDeploy")
    drain(app)
    [refused] = [a for a in actions(app, service.name) if a.action == "rollback"]
    assert (refused.outcome, refused.reason) == ("failed", "executor_error")
    assert "no previous spec" in (refused.error or "")
    service.reload()
    service.update(env=["VERSION=2"])
    # Until Swarm has finished the update, the guards see it recovering by itself.
    wait_for(lambda: update_state(swarm, service.name) == "completed", 120,
             f"update of {service.name}")
    fire(app, service.name, alertname="SwarmBadDeploy")
    drain(app)
    rollback = [a for a in actions(app, service.name) if a.action == "rollback"][-1]
    assert rollback.outcome == "succeeded", rollback.error
    container = swarm.client.api.inspect_service(service.name)["Spec"]["TaskTemplate"]
    assert "Env" not in container["ContainerSpec"]
