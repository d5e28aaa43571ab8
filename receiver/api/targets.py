"""GET /api/v1/targets/{target}/dependents: who depends on a target, in the order autofix
restarts them after it (receiver/engine/dependents.py)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from receiver.api.auth import requires
from receiver.api.common import services
from receiver.api.operations import operation
from receiver.api.schemas import DependentsOut
from receiver.engine.dependents import dependents_view

__all__ = ["blueprint"]

blueprint = Blueprint("targets", __name__, url_prefix="/api/v1")


@blueprint.get("/targets/<target>/dependents")
@operation("A target's dependents, in restart order",
           {"200": ("the dependents", DependentsOut)},
           {"404": "no enabled backend knows the target",
            "409": "its dependents form a cycle (the message names it), or an ID prefix "
                   "matches several containers (the message lists them)",
            "503": "the backend (dockerd) cannot be reached; retry"},
           database=False,
           description="From one container list: containers sharing the target's network "
           "namespace (network_mode container:) and Compose depends_on labels, all "
           "descendants, each after everything it depends on; whether each is opted in and "
           "would be restarted after the target under the default `dependents: restart`.")
@requires("read")
def show_dependents(target: str) -> Response:
    return jsonify(DependentsOut.of(dependents_view(services(), target)).body())
