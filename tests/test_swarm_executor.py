"""The executor boundary and the Swarm executor: pure rules (resolution, "already
recovering"), playbook loading per backend, and the executor's calls on a real Swarm."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import docker.types
import pytest

from receiver.actions.builtin import build_registry
from receiver.config.settings import Settings
from receiver.domain.errors import ConfigError
from receiver.executor import ExecutorError, TargetIdentity, TargetNotFound
from receiver.executor.registry import playbook_backends
from receiver.executor.swarm_executor import SwarmExecutor
from receiver.executor.swarm_tasks import desired_replicas, match_services, recovering_reason
from receiver.playbooks.config import parse_playbooks
from tests.harness.swarm import create_service, force_updates, running_ids

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _svc(name: str, service_id: str, replicas: int | None = 1, update: str = "") -> dict[str, Any]:
    mode = {"Replicated": {"Replicas": replicas}} if replicas is not None else {"Global": {}}
    found: dict[str, Any] = {"ID": service_id, "Spec": {"Name": name, "Mode": mode}}
    if update:
        found["UpdateStatus"] = {"State": update}
    return found


def _task(task_id: str, created: datetime, state: str = "running",
          desired: str = "running", node: str = "n1") -> dict[str, Any]:
    return {"ID": task_id, "CreatedAt": created.isoformat().replace("+00:00", "Z"),
            "DesiredState": desired, "NodeID": node, "Status": {"State": state}}


# ---- pure rules ----------------------------------------------------------------------

def test_a_reference_resolves_by_full_id_then_exact_name_then_unique_id_prefix() -> None:
    services = [_svc("web", "abc111"), _svc("abc1", "def222"), _svc("db", "abc999")]
    assert [s["ID"] for s in match_services("abc111", services)] == ["abc111"]
    assert [s["ID"] for s in match_services("abc1", services)] == ["def222"]  # a name wins
    assert [s["ID"] for s in match_services("abc9", services)] == ["abc999"]
    assert len(match_services("abc", services)) == 2  # ambiguous: the executor refuses it
    assert match_services("nope/x", services) == []


def test_global_services_want_one_task_per_node() -> None:
    tasks = [_task("t1", T0, node="a"), _task("t2", T0, node="b"),
             _task("t3", T0, desired="shutdown", node="c")]
    assert desired_replicas(_svc("g", "1", replicas=None), tasks) == 2
    assert desired_replicas(_svc("r", "1", replicas=3), tasks) == 3


def test_swarm_is_recovering_during_an_update_or_after_replacing_the_task() -> None:
    after, before = T0 + timedelta(seconds=30), T0 - timedelta(minutes=5)
    service = _svc("web", "s1")
    assert "rolling" in (recovering_reason(_svc("web", "s1", update="updating"), [], T0) or "")
    assert "rollback_started" in (recovering_reason(
        _svc("web", "s1", update="rollback_started"), [], T0) or "")
    # The hung task is still the one running: nothing has recovered it.
    assert recovering_reason(service, [_task("old", before)], T0) is None
    # Swarm replaced it after the alert began, and the replacement runs.
    replaced = [_task("old", before, "failed", "shutdown"), _task("new", after)]
    assert "replaced" in (recovering_reason(service, replaced, T0) or "")
    # A crash loop: tasks newer than the alert keep failing; not a recovery.
    looping = [*replaced, _task("newer", after, "failed", "shutdown")]
    assert recovering_reason(service, looping, T0) is None
    # Not every replica replaced and running yet.
    assert recovering_reason(_svc("web", "s1", replicas=2), replaced, T0) is None
    # A finished (or paused) update is no reason on its own.
    assert recovering_reason(_svc("web", "s1", update="completed"),
                             [_task("old", before)], T0) is None


# ---- playbooks choose their backend ---------------------------------------------------

def _load(yaml_text: str, swarm_enabled: bool = True) -> Any:
    registry = build_registry()
    backends = playbook_backends(Settings(swarm_enabled=swarm_enabled),
                                 registry.backend_limits())
    return parse_playbooks(yaml_text, registry.params_models(), source="p.yml",
                           backends=backends)


SWARM_PLAYBOOK = """playbooks:
  - name: swarm
    matchers: ['alertname="SwarmTaskDown"']
    executor: {executor}
    target: "{{{{ labels.service }}}}"
    actions:
      - {action}
"""


def test_a_swarm_playbook_loads_only_with_swarm_enabled_and_is_skipped_otherwise() -> None:
    text = SWARM_PLAYBOOK.format(executor="swarm", action="restart: {}")
    [playbook] = _load(text).playbooks
    assert playbook.executor == "swarm"
    skipped = _load(text, swarm_enabled=False)
    assert skipped.playbooks == []
    assert skipped.skipped == ["p.yml:4:5: playbooks.0.executor: playbook 'swarm' skipped: "
                               "the swarm backend is not enabled (AUTOFIX_SWARM_ENABLED=true)"]


@pytest.mark.parametrize(("executor", "action", "expected"), [
    ("kubernetes", "restart: {}", "p.yml:4:5: playbooks.0.executor: unknown executor "
                                  "'kubernetes' (known: docker, swarm)"),
    ("docker", "scale: {replicas: 2, max_replicas: 3}",
     "p.yml:7:9: playbooks.0.actions.0: action 'scale' is not supported by executor 'docker' "
     "(only swarm)"),
    ("swarm", "exec: {argv: [uptime]}",
     "p.yml:7:9: playbooks.0.actions.0: action 'exec' is not supported by executor 'swarm' "
     "(only docker)"),
    ("swarm", "scale: {replicas: 5, min_replicas: 1, max_replicas: 3}",
     "p.yml:7:9: playbooks.0.actions.0.scale: replicas 5 is outside [min_replicas 1, "
     "max_replicas 3]"),
])
def test_a_backend_or_action_a_playbook_cannot_use_is_a_load_error_naming_its_line(
        executor: str, action: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(SWARM_PLAYBOOK.format(executor=executor, action=action))
    assert raised.value.details["errors"] == [expected]


# ---- the executor on a real Swarm ---------------------------------------------------

@pytest.fixture
def executor(swarm: Any) -> SwarmExecutor:
    return SwarmExecutor(swarm.url, 30, converge_timeout_s=90, own_service=None)


def test_resolution_and_state_read_the_service_and_its_labels(swarm: Any,
                                                              executor: SwarmExecutor) -> None:
    service = create_service(swarm)
    running_ids(swarm, service.name)
    identity = TargetIdentity(service.name, service.id)
    assert executor.resolve(service.name) == identity
    assert executor.resolve(service.id) == identity
    assert executor.resolve(service.id[:6]) == identity
    with pytest.raises(TargetNotFound):
        executor.resolve("s-nosuchservice")
    assert executor.refers_to(service.id[:8], identity)
    # Swarm IDs are lowercase base-36 and never hold a '-': this is nobody's ID prefix
    # ("x" alone was, for one service in 36).
    assert not executor.refers_to("x-not-an-id", identity)
    state = executor.inspect(service.id)
    assert (state.name, state.running, state.labels) == (service.name, True,
                                                        {"autofix.enable": "true"})
    assert not executor.is_self(identity)
    assert SwarmExecutor(swarm.url, 30, 90, own_service=service.name).is_self(identity)
    with pytest.raises(ExecutorError):
        executor.exec(service.name, ["true"], 5)


def test_host_of_a_service_is_its_tasks_node(swarm: Any, executor: SwarmExecutor) -> None:
    service = create_service(swarm)
    [task] = swarm.wait_running(service.name, 1)
    identity = TargetIdentity(service.name, service.id)
    assert executor.host_of(identity) == f"swarm-node:{task['NodeID']}"
    # No task running: the swarm as one host. Through the executor, which inspects afresh
    # (the object from create is stale once Swarm's allocator has moved the service on).
    executor.scale(service.name, 0)
    for _ in range(100):
        if not running_ids_now(swarm, service.id):
            break
        time.sleep(0.1)
    assert executor.host_of(identity) == "swarm"


def test_host_of_a_service_not_running_yet_is_still_its_tasks_node(
        swarm: Any, executor: SwarmExecutor) -> None:
    """An alert fires when the tasks do not run: a task held in `starting` by its health
    check is on its node all the same, and a storm on that node must hold it."""
    never_healthy = docker.types.Healthcheck(test=["CMD", "false"], interval=1_000_000_000,
                                             start_period=120_000_000_000)
    service = create_service(swarm, healthcheck=never_healthy)
    identity = TargetIdentity(service.name, service.id)
    placed: list[dict[str, Any]] = []
    for _ in range(300):
        placed = [t for t in swarm.client.api.tasks(filters={"service": service.id})
                  if t.get("NodeID") and (t.get("Status") or {}).get("State") == "starting"]
        if placed:
            break
        time.sleep(0.1)
    assert placed, "the task never reached starting"
    assert executor.host_of(identity) == f"swarm-node:{placed[0]['NodeID']}"


def running_ids_now(swarm: Any, service_id: str) -> list[str]:
    return [t["ID"] for t in swarm.client.api.tasks(filters={"service": service_id})
            if t.get("DesiredState") == "running"
            and (t.get("Status") or {}).get("State") == "running"]


def test_restart_is_a_forced_update_that_replaces_the_tasks(swarm: Any,
                                                            executor: SwarmExecutor) -> None:
    service = create_service(swarm, replicas=2)
    before = running_ids(swarm, service.name, 2)
    recorded = executor.restart(service.name, 10)
    after = running_ids(swarm, service.name, 2)
    assert force_updates(swarm, service.name) == 1
    assert not before & after
    assert recorded is not None and all(task in recorded for task in before | after)
    assert executor.inspect(service.name).running


def test_a_service_moved_on_between_inspect_and_update_is_updated_at_its_new_version(
        swarm: Any, executor: SwarmExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone else updates the service after autofix inspected it: Swarm refuses the stale
    version ("update out of sequence", nothing applied); autofix inspects again and forces
    its update once."""
    service = create_service(swarm)
    running_ids(swarm, service.name)
    call = executor._call
    refused: list[str] = []

    def someone_else_first(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if what.startswith("docker service update --force") and not refused:
            other = swarm.client.services.get(service.id)
            other.update(labels={"moved": "on"})  # the version autofix inspected is gone
            try:
                return call(what, fn, *args, **kwargs)
            except ExecutorError as exc:
                refused.append(str(exc))
                raise
        return call(what, fn, *args, **kwargs)

    monkeypatch.setattr(executor, "_call", someone_else_first)
    executor.restart(service.name, 10)
    assert refused and "out of sequence" in refused[0]
    assert force_updates(swarm, service.name) == 1
    assert swarm.client.api.inspect_service(service.id)["Spec"]["Labels"]["moved"] == "on"


def test_scale_sets_replicas_and_refuses_global_services(swarm: Any,
                                                         executor: SwarmExecutor) -> None:
    service = create_service(swarm)
    running_ids(swarm, service.name)
    executor.scale(service.name, 2)
    assert len(running_ids(swarm, service.name, 2)) == 2
    glob = create_service(swarm, mode=docker.types.ServiceMode("global"))
    running_ids(swarm, glob.name)
    with pytest.raises(ExecutorError, match="global"):
        executor.scale(glob.name, 3)


def test_rollback_returns_to_the_previous_spec_and_is_refused_without_one(
        swarm: Any, executor: SwarmExecutor) -> None:
    service = create_service(swarm)
    running_ids(swarm, service.name)
    with pytest.raises(ExecutorError, match="no previous spec"):
        executor.rollback(service.name)
    service.reload()
    service.update(env=["VERSION=2"])
    swarm.wait_running(service.name)
    assert _env(swarm, service.name) == ["VERSION=2"]
    executor.rollback(service.name)
    assert _env(swarm, service.name) is None


def _env(swarm: Any, name: str) -> Any:
    return swarm.client.api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"].get(
        "Env")

