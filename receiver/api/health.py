"""Unauthenticated probes and metrics: /healthz, /readyz, /metrics."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from ..auth import requires
from ..metrics import CONTENT_TYPE_LATEST
from ..readiness import BackendStatus
from .common import services

__all__ = ["blueprint"]

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
@requires("open")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def _readiness_body(statuses: list[BackendStatus]) -> dict[str, Any]:
    down = [status.name for status in statuses if not status.up]
    database = next((s for s in statuses if s.name == "database"), None)
    return {
        "status": "not_ready" if down else "ready",
        "database": "ok" if database is not None and database.up else "unreachable",
        "unreachable": down,
        "backends": {status.name: {"status": "ok" if status.up else "unreachable",
                                   "error": status.error} for status in statuses},
    }


@blueprint.get("/readyz")
@requires("open")
def readyz() -> tuple[Response, int]:
    """503 while any required backend is unreachable; the body names each one and why."""
    body = _readiness_body(services().readiness.check())
    return jsonify(body), 503 if body["unreachable"] else 200


@blueprint.get("/metrics")
@requires("open")
def metrics() -> Response:
    svc = services()
    svc.readiness.check(wait=False)  # autofix_backend_up: refreshed, never waited for
    return Response(svc.metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)
