"""A Slack stand-in for interactivity: builds the signed `payload=<json>` POST Slack sends
when someone clicks a Block Kit button (v0 signature over the raw body)."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

__all__ = ["signed_click"]


def signed_click(secret: str, user_id: str, action_id: str, value: str,
                 timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    payload = {"type": "block_actions", "user": {"id": user_id, "username": "u"},
               "actions": [{"action_id": action_id, "value": value, "type": "button"}],
               "response_url": "http://127.0.0.1:9/response", "trigger_id": "1.2.3"}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    assert signature is not None
    return body, {"Content-Type": "application/x-www-form-urlencoded",
                  "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}
