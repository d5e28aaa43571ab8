"""POST /slack/interactions: Approve/Deny clicks, verified by Slack's signature (not a
bearer token: Slack cannot send one)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..auth import requires
from ..errors import PayloadTooLarge
from ..slack_interactions import MAX_BODY_BYTES, check_headers, handle_interaction
from .common import services
from .schemas import SlackReply

__all__ = ["blueprint"]

blueprint = Blueprint("slack", __name__)


@blueprint.post("/slack/interactions")
@requires("slack")
def interactions() -> Response:
    timestamp = request.headers.get("X-Slack-Request-Timestamp")
    signature = request.headers.get("X-Slack-Signature")
    # `autofix serve` checked these before reading the body (api/gate.py); again here for
    # any other server.
    check_headers(services().settings, timestamp, signature, request.content_length)
    body = request.stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body is over the limit of {MAX_BODY_BYTES} bytes")
    text = handle_interaction(services(), body, timestamp, signature)
    return jsonify(SlackReply(text=text).body())
