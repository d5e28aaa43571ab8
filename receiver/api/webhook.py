"""POST /webhook/alertmanager: record durably, answer, and let the workers act."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from flask import Blueprint, Response, jsonify, request

from receiver.api.auth import requires
from receiver.api.common import json_body_and_text, parse_model, services
from receiver.api.operations import operation
from receiver.api.schemas import WebhookAccepted, WebhookRecorded
from receiver.domain.payload import WebhookPayload
from receiver.incidents.filing import store_and_file
from receiver.playbooks.ingest import plan_occurrences
from receiver.store.ingest_store import store_notification
from receiver.store.lifecycle import IngestState

__all__ = ["blueprint"]

log = logging.getLogger("autofix.webhook")
blueprint = Blueprint("webhook", __name__)


@blueprint.post("/webhook/alertmanager")
@operation("Receive an Alertmanager notification",
           {"200": ("recorded", WebhookRecorded),
            "202": ("stored; its alerts are filed right after (more than "
                    "AUTOFIX_INGEST_DEFER_ALERTS)", WebhookAccepted)},
           body=WebhookPayload,
           description="Needs the webhook token. Alertmanager retries a 5xx; a 4xx is final.")
@requires("webhook")
def receive_alertmanager() -> tuple[Response, int]:
    svc = services()
    raw, raw_text = json_body_and_text(request, svc.settings.max_body_bytes)
    payload = parse_model(WebhookPayload, raw)
    now = svc.clock()
    started = time.monotonic()
    limit = svc.settings.ingest_defer_alerts
    if limit and len(payload.alerts) > limit:
        return _defer(payload, raw_text, now, started)
    config = svc.config.refreshed()
    occurrences = plan_occurrences(payload, config.playbooks, svc.renderer,
                                   svc.registry.light_actions())

    result = svc.database.transact("ingest", lambda session: store_and_file(
        svc, session, payload, raw_text, occurrences, now, config))
    _count_received(payload)
    if result.duplicates:
        svc.metrics.duplicates.inc(result.duplicates)
    if result.runs_queued:
        svc.wakeup.set()
    log.info("notification recorded", extra={
        "notification_id": result.notification_id, "group_key": payload.group_key[:200],
        "alerts": result.alerts, "new": result.new, "duplicates": result.duplicates,
        "resolved": result.resolved, "runs_queued": result.runs_queued,
        "db_ms": round((time.monotonic() - started) * 1000, 1)})
    return jsonify(WebhookRecorded.of_attributes(
        result, status="recorded", truncated_alerts=payload.truncated_alerts).body()), 200


def _count_received(payload: WebhookPayload) -> None:
    metrics = services().metrics
    metrics.notifications.labels(payload.status).inc()
    for status in ("firing", "resolved"):
        count = sum(1 for alert in payload.alerts if alert.status == status)
        if count:
            metrics.alerts.labels(status).inc(count)


def _defer(payload: WebhookPayload, raw_text: str, now: datetime,
           started: float) -> tuple[Response, int]:
    """Stored as received, answered 202; a worker's drainer files its alerts (filing.py)."""
    svc = services()
    notification_id = svc.database.transact("ingest", lambda session: store_notification(
        session, payload, raw_text, now, ingest_state=IngestState.PENDING))
    _count_received(payload)
    svc.metrics.deferred.labels("received").inc()
    svc.ingest_wakeup.set()
    log.info("notification stored, alerts to be filed", extra={
        "notification_id": notification_id, "group_key": payload.group_key[:200],
        "alerts": len(payload.alerts), "db_ms": round((time.monotonic() - started) * 1000, 1)})
    return jsonify(WebhookAccepted(
        status="accepted", notification_id=notification_id, alerts=len(payload.alerts),
        truncated_alerts=payload.truncated_alerts).body()), 202
