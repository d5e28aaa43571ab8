"""GET /api/v1/incidents, /incidents/<id>, /actions: filtered, paginated, read-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Select, func, select

from ..auth import require_token
from ..db.models import Action, Incident, Run
from ..errors import NotFound
from .common import MAX_ID, parse_id, parse_model, services, to_utc

__all__ = ["blueprint", "serialize_action", "serialize_incident"]

blueprint = Blueprint("queries", __name__, url_prefix="/api/v1")


class Page(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)
    since: datetime | None = None
    target: str | None = Field(None, max_length=255)

    _since = field_validator("since")(to_utc)


class IncidentFilter(Page):
    status: Literal["open", "remediating", "resolved", "escalated"] | None = None
    alertname: str | None = Field(None, max_length=255)


class ActionFilter(Page):
    outcome: Literal["succeeded", "failed", "skipped", "dry_run"] | None = None
    playbook: str | None = Field(None, max_length=255)
    action: str | None = Field(None, max_length=64)
    incident_id: int | None = Field(None, ge=1, le=MAX_ID)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def serialize_incident(row: Incident) -> dict[str, Any]:
    return {
        "id": row.id, "fingerprint": row.fingerprint, "alertname": row.alertname,
        "status": row.status, "severity": row.severity, "container": row.container,
        "target": row.target, "playbook": row.playbook, "trigger": row.trigger,
        "labels": row.labels, "annotations": row.annotations,
        "generator_url": row.generator_url, "starts_at": _iso(row.starts_at),
        "ends_at": _iso(row.ends_at), "first_seen": _iso(row.first_seen),
        "last_seen": _iso(row.last_seen), "resolved_at": _iso(row.resolved_at),
        "time_to_resolve_s": row.time_to_resolve_s, "resolved_unseen": row.resolved_unseen,
        "notification_count": row.notification_count, "escalated_at": _iso(row.escalated_at),
        "escalation_reason": row.escalation_reason,
    }


def serialize_action(row: Action) -> dict[str, Any]:
    return {
        "id": row.id, "run_id": row.run_id, "incident_id": row.incident_id,
        "playbook": row.playbook, "action": row.action, "target": row.target,
        "params": row.params, "outcome": row.outcome, "reason": row.reason, "error": row.error,
        "started_at": _iso(row.started_at), "finished_at": _iso(row.finished_at),
        "duration_s": row.duration_s, "trigger": row.trigger,
    }


def serialize_run(row: Run) -> dict[str, Any]:
    return {
        "id": row.id, "playbook": row.playbook, "target": row.target, "trigger": row.trigger,
        "status": row.status, "reason": row.reason, "requested_by": row.requested_by,
        "queued_at": _iso(row.queued_at), "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at), "dry_run": row.dry_run, "error": row.error,
    }


def _page(query: Select[Any], order: Any, page: Page) -> tuple[Select[Any], Select[Any]]:
    total = select(func.count()).select_from(query.subquery())
    return query.order_by(order).limit(page.limit).offset(page.offset), total


@blueprint.get("/incidents")
def list_incidents() -> Response:
    svc = services()
    require_token(request, svc.settings.secret("api_token"), "the API")
    page = parse_model(IncidentFilter, request.args.to_dict())
    query = select(Incident)
    if page.status:
        query = query.where(Incident.status == page.status)
    if page.alertname:
        query = query.where(Incident.alertname == page.alertname)
    if page.target:
        query = query.where(Incident.target == page.target)
    if page.since:
        query = query.where(Incident.first_seen >= page.since)
    rows, total = _page(query, Incident.id.desc(), page)
    with svc.database.session("api") as session:
        items = [serialize_incident(row) for row in session.scalars(rows)]
        count = session.scalar(total) or 0
    return jsonify({"items": items, "total": count, "limit": page.limit, "offset": page.offset})


@blueprint.get("/incidents/<incident_id>")
def show_incident(incident_id: str) -> Response:
    # Not <int:...>: werkzeug's converter 500s past 4300 digits and lets 2^63 reach SQLite.
    svc = services()
    require_token(request, svc.settings.secret("api_token"), "the API")
    wanted = parse_id(incident_id, "incident id")
    with svc.database.session("api") as session:
        row = session.get(Incident, wanted)
        if row is None:
            raise NotFound(f"no incident {wanted}")
        body = serialize_incident(row)
        body["runs"] = [serialize_run(r) for r in session.scalars(
            select(Run).where(Run.incident_id == wanted).order_by(Run.id))]
        body["actions"] = [serialize_action(a) for a in session.scalars(
            select(Action).where(Action.incident_id == wanted).order_by(Action.id))]
    return jsonify(body)


@blueprint.get("/actions")
def list_actions() -> Response:
    svc = services()
    require_token(request, svc.settings.secret("api_token"), "the API")
    page = parse_model(ActionFilter, request.args.to_dict())
    query = select(Action)
    for column, value in ((Action.outcome, page.outcome), (Action.playbook, page.playbook),
                          (Action.action, page.action), (Action.target, page.target),
                          (Action.incident_id, page.incident_id)):
        if value is not None:
            query = query.where(column == value)
    if page.since:
        query = query.where(Action.started_at >= page.since)
    rows, total = _page(query, Action.id.desc(), page)
    with svc.database.session("api") as session:
        items = [serialize_action(row) for row in session.scalars(rows)]
        count = session.scalar(total) or 0
    return jsonify({"items": items, "total": count, "limit": page.limit, "offset": page.offset})
