"""Write one notification: audit row, one upsert per occurrence, queued runs.

The unique constraint on (fingerprint, starts_at) is the dedup key: concurrent identical
POSTs on any worker collapse into one row whose notification_count counts them all.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Table, Text, bindparam, cast, column, func, insert, null, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from receiver.domain.payload import WebhookPayload
from receiver.playbooks.ingest import Occurrence
from receiver.store.engine import execute_compiled
from receiver.store.group_store import group_insert, group_params
from receiver.store.lifecycle import (
    NEW_RUN_STATUS,
    IngestState,
    closed_on_arrival,
    new_incident_status,
    resolved_status,
)
from receiver.store.models import Incident, Notification, Run

__all__ = ["TRUNCATED_MARK", "IngestResult", "Stored", "file_occurrences", "fit",
           "store_and_upsert", "store_notification"]

# Annotation added to an incident whose column values had to be cut to fit: it lists the
# columns (e.g. "alertname,container"). The full values stay in `labels`.
TRUNCATED_MARK = "autofix_truncated"

T = TypeVar("T")
NOTIFY_ONLY_REASON = "notify-only playbook: reported in the notification group's message"
# Bound parameters per statement stay under PostgreSQL's 65535 and SQLite's 32766.
_CHUNK = 1000
# PostgreSQL's incident upsert binds a whole chunk as one JSON document (_recordset).
_PG_CHUNK = 5000


@dataclass
class IngestResult:
    notification_id: int = 0
    alerts: int = 0
    new: int = 0
    duplicates: int = 0
    resolved: int = 0
    runs_queued: int = 0
    run_ids: list[int] = field(default_factory=list)
    incident_ids: list[int] = field(default_factory=list)
    resolved_ids: list[int] = field(default_factory=list)
    # The playbook each resolved incident fired with: only incidents with a thread of
    # their own (a run that could act) get a "resolved" message of their own.
    resolved_playbooks: dict[int, str | None] = field(default_factory=dict)
    notify_only_closed: int = 0


def store_notification(session: Session, payload: WebhookPayload, raw_text: str,
                       now: datetime, ingest_state: IngestState | None = None) -> int:
    """The audit row, its payload the JSON text as received (serializing a 10,000-alert
    payload again cost more than storing it); its id. `ingest_state` pending leaves its
    alerts to be filed later (receiver/incidents/filing.py)."""
    return int(execute_compiled(session, _notification_insert(_dialect(session)),
                                _notification_params(payload, raw_text, now, ingest_state)
                                ).scalar_one())


def store_and_upsert(session: Session, payload: WebhookPayload, raw_text: str,
                     now: datetime, occurrences: Sequence[Occurrence],
                     group: dict[str, Any] | None) -> Stored | None:
    """The notification row, its incidents' upsert and its group's (`group`:
    group_store.GROUP_COLUMNS, or None for no group row) in one statement: on PostgreSQL,
    for alerts all firing or all resolved, in one chunk. Three statements were three round
    trips, each with its own share of the webhook's CPU. None where it does not apply: the
    caller then runs them one by one, with the same outcome."""
    if _dialect(session) != "postgresql" or not 0 < len(occurrences) <= _PG_CHUNK:
        return None
    status = occurrences[0].status
    if any(o.status != status for o in occurrences):
        return None
    params = {_NOTIFICATION_PREFIX + k: v
              for k, v in _notification_params(payload, raw_text, now).items()}
    params["rows"] = _json_rows([_values(o, now) for o in occurrences], now)
    if group is not None:
        params |= group_params(group, "postgresql", prefix=_GROUP_PREFIX)
    found = execute_compiled(session, _combined_statement(status == "resolved",
                                                          group is not None), params).all()
    rows = {(row.fingerprint, row.starts_at): row for row in found}
    return Stored(found[0].notification_id, [rows[(o.fingerprint, o.starts_at)]
                                             for o in occurrences], found[0].group_id)


@dataclass(frozen=True)
class Stored:
    """What store_and_upsert wrote: the notification's id, each occurrence's incident row
    (in the occurrences' order) and the group's id (None: no group row, or an older state)."""

    notification_id: int
    incidents: list[Any]
    group_id: int | None


# The combined statement's parameter names: both tables have group_key, receiver and
# external_url. The notification's columns besides `payload` (bound as payload_text).
_NOTIFICATION_PREFIX, _GROUP_PREFIX = "n_", "g_"
_NOTIFICATION_COLUMNS = ("received_at", "group_key", "receiver", "status", "alert_count",
                        "truncated_alerts", "external_url", "ingest_state")


def _notification_params(payload: WebhookPayload, raw_text: str, now: datetime,
                         ingest_state: IngestState | None = None) -> dict[str, Any]:
    """_NOTIFICATION_COLUMNS and payload_text."""
    return {
        "received_at": now, "group_key": payload.group_key,
        "receiver": fit(payload.receiver, 1024), "status": payload.status,
        "alert_count": len(payload.alerts), "truncated_alerts": payload.truncated_alerts,
        "external_url": payload.external_url, "ingest_state": ingest_state,
        "payload_text": raw_text,
    }


@functools.lru_cache(maxsize=4)
def _combined_statement(resolved: bool, with_group: bool) -> Any:
    """WITH n AS (INSERT notification), i AS (upsert incidents), g AS (upsert group)
    SELECT n.id, g.id, i.* : one row per incident (PostgreSQL runs every data-modifying
    CTE once, whether or not a row of it is selected)."""
    notifications: Table = Notification.__table__  # type: ignore[assignment]
    values: dict[str, Any] = {
        name: bindparam(_NOTIFICATION_PREFIX + name, type_=notifications.c[name].type)
        for name in _NOTIFICATION_COLUMNS}
    values["payload"] = cast(bindparam(f"{_NOTIFICATION_PREFIX}payload_text", type_=Text),
                             JSONB)
    values["ingest_attempts"] = 0
    n = insert(notifications).values(values).returning(notifications.c.id).cte("n")
    i = _upsert_statement("postgresql", resolved).cte("i")
    joined = n.outerjoin(i, true())
    group_id: Any = null()
    if with_group:
        g = group_insert("postgresql", _GROUP_PREFIX, after=i).cte("g")
        joined = joined.outerjoin(g, true())
        group_id = g.c.id
    return select(n.c.id.label("notification_id"), group_id.label("group_id"),
                  *(i.c[name] for name in _RETURNED)).select_from(joined)


def file_occurrences(session: Session, notification_id: int, alert_count: int,
                     occurrences: Sequence[Occurrence], now: datetime,
                     config_version: int | None = None,
                     upserted: list[Any] | None = None) -> IngestResult:
    """One upsert per occurrence, and the runs they queue. `config_version` is the playbooks
    version the occurrences were planned with: the runs it queues execute that version,
    whatever is loaded when they run. `upserted`: the incident rows store_and_upsert
    already wrote for `occurrences`."""
    result = IngestResult(notification_id=notification_id, alerts=alert_count)
    firing = [o for o in occurrences if o.status == "firing"]
    resolved = [o for o in occurrences if o.status == "resolved"]
    runs: list[dict[str, Any]] = []
    size = _PG_CHUNK if _dialect(session) == "postgresql" else _CHUNK
    if upserted is not None and (len(upserted) != len(occurrences)
                                 or len(occurrences) > size or (firing and resolved)):
        raise ValueError("upserted rows stand for one chunk of occurrences of one status")

    def upsert(chunk: Sequence[Occurrence]) -> list[Any]:
        return upserted if upserted is not None else _upsert(session, chunk, now)

    for chunk in _chunks(firing, size):
        for row, occurrence in zip(upsert(chunk), chunk, strict=True):
            result.incident_ids.append(row.id)
            if row.notification_count == 1:
                result.new += 1
                if occurrence.notify_only:
                    # Inserted closed (_values): nothing to run, the group's message reports
                    # it, and no resolution needs waiting for (resolve still wins later).
                    result.notify_only_closed += 1
                elif occurrence.playbook is not None:
                    runs.append(_run_values(row.id, occurrence, now, config_version))
            else:
                result.duplicates += 1
    for chunk in _chunks(resolved, size):
        for row, occurrence in zip(upsert(chunk), chunk, strict=True):
            result.incident_ids.append(row.id)
            if row.resolved_at == now:  # this notification is the one that resolved it
                result.resolved += 1
                result.resolved_ids.append(row.id)
                result.resolved_playbooks[row.id] = row.playbook
                if occurrence.playbook is not None and not occurrence.notify_only:
                    runs.append(_run_values(row.id, occurrence, now, config_version))
            else:
                result.duplicates += 1
    for run_chunk in _chunks(runs):
        # One statement per chunk (insertmanyvalues), ids back in parameter order.
        statement = insert(Run).returning(Run.id, sort_by_parameter_order=True)
        result.run_ids.extend(session.scalars(statement, list(run_chunk)).all())
    result.runs_queued = len(result.run_ids)
    return result


@functools.lru_cache(maxsize=4)
def _notification_insert(dialect: str) -> Any:
    """A Core INSERT on the table, not the ORM's (add + flush, or its bulk insert): their
    bookkeeping cost more than the row. The payload is bound as text: SQLite keeps JSON as
    text, PostgreSQL parses it into JSONB."""
    notifications: Table = Notification.__table__  # type: ignore[assignment]
    text = bindparam("payload_text", type_=Text)
    return insert(notifications).returning(notifications.c.id).values(
        payload=cast(text, JSONB) if dialect == "postgresql" else text)


def _chunks(items: Sequence[T], size: int = _CHUNK) -> list[Sequence[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def fit(value: str, limit: int) -> str:
    """`value` cut to `limit` characters, the last one an ellipsis when it was cut."""
    return value if len(value) <= limit else value[:limit - 1] + "\u2026"


def _values(occurrence: Occurrence, now: datetime) -> dict[str, Any]:
    is_resolved = occurrence.status == "resolved"
    columns = {"alertname": (occurrence.labels.get("alertname", ""), 255),
               "severity": (occurrence.labels.get("severity", ""), 64),
               "container": (occurrence.labels.get("container", ""), 255),
               "generator_url": (occurrence.generator_url, 8192)}
    fitted = {name: fit(value, limit) for name, (value, limit) in columns.items()}
    cut = [name for name, (value, _) in columns.items() if fitted[name] != value]
    annotations = occurrence.annotations
    if cut:
        annotations = {**annotations, TRUNCATED_MARK: ",".join(cut)}
    time_to_resolve = None
    if is_resolved:
        time_to_resolve = max(0.0, ((occurrence.ends_at or now) - occurrence.starts_at)
                              .total_seconds())
    # Every row of a statement names the same columns; only a new notify-only incident
    # fills the closing ones (an existing row keeps its own: the upsert never sets them).
    status: dict[str, Any] = {
        "status": new_incident_status(is_resolved),
        "closed_at": None, "closed_by": None, "close_reason": None}
    if occurrence.notify_only and not is_resolved:
        status = closed_on_arrival(now, NOTIFY_ONLY_REASON)
    return {
        "fingerprint": occurrence.fingerprint, "starts_at": occurrence.starts_at,
        "ends_at": occurrence.ends_at, "alertname": fitted["alertname"],
        "severity": fitted["severity"], "container": fitted["container"],
        "target": occurrence.target or None,  # at most MAX_TARGET (ingest.resolve_target)
        "playbook": occurrence.playbook if not is_resolved else None,
        "labels": occurrence.labels, "annotations": annotations,
        "generator_url": fitted["generator_url"], **status, "notification_count": 1,
        "first_seen": now, "last_seen": now, "resolved_at": now if is_resolved else None,
        "time_to_resolve_s": time_to_resolve, "resolved_unseen": is_resolved,
        "trigger": "alert",
    }


@functools.lru_cache(maxsize=8)
def _upsert_statement(dialect: str, resolved: bool) -> Any:
    """One statement per (dialect, status), built once: SQLAlchemy caches its compiled form
    and sends many rows per round trip (insertmanyvalues). A fresh `.values([...])` per
    request would be compiled again every time, which dominated the webhook's CPU.
    On PostgreSQL the rows come from one JSON document (_recordset)."""
    incidents: Table = Incident.__table__  # type: ignore[assignment]
    statement: Any = (
        postgresql.insert(incidents).from_select(_UPSERT_COLUMNS, _recordset(incidents))
        if dialect == "postgresql" else sqlite.insert(incidents))
    table = incidents.c
    excluded = statement.excluded
    latest = func.greatest if dialect == "postgresql" else func.max
    updates: dict[str, Any] = {
        "notification_count": table.notification_count + 1,
        # Never backwards: a deferred notification may be filed after a newer one.
        "last_seen": latest(table.last_seen, excluded.last_seen),
    }
    if resolved:
        # lifecycle's "resolve" (from any state it allows, once), in the same statement.
        updates |= {
            "status": resolved_status(table.status, table.resolved_at),
            "next_attempt_at": None,
            "ends_at": func.coalesce(excluded.ends_at, table.ends_at),
            "resolved_at": func.coalesce(table.resolved_at, excluded.resolved_at),
            "time_to_resolve_s": func.coalesce(table.time_to_resolve_s,
                                               excluded.time_to_resolve_s),
        }
    return statement.on_conflict_do_update(
        index_elements=["fingerprint", "starts_at"], set_=updates,
    ).returning(*(table[name] for name in _RETURNED))


_RETURNED = ("id", "fingerprint", "starts_at", "notification_count", "resolved_at",
             "playbook")


# The columns _values fills, in its order.
_UPSERT_COLUMNS = (
    "fingerprint", "starts_at", "ends_at", "alertname", "severity", "container", "target",
    "playbook", "labels", "annotations", "generator_url", "status", "closed_at", "closed_by",
    "close_reason", "notification_count", "first_seen", "last_seen", "resolved_at",
    "time_to_resolve_s", "resolved_unseen", "trigger",
)


def _recordset(incidents: Table) -> Any:
    """SELECT * FROM jsonb_to_recordset(:rows) AS r(<the columns, typed as the table's>).

    On PostgreSQL a chunk's rows travel as one JSON document: binding 22 parameters per row
    (a bind processor each, then psycopg2 quoting them into 1000-row VALUES lists) was most
    of a storm's acknowledgement, and PostgreSQL parses one document faster than 22,000
    literals."""
    rows = func.jsonb_to_recordset(cast(bindparam("rows", type_=Text), JSONB)).table_valued(
        *(column(name, incidents.c[name].type) for name in _UPSERT_COLUMNS),
    ).render_derived(with_types=True)
    return select(*(rows.c[name] for name in _UPSERT_COLUMNS))


_TIME_COLUMNS = ("starts_at", "ends_at", "first_seen", "last_seen", "resolved_at",
                 "closed_at")


def _json_rows(values: list[dict[str, Any]], now: datetime) -> str:
    """The rows as one JSON document, timestamps in ISO 8601 with their offset (naive
    means UTC, as UTCDateTime binds them). Most are `now`, formatted once."""
    now_text = _iso(now)
    for row in values:
        for name in _TIME_COLUMNS:
            value = row[name]
            if value is not None:
                row[name] = now_text if value is now else _iso(value)
    return json.dumps(values)


def _iso(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _upsert(session: Session, chunk: Sequence[Occurrence], now: datetime) -> list[Any]:
    dialect = _dialect(session)
    statement = _upsert_statement(dialect, chunk[0].status == "resolved")
    values = [_values(o, now) for o in chunk]
    if dialect == "postgresql":
        result: Any = execute_compiled(session, statement, {"rows": _json_rows(values, now)})
    else:
        result = session.execute(statement, values)
    # Rows are matched back by key: RETURNING order across batches is not relied on.
    rows = {(row.fingerprint, row.starts_at): row for row in result}
    return [rows[(o.fingerprint, o.starts_at)] for o in chunk]


def _run_values(incident_id: int, occurrence: Occurrence, now: datetime,
                config_version: int | None) -> dict[str, Any]:
    return {
        "incident_id": incident_id, "playbook": occurrence.playbook,
        "target": occurrence.target or "", "trigger": "alert",
        "alert_status": occurrence.status, "reason": occurrence.target_error,
        "status": NEW_RUN_STATUS, "queued_at": now, "dry_run": False,
        "config_version": config_version, "lane": occurrence.lane,
        "priority": occurrence.priority,
    }
