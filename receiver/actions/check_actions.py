"""Actions that verify or reach out: wait_healthy, promql_check, http, notify, escalate."""

from __future__ import annotations

import time
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field

from ..executor import ExecutorError, TargetNotFound
from .registry import ActionContext, ActionFailed

__all__ = ["EscalateParams", "HttpParams", "NotifyParams", "PromqlCheckParams",
           "WaitHealthyParams", "call_http", "check_promql", "escalate_incident",
           "send_notification", "wait_healthy"]

_POLL_S = 0.5


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WaitHealthyParams(_Params):
    timeout_s: float = Field(60, gt=0, le=3600, description="Give up (and fail) after this.")
    running_for_s: float = Field(
        5, ge=0, le=600, description="Without a HEALTHCHECK: running this long counts as healthy.")


class PromqlCheckParams(_Params):
    expr: str = Field(min_length=1, description="PromQL; holds when it returns any series.")
    expect: Literal["nonempty", "empty"] = Field(
        "nonempty", description="empty: holds when the expression returns nothing.")
    timeout_s: float = Field(60, gt=0, le=3600, description="Give up (and fail) after this.")
    interval_s: float = Field(2, gt=0, le=60, description="Time between queries.")


class HttpParams(_Params):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = Field(
        "GET", description="HTTP method.")
    url: str = Field(description="http(s) URL on a host in AUTOFIX_HTTP_ALLOWED_HOSTS.")
    body: Any = Field(None, description="JSON (object or list) or text body.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers.")
    expect_status: int = Field(200, ge=100, le=599, description="Status that means success.")
    timeout_s: float = Field(10, gt=0, le=300, description="Request timeout.")


class NotifyParams(_Params):
    message: str = Field("", description="Extra text for the notification (templated).")


class EscalateParams(_Params):
    reason: str = Field("escalated by playbook", description="Why a human is needed.")


def wait_healthy(ctx: ActionContext, params: WaitHealthyParams) -> str | None:
    """Wait for Docker's health status, or for the container to keep running N seconds."""
    deadline = time.monotonic() + params.timeout_s
    last = "unknown"
    while True:
        try:
            state = ctx.executor.inspect(ctx.target)
            if state.health is not None:
                last = f"health={state.health}"
                if state.health == "healthy" and state.running:
                    return last
            elif state.running and state.started_at is not None:
                up_s = time.time() - state.started_at.timestamp()
                last = f"running for {up_s:.1f}s"
                if up_s >= params.running_for_s:
                    return last
            else:
                last = f"status={state.status}"
        except TargetNotFound as exc:  # removed meanwhile: waiting cannot help
            raise ActionFailed("target_not_found", str(exc)) from exc
        except ExecutorError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise ActionFailed("unhealthy_timeout",
                               f"{ctx.target} not healthy after {params.timeout_s}s ({last})")
        time.sleep(_POLL_S)


def check_promql(ctx: ActionContext, params: PromqlCheckParams) -> str | None:
    """Query Prometheus until the expression holds, or time out."""
    deadline = time.monotonic() + params.timeout_s
    url = ctx.settings.prometheus_url.rstrip("/") + "/api/v1/query"
    last_reason, last_error = "condition_not_met", ""
    while True:
        remaining = deadline - time.monotonic()
        try:
            response = requests.get(url, params={"query": params.expr},
                                    timeout=max(0.5, min(5.0, remaining)))
            body = response.json()
            if response.status_code != 200 or body.get("status") != "success":
                last_reason, last_error = "query_error", str(body.get("error", response.text))
            else:
                found = len(body["data"]["result"]) > 0
                if found == (params.expect == "nonempty"):
                    return f"{params.expr} is {params.expect}"
                last_reason, last_error = "condition_not_met", f"{params.expr} not {params.expect}"
        except (requests.RequestException, ValueError, KeyError) as exc:
            last_reason, last_error = "prometheus_unreachable", str(exc)
        if time.monotonic() + params.interval_s > deadline:
            raise ActionFailed(last_reason, f"after {params.timeout_s}s: {last_error}"[:1000])
        time.sleep(params.interval_s)


def call_http(ctx: ActionContext, params: HttpParams) -> str | None:
    """Call an HTTP endpoint on an allowed host and check the status."""
    parts = urlsplit(params.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ActionFailed("invalid_url", f"not an http(s) URL: {params.url!r}")
    if parts.hostname not in ctx.settings.http_allowed_hosts:
        raise ActionFailed("host_not_allowed",
                           f"{parts.hostname} is not in AUTOFIX_HTTP_ALLOWED_HOSTS")
    body: dict[str, Any] = {}
    if isinstance(params.body, dict | list):
        body["json"] = params.body
    elif params.body is not None:
        body["data"] = str(params.body)
    try:
        # No redirects: a redirect could lead off the allowlist.
        response = requests.request(params.method, params.url, headers=params.headers,
                                    timeout=params.timeout_s, allow_redirects=False, **body)
    except requests.RequestException as exc:
        raise ActionFailed("http_error", f"{params.method} {params.url}: {exc}") from exc
    if response.status_code != params.expect_status:
        raise ActionFailed("unexpected_status", f"{params.method} {params.url}: "
                           f"{response.status_code}, expected {params.expect_status}")
    return f"{response.status_code}"


def send_notification(ctx: ActionContext, params: NotifyParams) -> str | None:
    """Send a notification about the incident to every configured channel."""
    ctx.notify("note", params.message)
    return None


def escalate_incident(ctx: ActionContext, params: EscalateParams) -> str | None:
    """Mark the incident escalated: a human must look."""
    ctx.escalate(params.reason)
    return params.reason
