"""Pure rules over Swarm's own data (service and task dicts as the Engine API returns them):
which service a reference names, how many tasks should run, and whether Swarm is already
recovering the service. No I/O, so each rule is tested without a Swarm."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

__all__ = ["UPDATING_STATES", "desired_replicas", "match_services", "parse_time",
           "recovering_reason", "running_tasks", "task_summary"]

_ZERO = "0001-01-01T00:00:00Z"
_HEX = re.compile(r"^[0-9a-z]{1,64}$")
# Swarm is rolling tasks over: acting now would fight its own update or rollback.
UPDATING_STATES = frozenset({"updating", "rollback_started"})
_FAILED_STATES = frozenset({"failed", "rejected", "orphaned"})


def parse_time(value: str | None) -> datetime | None:
    if not value or value.startswith(_ZERO):
        return None
    head, _, rest = value.rstrip("Z").partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    parsed = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return parsed.replace(microsecond=int(fraction.ljust(6, "0"))) if fraction else parsed


def match_services(reference: str, services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The services `reference` names, as the Docker CLI resolves one: a full ID, then an
    exact name, then every service whose ID starts with it (more than one: ambiguous)."""
    for key in ("ID", "name"):
        exact = [s for s in services if _field(s, key) == reference]
        if exact:
            return exact[:1]
    if not _HEX.match(reference):
        return []
    return [s for s in services if str(s.get("ID", "")).startswith(reference)]


def _field(service: dict[str, Any], key: str) -> str:
    if key == "name":
        return str((service.get("Spec") or {}).get("Name", ""))
    return str(service.get(key, ""))


def desired_replicas(service: dict[str, Any], tasks: list[dict[str, Any]]) -> int:
    """Replicated: the spec's count. Global: one per node Swarm means to run it on."""
    mode = (service.get("Spec") or {}).get("Mode") or {}
    if "Replicated" in mode:
        return int((mode["Replicated"] or {}).get("Replicas", 1))
    return len({t.get("NodeID") for t in tasks if t.get("DesiredState") == "running"})


def running_tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks meant to run that do. A task with a health check only reaches `running` once
    it is healthy (Swarm holds it in `starting` until then)."""
    return [t for t in tasks if t.get("DesiredState") == "running"
            and (t.get("Status") or {}).get("State") == "running"]


def task_summary(task: dict[str, Any]) -> dict[str, Any]:
    status = task.get("Status") or {}
    return {"id": task.get("ID", ""), "slot": task.get("Slot"), "node": task.get("NodeID", ""),
            "desired": task.get("DesiredState", ""), "state": status.get("State", ""),
            "created_at": task.get("CreatedAt"), "updated_at": status.get("Timestamp"),
            "error": status.get("Err", ""),
            "exit_code": (status.get("ContainerStatus") or {}).get("ExitCode")}


def recovering_reason(service: dict[str, Any], tasks: list[dict[str, Any]],
                      alert_started: datetime) -> str | None:
    """Why Swarm is already recovering the service by itself, or None.

    An update or rollback in progress; or Swarm replaced the failing task since the alert
    began: every task that should run runs and was created after the alert's start, and
    none created since then has failed (a crash loop keeps failing: not a recovery)."""
    name = (service.get("Spec") or {}).get("Name", service.get("ID", "?"))
    update = (service.get("UpdateStatus") or {}).get("State", "")
    if update in UPDATING_STATES:
        return f"Swarm is rolling {name}'s tasks over ({update})"
    newer = [t for t in tasks if (parse_time(t.get("CreatedAt")) or alert_started)
             > alert_started]
    if not newer or any((t.get("Status") or {}).get("State") in _FAILED_STATES
                        for t in newer):
        return None
    running = running_tasks(tasks)
    want = desired_replicas(service, tasks)
    if want == 0 or len(running) < want:
        return None
    if all(t in newer for t in running):
        ids = ", ".join(str(t.get("ID", ""))[:12] for t in running)
        return (f"Swarm replaced {name}'s tasks after the alert began at "
                f"{alert_started.isoformat()} (now running: {ids})")
    return None
