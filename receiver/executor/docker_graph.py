"""The dependency view of one Docker host, from one `GET /containers/json?all=1`: no
per-container inspect, so a host of hundreds of containers costs one call."""

from __future__ import annotations

from typing import Any

from receiver.domain.graph import ContainerRow, CycleFound, Dependent, dependents_of
from receiver.executor.base import DependencyCycle

__all__ = ["container_rows", "dependents_from_list"]


def container_rows(listed: list[dict[str, Any]]) -> list[ContainerRow]:
    """The list call's items as the graph reads them (Names, Labels, HostConfig, State)."""
    rows = []
    for item in listed:
        names = item.get("Names") or []
        rows.append(ContainerRow(
            name=str(names[0]).lstrip("/") if names else str(item.get("Id", ""))[:12],
            id=str(item.get("Id", "")), labels=dict(item.get("Labels") or {}),
            network_mode=str((item.get("HostConfig") or {}).get("NetworkMode") or ""),
            state=str(item.get("State") or "")))  # no State: not known to run
    return rows


def dependents_from_list(listed: list[dict[str, Any]], target_id: str) -> list[Dependent]:
    """The target's dependents in restart order; DependencyCycle names a cycle."""
    try:
        return dependents_of(container_rows(listed), target_id)
    except CycleFound as exc:
        raise DependencyCycle(str(exc)) from exc
