"""What a request's headers alone decide, before a byte of its body is read.

`autofix serve`'s worker (serve_worker.py) asks `body_limit` as soon as a header block has
arrived: a request without the credentials its route needs is refused (401/403, auth.py's
own check), `/slack/interactions` is refused when its timestamp is stale or its signature
headers are missing, and a Content-Length over what the route may take is a 413. Whatever
passes is read under AUTOFIX_BODY_TIMEOUT_S and only then handed to a thread, where the
app checks everything again: this is an early refusal, never a permission.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from flask import Flask
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RoutingException

from receiver.api.auth import Scope, check_scope, scope_of
from receiver.domain.errors import PayloadTooLarge
from receiver.engine.services import Services
from receiver.incidents.slack_interactions import MAX_BODY_BYTES as SLACK_MAX_BODY_BYTES
from receiver.incidents.slack_interactions import check_headers

__all__ = ["UNAUTHENTICATED_BODY_BYTES", "body_limit"]

# No route that anyone may call takes a body (the probes, an unknown path): whatever such a
# request sends is read only up to this, like a header block.
UNAUTHENTICATED_BODY_BYTES = 64 * 1024
# Routing results a caller's `scopes` keeps (targets with an id or a query vary; cleared
# when full, so a client sending new targets cannot grow it).
SCOPES_KEPT = 256

Scopes = dict[tuple[str, str], Scope | None]


def body_limit(app: Flask, method: str, target: str, headers: Headers,
               content_length: int | None, scopes: Scopes | None = None) -> int:
    """The most body bytes this request may send; AutofixError when its headers refuse it.
    `scopes`: the caller's memo of each (method, target)'s scope (the routes never change
    once the app is built; routing every request was a share of the webhook's CPU)."""
    services: Services = app.extensions["autofix"]
    settings = services.settings
    if scopes is None:
        scope = _scope(app, method, target)
    elif (method, target) in scopes:
        scope = scopes[(method, target)]
    else:
        if len(scopes) >= SCOPES_KEPT:
            scopes.clear()
        scope = scopes[(method, target)] = _scope(app, method, target)
    if scope is None or scope == "open":
        limit = UNAUTHENTICATED_BODY_BYTES
    elif scope == "slack":
        check_headers(settings, headers.get("X-Slack-Request-Timestamp"),
                      headers.get("X-Slack-Signature"), content_length)
        limit = SLACK_MAX_BODY_BYTES
    else:
        check_scope(scope, headers.get("Authorization", ""), settings)
        limit = settings.max_body_bytes
    if content_length is not None and content_length > limit:
        raise PayloadTooLarge(f"body of {content_length} bytes is over the limit of {limit}")
    return limit


def _scope(app: Flask, method: str, target: str) -> Scope | None:
    """The scope of the view the target routes to; None when it routes nowhere (the app
    answers 404/405 itself)."""
    try:
        path = urlsplit(target).path if "://" in target[:10] else target.partition("?")[0]
        endpoint, _ = app.url_map.bind("localhost").match(
            unquote(path.partition("#")[0]), method=method)
    except (HTTPException, RoutingException, ValueError):  # ValueError: `http://[x/`
        return None
    if endpoint == "static":
        return None
    return scope_of(app.view_functions.get(endpoint))
