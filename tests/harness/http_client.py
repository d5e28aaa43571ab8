"""JSON over HTTP to a receiver running as a real process (tests/harness/receiver.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.conftest import WEBHOOK_TOKEN


def post_json(url: str, body: Any, token: str = WEBHOOK_TOKEN) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a bearer-authenticated POST; an HTTP error is an answer too."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
