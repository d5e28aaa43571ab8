"""GET /api/v1/openapi.json, built from the same pydantic models the views parse with."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel

from ..payload import WebhookPayload
from .common import MAX_ID
from .incidents import IncidentDecisionBody
from .playbooks import BreakerResetBody, ManualRunBody
from .queries import ActionFilter, IncidentFilter

__all__ = ["ROUTES", "blueprint", "build_document"]

blueprint = Blueprint("openapi", __name__)

_ERRORS = {"400": "invalid request", "401": "missing or invalid token"}
# (path, method, summary, auth, query model, body model, extra responses)
ROUTES: list[tuple[str, str, str, str | None, type[BaseModel] | None, type[BaseModel] | None,
                   dict[str, str]]] = [
    ("/webhook/alertmanager", "post", "Receive an Alertmanager notification", "webhook",
     None, WebhookPayload, {"200": "recorded", "413": "body too large",
                            "415": "not JSON", "503": "database unavailable; retry"}),
    ("/api/v1/incidents", "get", "List incidents", "api", IncidentFilter, None,
     {"200": "a page of incidents"}),
    ("/api/v1/incidents/{incident_id}", "get", "One incident with its runs and actions", "api",
     None, None, {"200": "the incident", "404": "no such incident"}),
    ("/api/v1/incidents/{incident_id}/acknowledge", "post",
     "Acknowledge an incident (idempotent), recording who and why", "api", None,
     IncidentDecisionBody, {"200": "the incident", "404": "no such incident",
                            "409": "resolved or closed already"}),
    ("/api/v1/incidents/{incident_id}/close", "post",
     "Close an incident by hand: no more automatic attempts", "api", None,
     IncidentDecisionBody, {"200": "the incident", "404": "no such incident",
                            "409": "resolved or closed already"}),
    ("/api/v1/actions", "get", "List actions", "api", ActionFilter, None,
     {"200": "a page of actions"}),
    ("/api/v1/playbooks", "get", "The loaded playbooks", "api", None, None,
     {"200": "playbooks"}),
    ("/api/v1/playbooks/{name}/run", "post", "Run a playbook by hand (same guards)", "api",
     None, ManualRunBody, {"202": "queued", "403": "target not allowed",
                           "404": "unknown playbook or target",
                           "409": "cooldown or breaker; see Retry-After"}),
    ("/api/v1/breakers", "get", "Circuit breakers per target", "api", None, None,
     {"200": "breakers"}),
    ("/api/v1/breakers/{target}/reset", "post", "Close a breaker, recording who and why", "api",
     None, BreakerResetBody, {"200": "reset", "404": "no breaker for the target"}),
    ("/-/reload", "post", "Reload the playbooks file (a bad file keeps the old one)", "api",
     None, None, {"200": "reloaded"}),
    ("/healthz", "get", "The process is up", None, None, None, {"200": "ok"}),
    ("/readyz", "get", "The database is reachable", None, None, None,
     {"200": "ready", "503": "database unreachable"}),
    ("/metrics", "get", "Prometheus metrics", None, None, None, {"200": "exposition"}),
    ("/api/v1/openapi.json", "get", "This document", "api", None, None,
     {"200": "OpenAPI 3.1"}),
]


_REF_TEMPLATE = "#/components/schemas/{model}"


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON schema with its nested models moved to components.schemas, so
    that every $ref resolves from the document's root (a `$defs` left inside a request
    body dangles: `#/$defs/...` points at the document, not at the body)."""
    schema = model.model_json_schema(by_alias=True, ref_template=_REF_TEMPLATE)
    components.update(schema.pop("$defs", {}))
    return schema


def _operation(summary: str, auth: str | None, query: type[BaseModel] | None,
               body: type[BaseModel] | None, responses: dict[str, str],
               path: str, components: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {}}
    all_responses = {**(_ERRORS if auth else {}), **responses}
    for code, text in sorted(all_responses.items()):
        operation["responses"][code] = {"description": text}
    if auth:
        operation["security"] = [{f"{auth}_token": []}]
    else:
        operation["security"] = []
    parameters = [{"name": part.strip("{}"), "in": "path", "required": True,
                   "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}
                   if part == "{incident_id}" else {"type": "string"}}
                  for part in path.split("/") if part.startswith("{")]
    if query is not None:
        properties = _schema(query, components)["properties"]
        for name in query.model_fields:
            parameters.append({"name": name, "in": "query", "required": False,
                               "schema": properties[name]})
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": _schema(body, components)}}}
    return operation


def build_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {}
    for path, method, summary, auth, query, body, responses in ROUTES:
        paths.setdefault(path, {})[method] = _operation(summary, auth, query, body, responses,
                                                        path, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "autofix receiver", "version": "1"},
        "components": {"schemas": components, "securitySchemes": {
            "webhook_token": {"type": "http", "scheme": "bearer"},
            "api_token": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }


@blueprint.get("/api/v1/openapi.json")
def openapi_document() -> Response:
    return jsonify(build_document())
