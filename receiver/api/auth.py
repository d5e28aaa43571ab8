"""Credentials: bearer tokens or basic auth, compared in constant time, checked for every
route in one before_request hook (`install_auth`) rather than by each view.

Each view declares its scope with `@requires(...)`:

- `open`: probes and the Prometheus scrape, no token;
- `webhook`: the webhook token (AUTOFIX_WEBHOOK_TOKEN) and nothing else;
- `read`: lists and reads; the read-only token (AUTOFIX_READ_TOKEN) or the operator token;
- `operator`: everything that changes something; the operator token (AUTOFIX_API_TOKEN);
- `slack`: Slack's request signature, verified by the view (slack_interactions.py).

A view that declares nothing needs the operator token: a new route is closed by default.
The read-only token on an operator route is 403 (known, not allowed); any other token 401.
The decision needs the Authorization header and nothing else (`check_scope`), so the serve
worker makes it before a body is read (api/gate.py), and this hook makes it again.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from flask import Flask, request

from receiver.config.settings import Settings
from receiver.domain.errors import Forbidden, Unauthorized

__all__ = ["OPEN_ROUTES", "SCOPES", "Scope", "check_scope", "install_auth", "require_token",
           "requires", "scope_of"]

Scope = Literal["open", "webhook", "read", "operator", "slack"]
SCOPES: tuple[Scope, ...] = ("open", "webhook", "read", "operator", "slack")
# The only routes served without a token: probes and the Prometheus scrape.
OPEN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
_SCOPE_ATTRIBUTE = "autofix_scope"
F = TypeVar("F", bound=Callable[..., Any])


def requires(scope: Scope) -> Callable[[F], F]:
    """Declare the scope a view needs; put it below the route decorator."""
    def mark(view: F) -> F:
        setattr(view, _SCOPE_ATTRIBUTE, scope)
        return view
    return mark


def scope_of(view: Callable[..., Any] | None) -> Scope:
    found: Scope = getattr(view, _SCOPE_ATTRIBUTE, "operator")
    return found


def _presented_secret(header: str) -> str | None:
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


def _matches(presented: str | None, expected: str | None) -> bool:
    return (presented is not None and expected is not None
            and hmac.compare_digest(presented.encode(), expected.encode()))


def _unauthorized(realm: str) -> Unauthorized:
    return Unauthorized(f"missing or invalid credentials for {realm}",
                        hint="send 'Authorization: Bearer <token>'")


def require_token(authorization: str, expected: str | None, realm: str) -> None:
    """Raise Unauthorized unless the Authorization header carries `expected`. None means
    auth is off."""
    if expected is None:
        return
    if not _matches(_presented_secret(authorization), expected):
        raise _unauthorized(realm)


def _require_api(authorization: str, settings: Settings, scope: Scope) -> None:
    operator = settings.secret("api_token")
    if operator is None:
        return  # AUTOFIX_ALLOW_UNAUTHENTICATED: the API is open
    presented = _presented_secret(authorization)
    if _matches(presented, operator):
        return
    if _matches(presented, settings.secret("read_token")):
        if scope == "read":
            return
        raise Forbidden("the read-only token cannot do this; it needs the operator token",
                        reason="scope", scope=scope)
    raise _unauthorized("the API")


def install_auth(app: Flask, settings: Settings) -> None:
    """Check every request against its view's declared scope. A request that matched no
    route is left to routing, so that it gets its 404 or 405."""

    @app.before_request
    def _authenticate() -> None:
        rule = request.url_rule
        if rule is None or rule.endpoint == "static":
            return
        scope = scope_of(app.view_functions.get(rule.endpoint))
        check_scope(scope, request.headers.get("Authorization", ""), settings)


def check_scope(scope: Scope, authorization: str, settings: Settings) -> None:
    """Raise Unauthorized or Forbidden unless the Authorization header opens `scope`.
    `open` and `slack` pass: Slack's signature is the view's to verify."""
    if scope in ("open", "slack"):
        return
    if scope == "webhook":
        require_token(authorization, settings.secret("webhook_token"), "the webhook")
    else:
        _require_api(authorization, settings, scope)
