"""Maintenance windows over HTTP: GET /api/v1/maintenance, POST /api/v1/maintenance and
POST /api/v1/maintenance/{id}/end. A body that parses but cannot be a window is a 422."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from flask import Blueprint, Response, jsonify, request
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from receiver.api.auth import requires
from receiver.api.common import json_body, parse_id, parse_model, services, to_utc
from receiver.api.operations import operation
from receiver.api.playbooks import actor_with_address
from receiver.api.schemas import MaintenanceList, MaintenanceOut
from receiver.domain.errors import BadRequest, Unprocessable
from receiver.incidents.maintenance import (
    MAX_MATCHERS,
    WindowState,
    end_window,
    list_windows,
    start_window,
)

__all__ = ["MaintenanceBody", "MaintenanceEndBody", "MaintenanceFilter", "blueprint"]

blueprint = Blueprint("maintenance", __name__, url_prefix="/api/v1")
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class MaintenanceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matchers: list[Annotated[str, StringConstraints(max_length=1000)]] = Field(
        max_length=MAX_MATCHERS, description="Alertmanager matchers (name=\"v\", !=, =~, !~), "
        "all of which must hold over the alert's labels plus `target` (the run's target, "
        "as rendered and canonical). At least one, and not all matching an empty label set.")
    starts_at: AwareDatetime | None = Field(
        None, description="RFC 3339 with an offset; unset or in the past: now.")
    ends_at: AwareDatetime = Field(description="RFC 3339 with an offset; at most 30 days "
                                   "after the start.")
    actor: Annotated[Text, StringConstraints(max_length=200)] = Field(
        description="Who plans the maintenance.")
    reason: Annotated[Text, StringConstraints(max_length=2000)]

    @field_validator("starts_at", "ends_at", mode="after")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return to_utc(value)


class MaintenanceEndBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: Annotated[Text, StringConstraints(max_length=200)] = Field(
        description="Who ends the window.")
    reason: str = Field("", max_length=2000)


class MaintenanceFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ended: bool = Field(False, description="Include windows that are over, newest first.")
    limit: int = Field(100, ge=1, le=500)


def _window_body(window: WindowState) -> dict[str, Any]:
    return MaintenanceOut.model_validate(window).body()


def _unprocessable(model: type[BaseModel], data: Any) -> Any:
    """The body as `model`; a field that fails validation is a 422 (malformed JSON stays
    a 400)."""
    try:
        return parse_model(model, data)
    except BadRequest as exc:
        raise Unprocessable(exc.message, **exc.details) from None


@blueprint.get("/maintenance")
@operation("Maintenance windows in force or scheduled (ended=true: every window)",
           {"200": ("windows", MaintenanceList)}, query=MaintenanceFilter)
@requires("read")
def show_windows() -> Response:
    query = parse_model(MaintenanceFilter, request.args.to_dict())
    windows = list_windows(services(), query.ended, query.limit)
    return jsonify(MaintenanceList(
        items=[MaintenanceOut.model_validate(w) for w in windows]).body())


@blueprint.post("/maintenance")
@operation("Plan a maintenance window: matching runs skip with reason `maintenance`",
           {"201": ("the window", MaintenanceOut)},
           {"422": "invalid matchers, no matchers, matchers that hold everything, ends_at "
                   "not after starts_at or in the past, longer than 30 days, a timestamp "
                   "without offset, a missing actor or reason"},
           body=MaintenanceBody,
           description="While `starts_at <= now < ends_at`, a run (alert, retry or manual) "
           "whose alert labels plus `target` match every matcher skips with reason "
           "`maintenance`, not escalated; alerts are still recorded; dry runs and "
           "notify-only runs go on. Audited (`maintenance_start`).")
@requires("operator")
def create_window() -> tuple[Response, int]:
    body: MaintenanceBody = _unprocessable(MaintenanceBody, json_body(request, 64 * 1024))
    actor = actor_with_address(body.actor, request.remote_addr)
    window = start_window(services(), body.matchers, body.starts_at, body.ends_at, actor,
                          body.reason)
    return jsonify(_window_body(window)), 201


@blueprint.post("/maintenance/<maintenance_id>/end")
@operation("End a maintenance window now (or cancel a scheduled one)",
           {"200": ("the window", MaintenanceOut)},
           {"404": "no such window", "409": "the window is over already",
            "422": "a field that fails validation"},
           body=MaintenanceEndBody,
           description="Audited (`maintenance_end`). Queues again, once, each alert run the "
           "window held whose incident is still open, unless another window holds it "
           "(audited `maintenance_requeue`); the same happens when ends_at passes.")
@requires("operator")
def end(maintenance_id: str) -> Response:
    number = parse_id(maintenance_id, "maintenance window id")
    body: MaintenanceEndBody = _unprocessable(MaintenanceEndBody,
                                              json_body(request, 64 * 1024))
    actor = actor_with_address(body.actor, request.remote_addr)
    return jsonify(_window_body(end_window(services(), number, actor, body.reason)))
