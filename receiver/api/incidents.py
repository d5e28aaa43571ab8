"""POST /api/v1/incidents/{id}/acknowledge and /close (API token; audited)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from receiver.api.auth import requires
from receiver.api.common import json_body, parse_id, parse_model, services
from receiver.api.operations import operation
from receiver.api.schemas import IncidentOut
from receiver.incidents.manual import acknowledge_incident, close_incident
from receiver.store.models import Incident

__all__ = ["IncidentDecisionBody", "blueprint"]

blueprint = Blueprint("incidents", __name__, url_prefix="/api/v1")


class IncidentDecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str = Field(min_length=1, max_length=200, description="Who decides.")
    reason: str = Field("", max_length=2000)


_DECISION_ERRORS = {"404": "no such incident", "409": "resolved or closed already"}


def _incident_body(row: Incident) -> Response:
    return jsonify(IncidentOut.of(row, services().redactor).body())


def _decision() -> tuple[str, str]:
    body = parse_model(IncidentDecisionBody, json_body(request, 64 * 1024))
    return f"{body.actor} ({request.remote_addr})"[:255], body.reason


# Not <int:...>: werkzeug's converter 500s past 4300 digits and lets 2^63 reach SQLite.
@blueprint.post("/incidents/<incident_id>/acknowledge")
@operation("Acknowledge an incident (idempotent), recording who and why",
           {"200": ("the incident", IncidentOut)}, _DECISION_ERRORS, body=IncidentDecisionBody)
@requires("operator")
def acknowledge(incident_id: str) -> Response:
    actor, reason = _decision()
    return _incident_body(acknowledge_incident(
        services(), parse_id(incident_id, "incident id"), actor, reason))


@blueprint.post("/incidents/<incident_id>/close")
@operation("Close an incident by hand: no more automatic attempts",
           {"200": ("the incident", IncidentOut)}, _DECISION_ERRORS, body=IncidentDecisionBody)
@requires("operator")
def close(incident_id: str) -> Response:
    actor, reason = _decision()
    return _incident_body(close_incident(
        services(), parse_id(incident_id, "incident id"), actor, reason))
