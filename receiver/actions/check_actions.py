"""Actions that verify or reach out: wait_healthy, promql_check, http, notify, escalate."""

from __future__ import annotations

import time
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator
from urllib3.util import parse_url

from receiver.actions.registry import ActionContext, ActionFailed
from receiver.domain.safe_url import AllowedHost, UnsafeUrl, is_allowed, parse_safe_url
from receiver.executor import ExecutorError, TargetNotFound
from receiver.playbooks.config import PlaybookFile
from receiver.telemetry.prometheus_api import (
    PrometheusQueryError,
    PrometheusUnreachable,
    instant_query,
)

__all__ = ["EscalateParams", "HttpParams", "NotifyParams", "PromqlCheckParams",
           "WaitHealthyParams", "call_http", "check_promql", "escalate_incident",
           "send_notification", "static_http_problems", "wait_healthy"]

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
    url: str = Field(description="http(s) URL in canonical form (lower-case host, no "
                     "userinfo) on a host and port in AUTOFIX_HTTP_ALLOWED_HOSTS.")
    body: Any = Field(None, description="JSON (object or list) or text body.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers.")
    expect_status: int = Field(200, ge=100, le=599, description="Status that means success.")
    timeout_s: float = Field(10, gt=0, le=300, description="Request timeout.")

    @field_validator("url")
    @classmethod
    def _canonical(cls, value: str) -> str:
        # Syntax only (the allowlist is a setting): a static URL fails `check-config` with
        # its line; a templated one fails the step with invalid_params once rendered.
        if "{{" in value or "{%" in value:
            return value
        parse_safe_url(value)
        return value


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
    last_reason, last_error = "condition_not_met", ""
    while True:
        remaining = deadline - time.monotonic()
        try:
            found = instant_query(ctx.settings.prometheus_url, params.expr,
                                  max(0.5, min(5.0, remaining))).nonempty
            if found == (params.expect == "nonempty"):
                return f"{params.expr} is {params.expect}"
            last_reason, last_error = "condition_not_met", f"{params.expr} not {params.expect}"
        except PrometheusQueryError as exc:
            last_reason, last_error = "query_error", str(exc)
        except PrometheusUnreachable as exc:
            last_reason, last_error = "prometheus_unreachable", str(exc)
        if time.monotonic() + params.interval_s > deadline:
            raise ActionFailed(last_reason, f"after {params.timeout_s}s: {last_error}"[:1000])
        time.sleep(params.interval_s)


def call_http(ctx: ActionContext, params: HttpParams) -> str | None:
    """Call an HTTP endpoint on an allowed host and check the status."""
    try:
        url = parse_safe_url(params.url)
    except UnsafeUrl as exc:
        raise ActionFailed("invalid_url", f"{exc}") from None
    if not is_allowed(url, ctx.settings.allowed_http_hosts()):
        raise ActionFailed("host_not_allowed", f"{url.netloc} (port {url.port}) is not in "
                           "AUTOFIX_HTTP_ALLOWED_HOSTS")
    # Belt and braces: the client's own parser must read the rebuilt URL the same way.
    sent = parse_url(url.url)
    if (sent.host or "").strip("[]") != url.host or (sent.port or url.port) != url.port:
        raise ActionFailed("invalid_url", f"the HTTP client reads {url.url!r} differently")
    body: dict[str, Any] = {}
    if isinstance(params.body, dict | list):
        body["json"] = params.body
    elif params.body is not None:
        body["data"] = str(params.body)
    try:
        # No redirects: a redirect could lead off the allowlist.
        response = requests.request(params.method, url.url, headers=params.headers,
                                    timeout=params.timeout_s, allow_redirects=False, **body)
    except requests.RequestException as exc:
        raise ActionFailed("http_error", f"{params.method} {url.url}: {exc}") from exc
    if response.status_code != params.expect_status:
        raise ActionFailed("unexpected_status", f"{params.method} {url.url}: "
                           f"{response.status_code}, expected {params.expect_status}")
    return f"{response.status_code}"


def static_http_problems(playbooks: PlaybookFile, allowed: list[AllowedHost]) -> list[str]:
    """`http` steps whose URL is static and outside the allowlist (host and port)."""
    problems = []
    for playbook in playbooks.playbooks:
        for index, step in enumerate(playbook.actions):
            url = step.params.get("url") if step.action == "http" else None
            if not isinstance(url, str) or "{{" in url or "{%" in url:
                continue
            try:
                parsed = parse_safe_url(url)
            except UnsafeUrl as exc:
                problems.append(f"playbook {playbook.name}, action {index}: {exc}")
                continue
            if not is_allowed(parsed, allowed):
                problems.append(f"playbook {playbook.name}, action {index}: {parsed.netloc} "
                                f"(port {parsed.port}) is not in AUTOFIX_HTTP_ALLOWED_HOSTS")
    return problems


def send_notification(ctx: ActionContext, params: NotifyParams) -> str | None:
    """Send a notification about the incident to every configured channel."""
    ctx.notify("note", params.message)
    return None


def escalate_incident(ctx: ActionContext, params: EscalateParams) -> str | None:
    """Mark the incident escalated: a human must look."""
    ctx.escalate(params.reason)
    return params.reason
