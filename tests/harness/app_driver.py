"""Drive an in-process receiver app: post an alert for a container through the webhook,
drain the run queue, and read back its incidents, runs and actions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from receiver.runtime.runner import Runner
from receiver.store.models import Action, EvidenceRecord, Incident, Run
from tests.conftest import webhook_headers
from tests.payloads import alert, notification


def fire_container(client: Any, container: str, starts: datetime | None = None) -> Any:
    """One firing TargetDown-style alert labelled with `container`, starting now by default."""
    body = notification([alert({"container": container}, starts_at=starts or datetime.now(UTC))])
    response = client.post("/webhook/alertmanager", json=body, headers=webhook_headers())
    assert response.status_code == 200, response.json
    return response.json


def drain(app: Any) -> list[int]:
    """Run queued runs until none is left; the ids of the runs executed."""
    runner = Runner(app.extensions["autofix"])
    done = []
    while (run_id := runner.run_once()) is not None:
        done.append(run_id)
    return done


def actions(app: Any, target: str) -> list[Action]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(Action).where(Action.target == target)
                                    .order_by(Action.id)))


def incident_status(app: Any, target: str) -> list[str]:
    with app.extensions["autofix"].database.session() as session:
        return [i.status for i in session.scalars(
            select(Incident).where(Incident.target == target).order_by(Incident.id))]


def incidents(app: Any) -> list[Incident]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(Incident).order_by(Incident.id)))


def runs(app: Any) -> list[Run]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(Run).order_by(Run.id)))


def evidence_rows(app: Any, target: str) -> list[EvidenceRecord]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(EvidenceRecord).where(EvidenceRecord.target == target)
                                    .order_by(EvidenceRecord.id)))
