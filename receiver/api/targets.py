"""GET /api/v1/targets/{target}/dependents: who depends on a target, in the order autofix
restarts them after it (receiver/engine/dependents.py). Among several Docker hosts the
target is `<host>/<name>` (a path converter: the slash as is, or %2F) or `?host=`."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from receiver.api.auth import requires
from receiver.api.common import parse_model, services
from receiver.api.operations import operation
from receiver.api.schemas import DependentsOut, DependentsQuery
from receiver.engine.dependents import dependents_view

__all__ = ["blueprint"]

blueprint = Blueprint("targets", __name__, url_prefix="/api/v1")


@blueprint.get("/targets/<path:target>/dependents")
@operation("A target's dependents, in restart order",
           {"200": ("the dependents", DependentsOut)},
           {"400": "the path and host= name two different hosts",
            "404": "no enabled backend knows the target, or no Docker host has that name "
                   "(reason unknown_host), or several hosts and none named (host_required)",
            "409": "its dependents form a cycle (the message names it), or an ID prefix "
                   "matches several containers (the message lists them)",
            "503": "the backend (dockerd) cannot be reached; retry"},
           query=DependentsQuery, database=False,
           description="Among several Docker hosts, name the host: `<host>/<name>` or "
           "`?host=`; the answer comes from that host's daemon. From one container list: "
           "containers sharing the target's network namespace (network_mode container:) and "
           "Compose depends_on labels, all descendants, each after everything it depends on; "
           "whether each is opted in and would be restarted after the target under the "
           "default `dependents: restart`.")
@requires("read")
def show_dependents(target: str) -> Response:
    query = parse_model(DependentsQuery, request.args.to_dict())
    return jsonify(DependentsOut.of(dependents_view(services(), target, query.host)).body())
