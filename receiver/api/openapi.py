"""GET /api/v1/openapi.json, built from the same pydantic models the views parse with and
the response models of schemas.py: every route, every status, one error body shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel

from ..auth import SCOPES, Scope, requires
from ..payload import WebhookPayload
from . import schemas as s
from .common import MAX_ID
from .control import PauseBody, ResumeBody
from .incidents import IncidentDecisionBody
from .maintenance import MaintenanceBody, MaintenanceEndBody, MaintenanceFilter
from .playbooks import BreakerResetBody, ManualRunBody
from .queries import ActionFilter, AuditFilter, IncidentFilter, RunFilter
from .runs import RunDecisionBody

__all__ = ["ROUTES", "Route", "blueprint", "build_document"]

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


@dataclass(frozen=True)
class Route:
    path: str
    method: str
    summary: str
    ok: dict[str, tuple[str, type[BaseModel] | None]]
    errors: dict[str, str] = field(default_factory=dict)  # status -> text (ErrorBody)
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    database: bool = True  # may answer 503 while the database is down
    content_type: str = "application/json"
    description: str = ""
    scope: Scope = "read"  # must equal the view's @requires (a test compares them)


ROUTES: list[Route] = [
    Route("/webhook/alertmanager", "post", "Receive an Alertmanager notification",
          {"200": ("recorded", s.WebhookRecorded),
           "202": ("stored; its alerts are filed right after (more than "
                   "AUTOFIX_INGEST_DEFER_ALERTS)", s.WebhookAccepted)},
          body=WebhookPayload, scope="webhook",
          description="Needs the webhook token. Alertmanager retries a 5xx; a 4xx is final."),
    Route("/api/v1/incidents", "get", "List incidents", {"200": ("a page", s.IncidentPage)},
          query=IncidentFilter),
    Route("/api/v1/incidents/{incident_id}", "get", "One incident with its runs and actions",
          {"200": ("the incident", s.IncidentDetail)}, {"404": "no such incident"}),
    Route("/api/v1/incidents/{incident_id}/acknowledge", "post",
          "Acknowledge an incident (idempotent), recording who and why",
          {"200": ("the incident", s.IncidentOut)},
          {"404": "no such incident", "409": "resolved or closed already"},
          body=IncidentDecisionBody, scope="operator"),
    Route("/api/v1/incidents/{incident_id}/close", "post",
          "Close an incident by hand: no more automatic attempts",
          {"200": ("the incident", s.IncidentOut)},
          {"404": "no such incident", "409": "resolved or closed already"},
          body=IncidentDecisionBody, scope="operator"),
    Route("/api/v1/runs", "get", "List runs, newest first (status=awaiting_approval: the "
          "runs waiting for a human)", {"200": ("a page", s.RunPage)}, query=RunFilter),
    Route("/api/v1/runs/{run_id}/approve", "post",
          "Approve a run awaiting approval: it is queued and passes every guard again",
          {"200": ("the run", s.RunOut)},
          {"404": "no such run", "409": "not awaiting approval (decided, expired, ...)"},
          body=RunDecisionBody, scope="operator"),
    Route("/api/v1/runs/{run_id}/deny", "post",
          "Deny a run awaiting approval: it never acts, and its incident escalates",
          {"200": ("the run", s.RunOut)},
          {"404": "no such run", "409": "not awaiting approval (decided, expired, ...)"},
          body=RunDecisionBody, scope="operator"),
    Route("/api/v1/evidence/{evidence_id}/logs", "get",
          "The redacted log tail of one evidence capture", {"200": ("log text", None)},
          {"404": "no such evidence"}, content_type="text/plain"),
    Route("/api/v1/actions", "get", "List actions", {"200": ("a page", s.ActionPage)},
          query=ActionFilter),
    Route("/api/v1/audit", "get", "The audit log: who did what by hand, newest first",
          {"200": ("a page", s.AuditPage)}, query=AuditFilter),
    Route("/api/v1/playbooks", "get", "The loaded playbooks",
          {"200": ("playbooks", s.PlaybookList)}),
    Route("/api/v1/playbooks/{name}/run", "post", "Run a playbook by hand (same guards)",
          {"202": ("queued", s.RunQueued)},
          {"403": "target not allowed", "404": "unknown playbook or target",
           "409": "cooldown, breaker, paused (a dry run is not held by a pause), "
                  "host_storm or budget_exhausted; see Retry-After"}, body=ManualRunBody,
          scope="operator",
          description="`requested_by` is a deprecated alias of `actor`."),
    Route("/api/v1/breakers", "get", "Circuit breakers per target",
          {"200": ("breakers", s.BreakerList)}),
    Route("/api/v1/breakers/{target}/reset", "post", "Close a breaker, recording who and why",
          {"200": ("reset", s.BreakerResetOut)}, {"404": "no breaker for the target"},
          body=BreakerResetBody, scope="operator"),
    Route("/api/v1/pause", "get", "Whether automation is paused (the kill switch)",
          {"200": ("the switch", s.PauseOut)}),
    Route("/api/v1/pause", "post",
          "Pause automation: no step that leaves the process starts anywhere",
          {"200": ("paused", s.PauseOut)}, {"409": "paused already"}, body=PauseBody,
          scope="operator",
          description="Runs skip with reason `paused`; alerts are still recorded, "
          "notifications sent and dry runs go on. Audited; told to the notification "
          "channels."),
    Route("/api/v1/resume", "post", "Resume automation after a pause",
          {"200": ("resumed", s.PauseOut)}, {"409": "not paused"}, body=ResumeBody,
          scope="operator",
          description="Queues again, once, each alert run skipped `paused` during the pause "
          "whose incident is still open (audited `resume_requeue`)."),
    Route("/api/v1/maintenance", "get",
          "Maintenance windows in force or scheduled (ended=true: every window)",
          {"200": ("windows", s.MaintenanceList)}, query=MaintenanceFilter),
    Route("/api/v1/maintenance", "post",
          "Plan a maintenance window: matching runs skip with reason `maintenance`",
          {"201": ("the window", s.MaintenanceOut)},
          {"422": "invalid matchers, no matchers, matchers that hold everything, ends_at "
                  "not after starts_at or in the past, longer than 30 days, a timestamp "
                  "without offset, a missing actor or reason"},
          body=MaintenanceBody, scope="operator",
          description="While `starts_at <= now < ends_at`, a run (alert, retry or manual) "
          "whose alert labels plus `target` match every matcher skips with reason "
          "`maintenance`, not escalated; alerts are still recorded; dry runs and "
          "notify-only runs go on. Audited (`maintenance_start`)."),
    Route("/api/v1/maintenance/{maintenance_id}/end", "post",
          "End a maintenance window now (or cancel a scheduled one)",
          {"200": ("the window", s.MaintenanceOut)},
          {"404": "no such window", "409": "the window is over already",
           "422": "a field that fails validation"},
          body=MaintenanceEndBody, scope="operator",
          description="Audited (`maintenance_end`). Queues again, once, each alert run the "
          "window held whose incident is still open, unless another window holds it "
          "(audited `maintenance_requeue`); the same happens when ends_at passes."),
    Route("/api/v1/budgets", "get", "Action budgets and the host storm guard: what is used",
          {"200": ("budgets", s.BudgetsOut)},
          description="Per playbook budget and scope key: the limit, the window, the "
          "mutating runs counted in it and when the oldest leaves it; the host storm "
          "guard's settings and count per host; the host storms in force."),
    Route("/-/reload", "post", "Reload the playbooks file (a bad file keeps the old one)",
          {"200": ("reloaded", s.ReloadOut)}, {"400": "invalid playbooks file; see errors"},
          scope="operator"),
    Route("/slack/interactions", "post", "Approve/Deny clicks from Slack",
          {"200": ("decided", None)},
          {"401": "bad or missing signature, old timestamp, a replay, or Slack off",
           "400": "signed, but not an autofix approval click",
           "403": "the Slack user is not in AUTOFIX_SLACK_APPROVERS",
           "413": "body too large",
           "404": "no such run", "409": "the run does not await approval"},
          scope="slack", content_type="application/json",
          description="Form-encoded `payload=<json>` (Slack's block_actions), signed by "
          "Slack; not a bearer token."),
    Route("/healthz", "get", "The process is up", {"200": ("ok", s.Health)}, database=False,
          scope="open"),
    Route("/readyz", "get", "Every required backend (database, Docker, Swarm) is reachable",
          {"200": ("ready", s.Ready),
           "503": ("a backend is unreachable; `unreachable` names it", s.Ready)},
          database=False, scope="open"),
    Route("/metrics", "get", "Prometheus metrics", {"200": ("exposition", None)},
          database=False, content_type="text/plain", scope="open"),
    Route("/api/v1/openapi.json", "get", "This document", {"200": ("OpenAPI 3.1", None)},
          database=False),
]


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
             if part in ("{incident_id}", "{run_id}", "{evidence_id}", "{maintenance_id}")
             else {"type": "string", "minLength": 1}}
            for part in path.split("/") if part.startswith("{")]


def _error_statuses(route: Route) -> dict[str, str]:
    statuses: dict[str, str] = {}
    if route.scope != "open":
        statuses["401"] = _ERROR_TEXT["401"]
    if route.scope == "operator":
        statuses["403"] = _ERROR_TEXT["403_scope"]
    if route.query is not None or "{" in route.path or route.body is not None:
        statuses["400"] = _ERROR_TEXT["400"]
    if route.body is not None:
        for status in ("408", "413", "415"):
            statuses[status] = _ERROR_TEXT[status]
    if route.database:
        statuses["503"] = _ERROR_TEXT["503"]
    statuses.update(route.errors)
    return statuses


def _operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": route.summary, "operationId":
                                 f"{route.method}_{route.path}".replace("/", "_")
                                 .replace("{", "").replace("}", "").replace("-", "")}
    if route.description:
        operation["description"] = route.description
    responses: dict[str, Any] = {}
    for status, (text, model) in route.ok.items():
        schema = _ref(model, components) if model is not None else (
            {"type": "string"} if route.content_type.startswith("text/") else {"type": "object"})
        responses[status] = {"description": text,
                             "content": {route.content_type: {"schema": schema}}}
    error = _ref(s.ErrorBody, components)
    for status, text in _error_statuses(route).items():
        responses.setdefault(status, {"description": text,
                                      "content": {"application/json": {"schema": error}}})
    if "409" in responses:
        responses["409"]["headers"] = {"Retry-After": {
            "description": "Seconds until a retry may pass the guard.",
            "schema": {"type": "integer", "minimum": 1}}}
    operation["responses"] = dict(sorted(responses.items()))
    operation["security"] = _SECURITY[route.scope]
    operation["x-autofix-scope"] = route.scope
    parameters = _path_parameters(route.path)
    if route.query is not None:
        properties = route.query.model_json_schema(
            by_alias=True, ref_template=_REF_TEMPLATE)["properties"]
        for name in route.query.model_fields:
            parameters.append({"name": name, "in": "query", "required": False,
                               "schema": properties[name]})
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": _ref(route.body, components)}}}
    return operation


def build_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method] = _operation(route, components)
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
@requires("read")
def openapi_document() -> Response:
    return jsonify(build_document())
