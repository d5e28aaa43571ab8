"""POST /api/v1/runs/{id}/approve and /deny (operator scope; actor and comment recorded)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from receiver.api.auth import requires
from receiver.api.common import json_body, parse_id, parse_model, services
from receiver.api.operations import operation
from receiver.api.playbooks import actor_with_address
from receiver.api.schemas import RunOut
from receiver.incidents.approvals import Verdict, decide_run

__all__ = ["RunDecisionBody", "blueprint"]

blueprint = Blueprint("runs", __name__, url_prefix="/api/v1")


class RunDecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str = Field(min_length=1, max_length=200, description="Who decides.")
    comment: str = Field("", max_length=2000)


def _decide(run_id: str, verdict: Verdict) -> Response:
    body = parse_model(RunDecisionBody, json_body(request, 64 * 1024))
    actor = actor_with_address(body.actor, request.remote_addr)
    run = decide_run(services(), parse_id(run_id, "run id"), verdict, actor, body.comment)
    return jsonify(RunOut.of(run).body())


_DECISION_ERRORS = {"404": "no such run", "409": "not awaiting approval (decided, expired, ...)"}


@blueprint.post("/runs/<run_id>/approve")
@operation("Approve a run awaiting approval: it is queued and passes every guard again",
           {"200": ("the run", RunOut)}, _DECISION_ERRORS, body=RunDecisionBody)
@requires("operator")
def approve(run_id: str) -> Response:
    return _decide(run_id, "approve")


@blueprint.post("/runs/<run_id>/deny")
@operation("Deny a run awaiting approval: it never acts, and its incident escalates",
           {"200": ("the run", RunOut)}, _DECISION_ERRORS, body=RunDecisionBody)
@requires("operator")
def deny(run_id: str) -> Response:
    return _decide(run_id, "deny")
