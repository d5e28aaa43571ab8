"""What happened, as data. Channels turn events into messages; the runner only emits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy.orm import Session

__all__ = ["NOTICE_KINDS", "Event", "EventKind", "Notifier", "NullNotifier"]

EventKind = Literal["playbook_started", "action_result", "escalated", "breaker_opened",
                    "resolved", "note", "group", "paused", "resumed", "approval_requested",
                    "approval_decided", "evidence"]
# Events about autofix itself, not one incident: emitted with incident_id 0.
NOTICE_KINDS: frozenset[str] = frozenset({"paused", "resumed"})


@dataclass(frozen=True)
class Event:
    kind: EventKind
    incident_id: int
    details: dict[str, Any] = field(default_factory=dict)


class Notifier(Protocol):
    def emit(self, session: Session, event: Event) -> None:
        """Record the event for sending; must not do network I/O."""

    def emit_group(self, session: Session, group_id: int) -> None:
        """Record that a notification group's message needs (re)sending."""


class NullNotifier:
    def emit(self, session: Session, event: Event) -> None:
        return None

    def emit_group(self, session: Session, group_id: int) -> None:
        return None
