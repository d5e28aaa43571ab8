"""Notifications: events written to an outbox in the caller's transaction, sent in background."""

from receiver.notify.events import Event, Notifier, NullNotifier
from receiver.notify.messages import (
    IncidentInfo,
    LinkSettings,
    build_slack_message,
    build_webhook_payload,
)
from receiver.notify.outbox import OutboxNotifier, OutboxSender, build_notifier, start_sender

__all__ = [
    "Event", "IncidentInfo", "LinkSettings", "Notifier", "NullNotifier", "OutboxNotifier",
    "OutboxSender", "build_notifier", "build_slack_message", "build_webhook_payload",
    "start_sender",
]
