"""What one Docker container event does to the follower's record of that container (pure).

A record holds what happened since the container's last start. Its cause is `crash` only
when the follower saw that start and the die in one unbroken window (no request could have
slipped through a gap); a `kill`/`stop` seen after the start makes it `operator`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["FOLLOWED_ACTIONS", "IMAGE_ACTIONS", "SeenEvent", "apply_event", "parse_event"]

# Container events that change why a container is in its state. `destroy` forgets it.
FOLLOWED_ACTIONS = frozenset({"start", "kill", "stop", "die", "oom", "pause", "unpause",
                              "destroy"})
# Container events after which the image history records the container (its image), or
# moves it to its name now (Compose v2 renames a recreated container before starting it).
IMAGE_ACTIONS = frozenset({"create", "start", "rename"})


@dataclass(frozen=True)
class SeenEvent:
    container_id: str
    name: str
    action: str
    at: datetime
    exit_code: int | None
    signal: str | None
    labels: dict[str, str]


def parse_event(event: dict[str, Any], actions: frozenset[str] = FOLLOWED_ACTIONS
                ) -> SeenEvent | None:
    """A decoded /events message, or None when it is not a container event of `actions`."""
    if event.get("Type") != "container":
        return None
    action = str(event.get("Action") or event.get("status") or "").split(":")[0]
    if action not in actions:
        return None
    actor = event.get("Actor") or {}
    attributes = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
    container_id = str(actor.get("ID") or event.get("id") or "")
    if not container_id:
        return None
    nano = int(event.get("timeNano") or int(event.get("time") or 0) * 1_000_000_000)
    exit_code = attributes.get("exitCode")
    return SeenEvent(container_id, attributes.get("name", ""), action,
                     datetime.fromtimestamp(nano / 1e9, UTC),
                     int(exit_code) if exit_code and exit_code.lstrip("-").isdigit() else None,
                     attributes.get("signal"), attributes)


def apply_event(record: dict[str, Any] | None, event: SeenEvent, window: datetime
                ) -> dict[str, Any] | None:
    """The record's new column values (target_transitions), or None to delete it.
    `window` is the covered_since of the window the event was seen in."""
    if event.action == "destroy":
        return None
    base = dict(record or {})
    if base and base.get("window") != window:
        # Seen before a gap: it may belong to an incarnation that ended in the gap.
        base.update(operator_request=None, cause="unknown")
    if event.action == "start" or not base:
        base.update(started_at=None, died_at=None, exit_code=None, operator_request=None,
                    start_window=None, cause="unknown")
    values = {**base, "name": event.name or base.get("name", ""), "action": event.action,
              "at": event.at, "window": window}
    at = event.at.isoformat()
    if event.action == "start":
        values.update(started_at=event.at, start_window=window, cause="running",
                      detail=f"started at {at}")
    elif event.action in ("kill", "stop"):
        signal = f" (signal {event.signal})" if event.signal else ""
        request = values.get("operator_request") or (
            f"an API caller asked Docker to {event.action} it{signal} at {at}")
        values.update(operator_request=request)
        if values.get("died_at") is not None:
            values.update(cause="operator", detail=_died(values, request))
        else:
            values.update(detail=request)
    elif event.action == "oom":
        values.update(cause="oom", detail=f"the kernel's OOM killer hit it at {at}")
    elif event.action == "die":
        values.update(died_at=event.at, exit_code=event.exit_code)
        seen_whole = values.get("start_window") == window
        if values.get("operator_request"):
            values.update(cause="operator", detail=_died(values, values["operator_request"]))
        elif base.get("cause") == "oom":
            values.update(cause="oom", detail=f"the kernel's OOM killer ended it at {at}")
        elif seen_whole:
            values.update(cause="crash", detail=(
                f"it exited by itself with code {event.exit_code} at {at}: the events "
                f"follower saw every event since its start at "
                f"{values['started_at'].isoformat()}"))
        else:
            values.update(cause="unknown", detail=(
                f"it exited with code {event.exit_code} at {at}, but the events follower "
                "did not see every event since its start"))
    elif event.action == "pause":
        values.update(cause="paused", detail=f"an API caller paused it at {at}")
    elif event.action == "unpause":
        values.update(cause="running", detail=f"an API caller unpaused it at {at}")
    return values


def _died(values: dict[str, Any], request: str) -> str:
    return f"{request}; it exited with code {values.get('exit_code')}"
