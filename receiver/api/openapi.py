"""GET /api/v1/openapi.json, built from the app's registered routes: each view's scope
(auth.py), its `@operation` (operations.py), the pydantic models it parses with and the
response models of schemas.py: every route, every status, one error body shape."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import BaseModel

from receiver.api.auth import SCOPES, Scope, requires, scope_of
from receiver.api.common import MAX_ID
from receiver.api.operations import Operation, operation, operation_of
from receiver.api.schemas import ErrorBody

__all__ = ["UNDOCUMENTED_ENDPOINTS", "Route", "blueprint", "build_document", "routes"]

blueprint = Blueprint("openapi", __name__)

_REF_TEMPLATE = "#/components/schemas/{model}"
_ERROR_TEXT = {
    "400": "invalid request: malformed JSON, a field that fails validation, a bad id",
    "401": "missing or invalid token",
    "403": "target not allowed",
    "403_scope": "the read-only token cannot do this (operator scope)",
    "404": "not found",
    "408": "the body was not received in time",
    "409": "conflict",
    "413": "body too large",
    "415": "Content-Type is not JSON",
    "422": "a field that fails validation, or a window that cannot be (see message)",
    "503": "database unavailable; retry",
}


# Registered, but not API operations.
UNDOCUMENTED_ENDPOINTS = frozenset({"static"})


@dataclass(frozen=True)
class Route:
    """One documented operation: a url_map rule's path and method, its view's scope (what
    auth.py enforces) and the `@operation` declared on the view."""

    path: str
    method: str
    scope: Scope
    declared: Operation


def routes(app: Flask) -> list[Route]:
    """Every registered route but UNDOCUMENTED_ENDPOINTS, in registration order;
    RuntimeError for a view that declares no `@operation`."""
    found: list[Route] = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED_ENDPOINTS:
            continue
        view = app.view_functions[rule.endpoint]
        declared = operation_of(view)
        if declared is None:
            raise RuntimeError(f"view {rule.endpoint} ({rule.rule}) declares no @operation")
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append(Route(path, method.lower(), scope_of(view), declared))
    return found


# Which tokens each scope accepts (any one of them).
_SECURITY: dict[Scope, list[dict[str, list[str]]]] = {
    "open": [], "webhook": [{"webhook_token": []}],
    "read": [{"read_token": []}, {"operator_token": []}], "operator": [{"operator_token": []}],
    "slack": [{"slack_signature": []}],
}
if set(_SECURITY) != set(SCOPES):
    raise RuntimeError("every auth scope needs its OpenAPI security requirement")


def _ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    """A $ref to the model, whose schema (and its nested models', which pydantic puts in
    `$defs`) goes to components.schemas, so that every $ref resolves from the root."""
    if model.__name__ not in components:
        schema = model.model_json_schema(by_alias=True, ref_template=_REF_TEMPLATE)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    return {"$ref": _REF_TEMPLATE.format(model=model.__name__)}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [{"name": part.strip("{}"), "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}
             if part.endswith("_id}")  # parse_id's range
             else {"type": "string", "minLength": 1}}
            for part in path.split("/") if part.startswith("{")]


def _error_statuses(route: Route) -> dict[str, str]:
    declared = route.declared
    statuses: dict[str, str] = {}
    if route.scope != "open":
        statuses["401"] = _ERROR_TEXT["401"]
    if route.scope == "operator":
        statuses["403"] = _ERROR_TEXT["403_scope"]
    if declared.query is not None or "{" in route.path or declared.body is not None:
        statuses["400"] = _ERROR_TEXT["400"]
    if declared.body is not None:
        for status in ("408", "413", "415"):
            statuses[status] = _ERROR_TEXT[status]
    if declared.database:
        statuses["503"] = _ERROR_TEXT["503"]
    statuses.update(declared.errors)
    return statuses


def _described(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    declared = route.declared
    described: dict[str, Any] = {"summary": declared.summary, "operationId":
                                 f"{route.method}_{route.path}".replace("/", "_")
                                 .replace("{", "").replace("}", "").replace("-", "")}
    if declared.description:
        described["description"] = declared.description
    responses: dict[str, Any] = {}
    for status, (text, model) in declared.ok.items():
        schema = _ref(model, components) if model is not None else (
            {"type": "string"} if declared.content_type.startswith("text/")
            else {"type": "object"})
        responses[status] = {"description": text,
                             "content": {declared.content_type: {"schema": schema}}}
    error = _ref(ErrorBody, components)
    for status, text in _error_statuses(route).items():
        responses.setdefault(status, {"description": text,
                                      "content": {"application/json": {"schema": error}}})
    if "409" in responses:
        responses["409"]["headers"] = {"Retry-After": {
            "description": "Seconds until a retry may pass the guard.",
            "schema": {"type": "integer", "minimum": 1}}}
    described["responses"] = dict(sorted(responses.items()))
    described["security"] = _SECURITY[route.scope]
    described["x-autofix-scope"] = route.scope
    parameters = _path_parameters(route.path)
    if declared.query is not None:
        properties = declared.query.model_json_schema(
            by_alias=True, ref_template=_REF_TEMPLATE)["properties"]
        for name in declared.query.model_fields:
            parameters.append({"name": name, "in": "query", "required": False,
                               "schema": properties[name]})
    if parameters:
        described["parameters"] = parameters
    if declared.body is not None:
        described["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": _ref(declared.body, components)}}}
    return described


def build_document(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {}
    for route in routes(app):
        paths.setdefault(route.path, {})[route.method] = _described(route, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "autofix receiver", "version": "1", "description":
                 "Every route but /healthz, /readyz and /metrics needs a bearer token; "
                 "`x-autofix-scope` names the scope each operation needs (read, operator, "
                 "webhook). Every error answers {\"error\": code, \"message\": text, "
                 "...details}."},
        "components": {"schemas": dict(sorted(components.items())), "securitySchemes": {
            "webhook_token": {"type": "http", "scheme": "bearer",
                              "description": "AUTOFIX_WEBHOOK_TOKEN: the webhook only."},
            "read_token": {"type": "http", "scheme": "bearer",
                           "description": "AUTOFIX_READ_TOKEN: lists and reads only."},
            "slack_signature": {"type": "apiKey", "in": "header", "name": "X-Slack-Signature",
                                "description": "Slack's v0 HMAC of the raw body with "
                                "AUTOFIX_SLACK_SIGNING_SECRET, with X-Slack-Request-Timestamp "
                                "(5 minutes)."},
            "operator_token": {"type": "http", "scheme": "bearer",
                               "description": "AUTOFIX_API_TOKEN: reads and every change "
                               "(runs, approvals, breaker resets, pause, maintenance, reload)."}}},
        "paths": paths,
    }


@blueprint.get("/api/v1/openapi.json")
@operation("This document", {"200": ("OpenAPI 3.1", None)}, database=False)
@requires("read")
def openapi_document() -> Response:
    return jsonify(build_document(current_app))
