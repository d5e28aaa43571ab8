"""POST /slack/interactions: Approve/Deny clicks, verified by Slack's signature (not a
bearer token: Slack cannot send one)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from receiver.api.auth import requires
from receiver.api.common import services
from receiver.api.operations import operation
from receiver.api.schemas import SlackReply
from receiver.domain.errors import PayloadTooLarge
from receiver.incidents.slack_interactions import MAX_BODY_BYTES, check_headers, handle_interaction

__all__ = ["blueprint"]

blueprint = Blueprint("slack", __name__)


@blueprint.post("/slack/interactions")
@operation("Approve/Deny clicks from Slack", {"200": ("decided", SlackReply)},
           {"401": "bad or missing signature, old timestamp, a replay, or Slack off",
            "400": "signed, but not an autofix approval click",
            "403": "the Slack user is not in AUTOFIX_SLACK_APPROVERS",
            "413": "body too large",
            "404": "no such run", "409": "the run does not await approval"},
           description="Form-encoded `payload=<json>` (Slack's block_actions), signed by "
           "Slack; not a bearer token.")
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
