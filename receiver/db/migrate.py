"""`autofix db upgrade` and the retention prune."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, delete

from .engine import Database
from .models import AuditEntry, Incident, Notification, TargetTransition, utcnow

__all__ = ["alembic_config", "prune", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def prune(database: Database, older_than: timedelta) -> dict[str, int]:
    """Delete notifications (not those still to be filed), closed incidents (their runs and
    actions cascade), audit rows and stale operator-intent records."""
    cutoff = utcnow() - older_than
    statements = {
        # A pending notification is acknowledged work: it waits to be filed, whatever age.
        "notifications": delete(Notification).where(
            Notification.received_at < cutoff,
            Notification.ingest_state.is_distinct_from("pending")),
        "incidents": delete(Incident).where(
            Incident.last_seen < cutoff,
            Incident.status.in_(("resolved", "escalated", "closed"))),
        "audit_log": delete(AuditEntry).where(AuditEntry.at < cutoff),
        # A container destroyed while nobody followed its events; a live one that old
        # is only the less known for it (state_unknown, never a restart).
        "target_transitions": delete(TargetTransition).where(
            TargetTransition.updated_at < cutoff),
    }
    counts: dict[str, int] = {}
    with database.session("prune") as session:
        for table, statement in statements.items():
            result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
            counts[table] = result.rowcount
    return counts
