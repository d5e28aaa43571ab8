"""Notifications: events written to an outbox in the caller's transaction, sent in background."""

from .events import Event, Notifier, NullNotifier

__all__ = ["Event", "Notifier", "NullNotifier"]
