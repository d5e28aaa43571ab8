"""Credentials: bearer tokens or basic auth, compared in constant time, checked for every
route in one before_request hook (`install_auth`) rather than by each view."""

from __future__ import annotations

import base64
import binascii
import hmac

from flask import Flask, Request, request

from .errors import Unauthorized
from .settings import Settings

__all__ = ["OPEN_ROUTES", "install_auth", "require_token"]

# The only routes served without a token: probes and the Prometheus scrape.
OPEN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
WEBHOOK_PREFIX = "/webhook/"


def _presented_secret(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]  # the password carries the token
    return None


def require_token(request: Request, expected: str | None, realm: str) -> None:
    """Raise Unauthorized unless the request carries `expected`. None means auth is off."""
    if expected is None:
        return
    presented = _presented_secret(request)
    if presented is None or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized(f"missing or invalid credentials for {realm}",
                           hint="send 'Authorization: Bearer <token>'")


def install_auth(app: Flask, settings: Settings) -> None:
    """Every route needs a token unless it is in OPEN_ROUTES: the webhook token under
    /webhook/, the API token everywhere else. A request that matched no route is left to
    routing, so that it gets its 404 or 405."""

    @app.before_request
    def _authenticate() -> None:
        rule = request.url_rule
        if rule is None or rule.rule in OPEN_ROUTES or rule.endpoint == "static":
            return
        if rule.rule.startswith(WEBHOOK_PREFIX):
            require_token(request, settings.secret("webhook_token"), "the webhook")
        else:
            require_token(request, settings.secret("api_token"), "the API")
