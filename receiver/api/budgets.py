"""GET /api/v1/budgets: what the blast-radius limits have used (receiver/engine/blast_radius.py)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from receiver.api.auth import requires
from receiver.api.common import services
from receiver.api.operations import operation
from receiver.api.schemas import BudgetsOut
from receiver.engine.blast_radius import StormPolicy, report

__all__ = ["blueprint"]

blueprint = Blueprint("budgets", __name__, url_prefix="/api/v1")


@blueprint.get("/budgets")
@operation("Action budgets and the host storm guard: what is used",
           {"200": ("budgets", BudgetsOut)},
           description="Per playbook budget and scope key: the limit, the window, the "
           "mutating runs counted in it and when the oldest leaves it; the host storm "
           "guard's settings and count per host; the host storms in force.")
@requires("read")
def show_budgets() -> Response:
    svc = services()
    playbooks = svc.config.current.playbooks.playbooks
    with svc.database.session("api") as session:
        shown = BudgetsOut.of(report(session, playbooks, StormPolicy.of(svc.settings),
                                     svc.clock()))
    return jsonify(shown.body())
