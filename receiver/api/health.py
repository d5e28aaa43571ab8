"""Unauthenticated probes and metrics: /healthz, /readyz, /metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ..auth import requires
from ..metrics import CONTENT_TYPE_LATEST
from .common import services

__all__ = ["blueprint"]

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
@requires("open")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
@requires("open")
def readyz() -> tuple[Response, int]:
    if services().database.ping():
        return jsonify({"status": "ready", "database": "ok"}), 200
    return jsonify({"status": "not_ready", "database": "unreachable"}), 503


@blueprint.get("/metrics")
@requires("open")
def metrics() -> Response:
    return Response(services().metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)
