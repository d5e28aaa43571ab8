"""Executor over Swarm services (docker SDK services API), talking to a Swarm manager.

A target is a service. `restart` is a forced update (`docker service update --force`):
Swarm replaces the tasks under the service's own update_config (parallelism, order, stop
grace period). `scale` and `rollback` exist only here; the actions that call them are
registered for this backend only, so a Docker playbook using them fails at load."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import docker
import docker.errors
import requests

from receiver.executor import swarm_tasks
from receiver.executor.base import (
    ContainerImage,
    Dependent,
    EvidenceLimits,
    EvidenceSource,
    ExecResult,
    ExecutorError,
    RollbackRefused,
    RollbackResult,
    TargetAmbiguous,
    TargetIdentity,
    TargetNotFound,
    TargetState,
)
from receiver.executor.docker_api import LazyDockerClient, docker_call
from receiver.executor.docker_executor import is_valid_container_name, own_container_ids

__all__ = ["SwarmExecutor"]

_POLL_S = 0.5
_SERVICE_ID_LABEL = "com.docker.swarm.service.id"
_IN_SEQUENCE_TRIES = 3


class SwarmExecutor:
    backend = "swarm"

    def __init__(self, base_url: str | None, timeout_s: float, converge_timeout_s: float,
                 own_service: str | None = None) -> None:
        self._client = LazyDockerClient(base_url, timeout_s, "the Swarm manager")
        self._converge_timeout_s = converge_timeout_s
        self._own_service = own_service
        self._own_ids: frozenset[str] | None = None

    def _docker(self) -> docker.DockerClient:
        return self._client.get()

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return docker_call(what, fn, *args, **kwargs)

    def _service(self, service_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call(f"docker service inspect {service_id}",
                                           self._docker().api.inspect_service, service_id)
        return found

    def _tasks(self, service_id: str) -> list[dict[str, Any]]:
        return list(self._call(f"docker service ps {service_id}", self._docker().api.tasks,
                               filters={"service": service_id}))

    # ---- identity -------------------------------------------------------------------

    def ping(self) -> None:
        info = self._call("docker info", self._docker().info)
        if not (info.get("Swarm") or {}).get("ControlAvailable"):
            raise ExecutorError("the Docker endpoint is not a Swarm manager")

    def validate_target_syntax(self, target: str) -> bool:
        return is_valid_container_name(target) and len(target) <= 63

    def resolve(self, target: str) -> TargetIdentity:
        services = self._call("docker service ls", self._docker().api.services)
        found = swarm_tasks.match_services(target, services)
        if not found:
            raise TargetNotFound(f"no Swarm service named {target!r}")
        if len(found) > 1:
            names = sorted(s["Spec"]["Name"] for s in found)
            raise TargetAmbiguous(f"{target!r} is a prefix of {len(found)} service IDs "
                                  f"({', '.join(names[:5])})")
        return TargetIdentity(name=found[0]["Spec"]["Name"], id=found[0]["ID"])

    def refers_to(self, reference: str, identity: TargetIdentity) -> bool:
        reference = reference.strip()
        if not reference:
            return False
        if reference in (identity.name, identity.id):
            return True
        if not identity.id.startswith(reference):
            return False
        try:
            return self.resolve(reference).id == identity.id
        except TargetAmbiguous:
            return True  # protection errs on the safe side
        except ExecutorError:
            return False

    def is_self(self, identity: TargetIdentity) -> bool:
        return identity.id in self._own_service_ids() or identity.name == self._own_service

    def _own_service_ids(self) -> frozenset[str]:
        """The service of the container we run in (its Swarm label), once known."""
        if self._own_ids is None:
            ids: set[str] = set()
            for container_id in own_container_ids():
                try:
                    labels = self._docker().containers.get(container_id).labels
                    ids.add(labels.get(_SERVICE_ID_LABEL, ""))
                except (docker.errors.DockerException, requests.RequestException):
                    pass  # not on this manager's node: the AUTOFIX_SWARM_SELF_SERVICE setting
            self._own_ids = frozenset(ids - {""})
        return self._own_ids

    # ---- state and policy -----------------------------------------------------------

    def host_of(self, identity: TargetIdentity) -> str:
        """The node of the tasks Swarm means to run, whatever their state: an alert fires
        when they do not run (starting, unhealthy, a replacement on the same node), and
        that is when the storm on their node must hold them. The whole swarm as one host
        when they span several nodes or none is placed yet (a storm there is the
        cluster's)."""
        nodes = {str(t.get("NodeID") or "") for t in self._tasks(identity.id)
                 if t.get("DesiredState") == "running"}
        if len(nodes) == 1 and "" not in nodes:
            return f"swarm-node:{nodes.pop()}"
        return "swarm"

    def inspect(self, target: str) -> TargetState:
        """A service is `running` once every task it wants runs (healthy, where it has a
        health check), `updating` during an update, else `converging`."""
        service = self._service(target)
        tasks = self._tasks(service["ID"])
        running = swarm_tasks.running_tasks(tasks)
        want = swarm_tasks.desired_replicas(service, tasks)
        update = (service.get("UpdateStatus") or {}).get("State", "")
        status = ("updating" if update in swarm_tasks.UPDATING_STATES
                  else "running" if len(running) >= want > 0 else "converging")
        starts = [swarm_tasks.parse_time((t.get("Status") or {}).get("Timestamp"))
                  for t in running]
        spec = service.get("Spec") or {}
        return TargetState(
            name=spec.get("Name", ""), id=service["ID"], status=status,
            labels=dict(spec.get("Labels") or {}),  # the SERVICE's labels, not its tasks'
            started_at=max((s for s in starts if s), default=None),
            restart_count=max(0, len(tasks) - len(running)))

    def already_recovering(self, state: TargetState, incident_starts_at: datetime,
                           lookback: timedelta) -> str | None:
        return swarm_tasks.recovering_reason(self._service(state.id), self._tasks(state.id),
                                             incident_starts_at)

    def stopped_by_operator(self, state: TargetState) -> str | None:
        mode = (self._service(state.id).get("Spec") or {}).get("Mode") or {}
        replicas = (mode.get("Replicated") or {}).get("Replicas")
        return f"{state.name} is scaled to 0 replicas" if replicas == 0 else None

    def dependents(self, identity: TargetIdentity) -> list[Dependent]:
        """None: a service's tasks are replaced under its own update policy, on any node,
        and `network_mode: container:` does not exist in Swarm; a service that needs
        another is restarted by Swarm's own health checks, not by a chain from autofix."""
        return []

    def evidence_sources(self, target: str, limits: EvidenceLimits
                         ) -> dict[str, EvidenceSource]:
        # No `logs`: service logs go through every node's daemon and can hang on a lost
        # node; the task history says what Swarm saw.
        def state() -> dict[str, Any]:
            found = self.inspect(target)
            return {"status": found.status, "running": found.running, "service_id": found.id,
                    "restart_count": found.restart_count, "oom_killed": False, "health": None}

        return {
            "state": state,
            "tasks": lambda: [swarm_tasks.task_summary(t) for t in self._tasks(target)],
            "operator_stop": lambda: self.stopped_by_operator(self.inspect(target)),
        }

    # ---- actions --------------------------------------------------------------------

    def restart(self, target: str, timeout_s: float) -> str | None:
        """Force update, then wait (like the CLI) until Swarm replaced the tasks or gave up.
        `timeout_s` does not apply: the service's own stop_grace_period does."""
        before = self._running_ids(target)
        service = self._update(f"docker service update --force {target}", target,
                               lambda s: s.force_update())
        after = self._wait_converged(target, before)
        return self._record("force update", target, service.id, before, after)

    def scale(self, target: str, replicas: int) -> str:
        def scale_replicated(service: Any) -> Any:
            if "Replicated" not in (service.attrs["Spec"].get("Mode") or {}):
                raise ExecutorError(f"{target} is a global service: it cannot be scaled")
            return service.scale(replicas)

        before = self._running_ids(target)
        service = self._update(f"docker service scale {target}={replicas}", target,
                               scale_replicated)
        after = self._wait_converged(target, None)
        return self._record(f"scale to {replicas}", target, service.id, before, after)

    def rollback(self, target: str) -> str:
        def to_previous(service: Any) -> Any:
            spec = service.attrs
            if not spec.get("PreviousSpec"):
                raise ExecutorError(f"{target} has no previous spec to roll back to")
            api = self._docker().api
            # What `docker service rollback` sends; docker-py has no call for it.
            return api._result(api._post_json(
                api._url("/services/{0}/update", spec["ID"]), data=spec["Spec"],
                params={"version": spec["Version"]["Index"], "rollback": "previous"}))

        before = self._running_ids(target)
        service = self._update(f"docker service rollback {target}", target, to_previous)
        after = self._wait_converged(target, before)
        return self._record("rollback", target, service.id, before, after)

    def _update(self, what: str, target: str, change: Callable[[Any], Any]) -> Any:
        """Inspect, then change the service at the version inspected, as the CLI does. Swarm
        refuses the change ("update out of sequence") when something else moved the service
        on in between (its allocator just after a create, another operator): nothing was
        applied, so inspect again and retry, a few times. Returns the service inspected."""
        for attempt in range(_IN_SEQUENCE_TRIES):
            service = self._call(f"docker service inspect {target}",
                                 self._docker().services.get, target)
            try:
                self._call(what, change, service)
                return service
            except ExecutorError as exc:
                if "out of sequence" not in str(exc) or attempt + 1 == _IN_SEQUENCE_TRIES:
                    raise
        raise AssertionError("unreachable")

    def rollback_image(self, target: str, image: str, now: datetime,
                       stop_timeout_s: float = 10.0) -> RollbackResult:
        raise RollbackRefused("a Swarm service rolls back with the `rollback` action")

    def _running_ids(self, target: str) -> list[str]:
        return sorted(t["ID"] for t in swarm_tasks.running_tasks(self._tasks(target)))

    def _wait_converged(self, target: str, replaced: list[str] | None) -> list[str]:
        """Running task IDs once the service wants no more change (all desired tasks run,
        none of `replaced` among them, no update in progress), or at the timeout."""
        deadline = time.monotonic() + self._converge_timeout_s
        while True:
            service, tasks = self._service(target), self._tasks(target)
            running = sorted(t["ID"] for t in swarm_tasks.running_tasks(tasks))
            update = (service.get("UpdateStatus") or {}).get("State", "")
            done = (len(running) == swarm_tasks.desired_replicas(service, tasks)
                    and not set(running) & set(replaced or [])
                    and update not in swarm_tasks.UPDATING_STATES)
            if done or update in ("paused", "rollback_paused") or time.monotonic() > deadline:
                return running
            time.sleep(_POLL_S)

    def _record(self, what: str, target: str, service_id: str, before: list[str],
                after: list[str]) -> str:
        return (f"service {target} (ID {service_id}): {what}; tasks before {before} "
                f"after {after}")

    def start(self, target: str) -> None:
        raise ExecutorError("start is not a Swarm service operation (scale it instead)")

    def stop(self, target: str, timeout_s: float) -> None:
        raise ExecutorError("stop is not a Swarm service operation (scale it instead)")

    def kill(self, target: str, signal: str) -> None:
        raise ExecutorError("kill is not a Swarm service operation")

    def exec(self, target: str, argv: list[str], timeout_s: float) -> ExecResult:
        raise ExecutorError("exec is not a Swarm service operation")

    # No image history for services: a Swarm service keeps its own previous spec (image
    # included), `rollback` returns to it, and its tasks are containers Swarm names and
    # replaces itself, so "the container before this one" is not a Swarm notion.
    def inventory(self) -> list[ContainerImage]:
        return []

    def container_image(self, target: str) -> ContainerImage | None:
        return None
