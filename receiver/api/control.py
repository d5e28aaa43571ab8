"""The kill switch over HTTP: GET /api/v1/pause, POST /api/v1/pause and /api/v1/resume."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, jsonify, request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from receiver.api.auth import requires
from receiver.api.common import json_body, parse_model, services, to_utc
from receiver.api.operations import operation
from receiver.api.playbooks import actor_with_address
from receiver.api.schemas import PauseOut
from receiver.incidents.pause import PauseState, current_pause, pause_automation, resume_automation

__all__ = ["PauseBody", "ResumeBody", "blueprint"]

blueprint = Blueprint("control", __name__, url_prefix="/api/v1")


class PauseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str = Field(min_length=1, max_length=200, description="Who pauses.")
    reason: str = Field(min_length=1, max_length=2000)
    until: AwareDatetime | None = Field(
        None, description="When the pause ends by itself (RFC 3339 with an offset); "
        "unset: until POST /api/v1/resume.")

    @field_validator("until", mode="after")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return to_utc(value)  # ValueError (a 400) when UTC cannot hold it


class ResumeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str = Field(min_length=1, max_length=200, description="Who resumes.")
    reason: str = Field("", max_length=2000)


def _pause_body(state: PauseState) -> Response:
    return jsonify(PauseOut.model_validate(state).body())


@blueprint.get("/pause")
@operation("Whether automation is paused (the kill switch)", {"200": ("the switch", PauseOut)})
@requires("read")
def show_pause() -> Response:
    return _pause_body(current_pause(services()))


@blueprint.post("/pause")
@operation("Pause automation: no step that leaves the process starts anywhere",
           {"200": ("paused", PauseOut)}, {"409": "paused already"}, body=PauseBody,
           description="Runs skip with reason `paused`; alerts are still recorded, "
           "notifications sent and dry runs go on. Audited; told to the notification "
           "channels.")
@requires("operator")
def pause() -> Response:
    body = parse_model(PauseBody, json_body(request, 64 * 1024))
    actor = actor_with_address(body.actor, request.remote_addr)
    return _pause_body(pause_automation(services(), actor, body.reason, body.until))


@blueprint.post("/resume")
@operation("Resume automation after a pause", {"200": ("resumed", PauseOut)},
           {"409": "not paused"}, body=ResumeBody,
           description="Queues again, once, each alert run skipped `paused` during the pause "
           "whose incident is still open (audited `resume_requeue`).")
@requires("operator")
def resume() -> Response:
    body = parse_model(ResumeBody, json_body(request, 64 * 1024))
    actor = actor_with_address(body.actor, request.remote_addr)
    return _pause_body(resume_automation(services(), actor, body.reason))
