"""GET /api/v1/incidents, /incidents/<id>, /actions, /audit: filtered, paginated, read-only.

List pages are bounded in bytes as well as rows, so that a corpus of alerts with
megabyte annotations cannot make one request load hundreds of megabytes:

- each row's JSON size is asked from the database first; rows are then loaded in groups
  of at most LOAD_GROUP_BYTES (a bigger row alone), serialised and let go;
- in a list, a label or annotation key or value longer than LIST_VALUE_CHARS is cut (it
  ends with an ellipsis) and named in the item's `truncated` list; `/incidents/{id}` and
  the database keep the full values;
- a page stops adding items once LIST_BYTE_BUDGET bytes of items are reached (always at
  least one item); `next_offset` is where the next page starts (null on the last page).

A page's `total` is counted up to `offset` + PAGE_COUNT_CAP rows (`total_exact` false past
it): an exact count(*) reads every matching row, which at ten million incidents cost more
than the page itself (bench/scale.py). The bound keeps `end < total` true whenever a next
page exists, since PAGE_COUNT_CAP exceeds the largest `limit`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import ColumnElement, Text, cast, func, select
from sqlalchemy.orm import Session, defer

from receiver.api.auth import requires
from receiver.api.common import MAX_ID, parse_id, parse_model, services, to_utc
from receiver.api.operations import operation
from receiver.api.schemas import (
    PAGE_COUNT_CAP,
    ActionListItem,
    ActionOut,
    ActionPage,
    AuditEntryOut,
    AuditPage,
    EvidenceOut,
    IncidentDetail,
    IncidentListItem,
    IncidentOut,
    IncidentPage,
    PageOut,
    RunOut,
    RunPage,
)
from receiver.domain.errors import NotFound
from receiver.store.models import Action, AuditEntry, EvidenceRecord, Incident, Run

__all__ = ["LIST_BYTE_BUDGET", "LIST_VALUE_CHARS", "LOAD_GROUP_BYTES", "ActionFilter",
           "AuditFilter", "IncidentFilter", "RunFilter", "blueprint"]

blueprint = Blueprint("queries", __name__, url_prefix="/api/v1")

LIST_BYTE_BUDGET = 2 * 1024 * 1024
LIST_VALUE_CHARS = 1024
LOAD_GROUP_BYTES = 8 * 1024 * 1024


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(50, ge=1, le=500)  # below PAGE_COUNT_CAP: next_offset relies on it
    offset: int = Field(0, ge=0, le=10_000_000)
    since: datetime | None = None

    _since = field_validator("since")(to_utc)


class Page(Window):
    target: str | None = Field(None, max_length=255)


class IncidentFilter(Page):
    # Spelled out (not the enum) so the OpenAPI document needs no $defs here.
    status: Literal["open", "remediating", "escalated", "acknowledged", "closed",
                    "resolved"] | None = None
    alertname: str | None = Field(None, max_length=255)


class ActionFilter(Page):
    outcome: Literal["succeeded", "failed", "skipped", "dry_run", "interrupted"] | None = None
    playbook: str | None = Field(None, max_length=255)
    action: str | None = Field(None, max_length=64)
    incident_id: int | None = Field(None, ge=1, le=MAX_ID)


class RunFilter(Page):
    status: Literal["queued", "awaiting_approval", "running", "succeeded", "failed",
                    "skipped", "interrupted", "denied", "expired"] | None = None
    playbook: str | None = Field(None, max_length=255)


class AuditFilter(Window):
    verb: str | None = Field(None, max_length=64, description="e.g. breaker_reset, reload.")
    actor: str | None = Field(None, max_length=255,
                              description="Entries whose actor starts with this text.")


def _clip(mapping: Any, prefix: str, cut: list[str]) -> Any:
    """A list view of a label/annotation map: long keys and values cut and named in `cut`."""
    if not isinstance(mapping, dict):
        return mapping
    clipped: dict[str, Any] = {}
    for key, value in mapping.items():
        short_key = key
        if isinstance(key, str) and len(key) > LIST_VALUE_CHARS:
            short_key = key[:LIST_VALUE_CHARS] + "\u2026"
        if isinstance(value, str) and len(value) > LIST_VALUE_CHARS:
            value = value[:LIST_VALUE_CHARS] + "\u2026"
            cut.append(f"{prefix}.{short_key}")
        elif short_key != key:
            cut.append(f"{prefix}.{short_key}")
        clipped[short_key] = value
    return clipped


def _incident_item(row: Incident) -> IncidentListItem:
    full = IncidentOut.of(row, services().redactor)
    cut: list[str] = []
    return IncidentListItem.model_validate({
        **dict(full), "labels": _clip(full.labels, "labels", cut),
        "annotations": _clip(full.annotations, "annotations", cut), "truncated": cut})


def _action_item(row: Action) -> ActionListItem:
    full = ActionOut.of(row, services().redactor)
    cut: list[str] = []
    return ActionListItem.model_validate({
        **dict(full), "params": _clip(full.params, "params", cut), "truncated": cut})


def _bounded_page(session: Session, model: Any, filters: list[ColumnElement[bool]],
                  size: ColumnElement[Any], item_of: Callable[[Any], BaseModel],
                  page: Window, page_model: type[PageOut]) -> dict[str, Any]:
    """One page of `model` rows, newest first, bounded in rows and in bytes: the body of
    `page_model`."""
    sized = session.execute(
        select(model.id, size).where(*filters).order_by(model.id.desc())
        .limit(page.limit).offset(page.offset)).all()
    bound = page.offset + PAGE_COUNT_CAP
    counted = session.scalar(select(func.count()).select_from(
        select(model.id).where(*filters).limit(bound + 1).subquery())) or 0
    total = min(counted, bound)
    items: list[BaseModel] = []
    used = 0
    index = 0
    full = False
    while index < len(sized) and not full:
        group: list[int] = []
        group_bytes = 0
        while index < len(sized) and (not group or group_bytes + (sized[index][1] or 0)
                                      <= LOAD_GROUP_BYTES):
            group.append(sized[index][0])
            group_bytes += sized[index][1] or 0
            index += 1
        rows = {row.id: row for row in session.scalars(
            select(model).where(model.id.in_(group)))}
        for row_id in group:
            item = item_of(rows[row_id])
            item_bytes = len(json.dumps(item.model_dump(mode="json"), default=str))
            if items and used + item_bytes > LIST_BYTE_BUDGET:
                full = True
                break
            items.append(item)
            used += item_bytes
        session.expunge_all()  # let this group's rows go before loading the next
        del rows
    end = page.offset + len(items)
    return page_model.model_validate({
        "items": items, "total": total, "total_exact": counted <= bound,
        "limit": page.limit, "offset": page.offset,
        "next_offset": end if end < total else None}).body()


def _json_size(*columns: Any) -> ColumnElement[Any]:
    total: ColumnElement[Any] = func.coalesce(func.length(cast(columns[0], Text)), 0)
    for column in columns[1:]:
        total = total + func.coalesce(func.length(cast(column, Text)), 0)
    return total


@blueprint.get("/incidents")
@operation("List incidents", {"200": ("a page", IncidentPage)}, query=IncidentFilter)
@requires("read")
def list_incidents() -> Response:
    svc = services()
    page = parse_model(IncidentFilter, request.args.to_dict())
    filters: list[ColumnElement[bool]] = []
    if page.status:
        filters.append(Incident.status == page.status)
    if page.alertname:
        filters.append(Incident.alertname == page.alertname)
    if page.target:
        filters.append(Incident.target == page.target)
    if page.since:
        filters.append(Incident.first_seen >= page.since)
    with svc.database.session("api") as session:
        body = _bounded_page(session, Incident, filters,
                             _json_size(Incident.labels, Incident.annotations),
                             _incident_item, page, IncidentPage)
    return jsonify(body)


@blueprint.get("/incidents/<incident_id>")
@operation("One incident with its runs and actions", {"200": ("the incident", IncidentDetail)},
           {"404": "no such incident"})
@requires("read")
def show_incident(incident_id: str) -> Response:
    # Not <int:...>: werkzeug's converter 500s past 4300 digits and lets 2^63 reach SQLite.
    svc = services()
    wanted = parse_id(incident_id, "incident id")
    with svc.database.session("api") as session:
        row = session.get(Incident, wanted)
        if row is None:
            raise NotFound(f"no incident {wanted}")
        redactor = services().redactor
        detail = IncidentDetail.of(
            row, redactor,
            runs=[RunOut.of(r) for r in session.scalars(
                select(Run).where(Run.incident_id == wanted).order_by(Run.id))],
            actions=[ActionOut.of(a, redactor) for a in session.scalars(
                select(Action).where(Action.incident_id == wanted).order_by(Action.id))],
            # Everything but the log text, which has its own route.
            evidence=[EvidenceOut.of(e) for e in session.scalars(
                select(EvidenceRecord).options(defer(EvidenceRecord.logs))
                .where(EvidenceRecord.incident_id == wanted).order_by(EvidenceRecord.id))])
    return jsonify(detail.body())


@blueprint.get("/evidence/<evidence_id>/logs")
@operation("The redacted log tail of one evidence capture", {"200": ("log text", None)},
           {"404": "no such evidence"}, content_type="text/plain")
@requires("read")
def evidence_logs(evidence_id: str) -> Response:
    """The redacted log tail of one evidence capture, as plain text."""
    wanted = parse_id(evidence_id, "evidence id")
    with services().database.session("api") as session:
        logs = session.scalar(select(EvidenceRecord.logs).where(EvidenceRecord.id == wanted))
    if logs is None:
        raise NotFound(f"no evidence {wanted}")
    return Response(logs, mimetype="text/plain")


@blueprint.get("/actions")
@operation("List actions", {"200": ("a page", ActionPage)}, query=ActionFilter)
@requires("read")
def list_actions() -> Response:
    svc = services()
    page = parse_model(ActionFilter, request.args.to_dict())
    filters: list[ColumnElement[bool]] = []
    for column, value in ((Action.outcome, page.outcome), (Action.playbook, page.playbook),
                          (Action.action, page.action), (Action.target, page.target),
                          (Action.incident_id, page.incident_id)):
        if value is not None:
            filters.append(column == value)
    if page.since:
        filters.append(Action.started_at >= page.since)
    with svc.database.session("api") as session:
        body = _bounded_page(session, Action, filters,
                             _json_size(Action.params, Action.error), _action_item, page,
                             ActionPage)
    return jsonify(body)


@blueprint.get("/runs")
@operation("List runs, newest first (status=awaiting_approval: the runs waiting for a "
           "human)", {"200": ("a page", RunPage)}, query=RunFilter)
@requires("read")
def list_runs() -> Response:
    """Runs, newest first: `status=awaiting_approval` is what waits for a human."""
    page = parse_model(RunFilter, request.args.to_dict())
    filters: list[ColumnElement[bool]] = []
    for column, value in ((Run.status, page.status), (Run.playbook, page.playbook),
                          (Run.target, page.target)):
        if value is not None:
            filters.append(column == value)
    if page.since:
        filters.append(Run.queued_at >= page.since)
    with services().database.session("api") as session:
        body = _bounded_page(session, Run, filters,
                             _json_size(Run.error, Run.reason, Run.decision_comment),
                             RunOut.of, page, RunPage)
    return jsonify(body)


@blueprint.get("/audit")
@operation("The audit log: who did what by hand, newest first",
           {"200": ("a page", AuditPage)}, query=AuditFilter)
@requires("read")
def list_audit() -> Response:
    """Who did what by hand (breaker resets, manual runs, acknowledgements, reloads)."""
    page = parse_model(AuditFilter, request.args.to_dict())
    filters: list[ColumnElement[bool]] = []
    if page.verb is not None:
        filters.append(AuditEntry.verb == page.verb)
    if page.actor is not None:
        filters.append(AuditEntry.actor.startswith(page.actor, autoescape=True))
    if page.since:
        filters.append(AuditEntry.at >= page.since)
    with services().database.session("api") as session:
        body = _bounded_page(session, AuditEntry, filters,
                             _json_size(AuditEntry.reason, AuditEntry.subject),
                             AuditEntryOut.model_validate, page, AuditPage)
    return jsonify(body)
