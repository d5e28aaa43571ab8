"""POST /slack/interactions: Approve/Deny clicks, verified by Slack's signature (not a
bearer token: Slack cannot send one)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..auth import requires
from ..errors import PayloadTooLarge
from ..slack_interactions import handle_interaction
from .common import services

__all__ = ["blueprint"]

blueprint = Blueprint("slack", __name__)
_MAX_BYTES = 64 * 1024


@blueprint.post("/slack/interactions")
@requires("slack")
def interactions() -> Response:
    body = request.stream.read(_MAX_BYTES + 1)
    if len(body) > _MAX_BYTES:
        raise PayloadTooLarge(f"body is over the limit of {_MAX_BYTES} bytes")
    text = handle_interaction(services(), body, request.headers.get("X-Slack-Request-Timestamp"),
                              request.headers.get("X-Slack-Signature"))
    # Slack ignores this body for button clicks; who decided reaches the incident's
    # thread through the outbox (an approval_decided notification).
    return jsonify({"text": text})
