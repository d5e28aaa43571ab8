"""Unauthenticated probes and metrics: /healthz, /readyz, /metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from receiver.api.auth import requires
from receiver.api.common import services
from receiver.api.operations import operation
from receiver.api.schemas import Health, Ready
from receiver.telemetry.metrics import CONTENT_TYPE_LATEST

__all__ = ["blueprint"]

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
@operation("The process is up", {"200": ("ok", Health)}, database=False)
@requires("open")
def healthz() -> Response:
    return jsonify(Health(status="ok").body())


@blueprint.get("/readyz")
@operation("Every required backend (database, Docker, Swarm) is reachable",
           {"200": ("ready", Ready),
            "503": ("a backend is unreachable; `unreachable` names it", Ready)},
           database=False)
@requires("open")
def readyz() -> tuple[Response, int]:
    """503 while any required backend is unreachable; the body names each one and why."""
    ready = Ready.of(services().readiness.check())
    return jsonify(ready.body()), 503 if ready.status != "ready" else 200


@blueprint.get("/metrics")
@operation("Prometheus metrics", {"200": ("exposition", None)}, database=False,
           content_type="text/plain")
@requires("open")
def metrics() -> Response:
    svc = services()
    svc.readiness.check(wait=False)  # autofix_backend_up: refreshed, never waited for
    return Response(svc.metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)
