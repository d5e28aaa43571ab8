"""POST /webhook/alertmanager: record durably, answer, and let the workers act."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..auth import requires
from ..db.ingest_store import record_notification
from ..db.models import utcnow
from ..ingest import plan_occurrences
from ..notify import Event
from ..notify.groups import record_group
from ..payload import WebhookPayload
from .common import json_body, parse_model, services

__all__ = ["blueprint"]

log = logging.getLogger("autofix.webhook")
blueprint = Blueprint("webhook", __name__)


@blueprint.post("/webhook/alertmanager")
@requires("webhook")
def receive_alertmanager() -> tuple[Response, int]:
    svc = services()
    raw: Any = json_body(request, svc.settings.max_body_bytes)
    payload = parse_model(WebhookPayload, raw)
    config = svc.config.refreshed()
    occurrences = plan_occurrences(payload, config.playbooks, svc.renderer,
                                   svc.registry.light_actions())
    now = utcnow()
    started = time.monotonic()
    with svc.database.session("ingest") as session:
        result = record_notification(session, payload, raw, occurrences, now,
                                     config_version=config.version_id)
        for incident_id in result.resolved_ids:
            # Only an incident with a thread of its own gets its own "resolved" message;
            # the others are reported in their group's message.
            playbook = config.playbooks.by_name(result.resolved_playbooks.get(incident_id)
                                                or "")
            if playbook is not None and not playbook.notify_only:
                svc.notifier.emit(session, Event("resolved", incident_id))
        group_id = record_group(session, payload, occurrences, config.playbooks,
                                svc.renderer, now)
        if group_id is not None:
            svc.notifier.emit_group(session, group_id)
    svc.metrics.notifications.labels(payload.status).inc()
    for status in ("firing", "resolved"):
        count = sum(1 for alert in payload.alerts if alert.status == status)
        if count:
            svc.metrics.alerts.labels(status).inc(count)
    if result.duplicates:
        svc.metrics.duplicates.inc(result.duplicates)
    if result.runs_queued:
        svc.wakeup.set()
    log.info("notification recorded", extra={
        "notification_id": result.notification_id, "group_key": payload.group_key[:200],
        "alerts": result.alerts, "new": result.new, "duplicates": result.duplicates,
        "resolved": result.resolved, "runs_queued": result.runs_queued,
        "db_ms": round((time.monotonic() - started) * 1000, 1)})
    return jsonify({
        "status": "recorded", "notification_id": result.notification_id,
        "alerts": result.alerts, "new": result.new, "duplicates": result.duplicates,
        "resolved": result.resolved, "runs_queued": result.runs_queued,
        "truncated_alerts": payload.truncated_alerts,
    }), 200
