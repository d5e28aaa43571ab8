"""`autofix db upgrade` and the retention prune."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, delete, select

from receiver.store import image_history
from receiver.store.engine import Database
from receiver.store.lifecycle import FINISHED_INCIDENT_STATUSES, IngestState, rows_changed
from receiver.store.models import (
    AuditEntry,
    HostStorm,
    ImageHistory,
    Incident,
    MaintenanceWindow,
    Notification,
    TargetTransition,
    utcnow,
)

__all__ = ["alembic_config", "prune", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


PRUNE_BATCH_ROWS = 1000


def prune(database: Database, older_than: timedelta, batch_rows: int = PRUNE_BATCH_ROWS,
          now: datetime | None = None, stop: threading.Event | None = None,
          new_image_window: timedelta = timedelta(hours=1)) -> dict[str, int]:
    """Delete notifications (not those still to be filed), finished incidents (their runs
    and actions cascade), audit rows, stale operator-intent records, maintenance windows and
    host storms long over, and image history (never a name's newest three, nor any row of
    a name with a container created within `new_image_window`), in transactions
    of at most `batch_rows` rows each, so that a large backlog never holds locks that block
    ingest for long. `now` is the caller's clock
    (services.clock in the runner; the wall clock by default). `stop` set ends the prune
    between two batches (a shutdown does not wait for a backlog)."""
    at = now or utcnow()
    cutoff = at - older_than
    tables: dict[str, tuple[Any, tuple[ColumnElement[bool], ...]]] = {
        # A pending notification is acknowledged work: it waits to be filed, whatever age.
        "notifications": (Notification, (
            Notification.received_at < cutoff,
            Notification.ingest_state.is_distinct_from(IngestState.PENDING))),
        # Only what lifecycle calls finished: never an escalated incident waiting for a human.
        "incidents": (Incident, (
            Incident.last_seen < cutoff,
            Incident.status.in_(FINISHED_INCIDENT_STATUSES))),
        "audit_log": (AuditEntry, (AuditEntry.at < cutoff,)),
        # A container destroyed while nobody followed its events; a live one that old
        # is only the less known for it (state_unknown, never a restart).
        "target_transitions": (TargetTransition, (TargetTransition.updated_at < cutoff,)),
        # Over long ago (ended by hand before ends_at, or lapsed at it).
        "maintenance_windows": (MaintenanceWindow, (MaintenanceWindow.ends_at < cutoff,)),
        # Long over: the dashboards' annotations of host storms go as far back as this.
        "host_storms": (HostStorm, (HostStorm.until < cutoff,)),
        # Each name keeps its newest three whatever their age, and all while a container
        # of it may still be judged: what a new image is told from.
        "image_history": (ImageHistory, image_history.prunable(
            cutoff, at - new_image_window if new_image_window > timedelta(0) else None)),
    }
    return {table: _delete_in_batches(database, model, conditions, batch_rows, stop)
            for table, (model, conditions) in tables.items()}


def _delete_in_batches(database: Database, model: Any,
                       conditions: tuple[ColumnElement[bool], ...], batch_rows: int,
                       stop: threading.Event | None) -> int:
    key = model.__mapper__.primary_key[0]
    deleted = 0
    while stop is None or not stop.is_set():
        with database.session("prune") as session:
            ids = session.scalars(select(key).where(*conditions).order_by(key)
                                  .limit(batch_rows)).all()
            if not ids:
                return deleted
            # The conditions again: a row that changed since the SELECT stays.
            deleted += rows_changed(session.execute(
                delete(model).where(key.in_(ids), *conditions)))
    return deleted
