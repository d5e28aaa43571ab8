"""Evidence rows: size-capped on the way in; pruned with their incident (ON DELETE CASCADE,
so AUTOFIX_RETENTION_DAYS removes them with the incident they belong to)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from receiver.evidence.capture import Evidence
from receiver.store.models import EvidenceRecord, Incident

__all__ = ["DETAILS_MAX_BYTES", "store_evidence"]

# State, stats, events and the expression's value are small; a backend that returns more
# (thousands of series, huge health outputs) is cut to a note rather than stored.
DETAILS_MAX_BYTES = 64 * 1024


def _capped_details(evidence: Evidence) -> dict[str, Any]:
    # PostgreSQL's jsonb cannot hold NUL characters either.
    details: dict[str, Any] = json.loads(
        json.dumps(evidence.details(), default=str).replace("\\u0000", ""))
    if len(json.dumps(details)) <= DETAILS_MAX_BYTES:
        return details
    kept: dict[str, Any] = {"errors": evidence.errors, "cut": evidence.cut,
                            "oversized": []}
    for name, value in details.items():
        if name in kept:
            continue
        if len(json.dumps(value)) <= DETAILS_MAX_BYTES // 8:
            kept[name] = value
        else:
            kept["oversized"].append(name)
    return kept


def store_evidence(session: Session, evidence: Evidence, *, incident_id: int,
                   run_id: int | None, step: int | None, source: str) -> int:
    """Insert the row; the incident takes its classification when it has one. A plain
    column UPDATE (not a status): the newest evidence wins."""
    details = _capped_details(evidence)
    logs = evidence.log_text.replace("\x00", "")  # PostgreSQL text cannot hold NUL
    row = EvidenceRecord(
        incident_id=incident_id, run_id=run_id, step=step, source=source,
        target=evidence.target[:255], captured_at=evidence.captured_at,
        took_s=evidence.took_s, classification=evidence.classification, details=details,
        logs=logs, size_bytes=len(logs.encode()) + len(json.dumps(details)))
    session.add(row)
    session.flush()
    if evidence.classification is not None:
        session.execute(update(Incident).where(Incident.id == incident_id)
                        .values(classification=evidence.classification))
    return row.id
