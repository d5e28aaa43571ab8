"""Pure mapping from a webhook payload to occurrences and the playbook each one triggers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.domain.payload import ZERO_TIME, AlertPayload, WebhookPayload
from receiver.playbooks.config import Playbook, PlaybookFile
from receiver.playbooks.templating import TemplateRenderer, TemplateRenderError

__all__ = ["MAX_TARGET", "Occurrence", "plan_occurrences", "resolve_host", "resolve_target",
           "template_context"]

# A target must fit runs.target (String(255)) whole; is_valid_container_name says 255 too.
MAX_TARGET = 255


@dataclass(frozen=True)
class Occurrence:
    """One alert occurrence as this notification reports it."""

    fingerprint: str
    starts_at: datetime
    ends_at: datetime | None
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    playbook: str | None  # the playbook this status triggers, if any
    target: str | None  # rendered target, or None when the template failed
    target_error: str | None
    lane: str = "act"  # "light" when every step only notifies or checks
    priority: int = 0
    notify_only: bool = False  # no run: the group's message reports it


def template_context(labels: dict[str, str], annotations: dict[str, str],
                     status: str = "firing") -> dict[str, Any]:
    return {"labels": dict(labels), "annotations": dict(annotations), "status": status}


def resolve_target(template: str, labels: dict[str, str], annotations: dict[str, str],
                   renderer: TemplateRenderer) -> tuple[str | None, str | None]:
    """(target, None) or (None, why it could not be rendered)."""
    try:
        target = renderer.render(template, template_context(labels, annotations)).strip()
    except TemplateRenderError as exc:
        return None, str(exc)
    if not target:
        return None, f"target template {template!r} rendered empty"
    if len(target) > MAX_TARGET:
        # Never cut it down to something that might name another container: the run
        # skips with invalid_target instead.
        return None, (f"target {target[:60]!r}... is {len(target)} characters; a container "
                      f"name has at most {MAX_TARGET}")
    return target, None


def resolve_host(template: str, labels: dict[str, str], annotations: dict[str, str],
                 renderer: TemplateRenderer) -> str:
    """The Docker host an alert names (the playbook's `host`); empty when the template
    cannot be rendered for it (a label it lacks): the guards decide what that means."""
    try:
        return renderer.render(template, template_context(labels, annotations)).strip()
    except TemplateRenderError:
        return ""


def plan_occurrences(payload: WebhookPayload, playbooks: PlaybookFile,
                     renderer: TemplateRenderer,
                     light_actions: frozenset[str] = frozenset()) -> list[Occurrence]:
    """One Occurrence per distinct (fingerprint, startsAt, status) in the payload.

    `light_actions` are the actions that change no target: a playbook made only of them
    runs in the light lane."""
    seen: set[tuple[str, datetime, str]] = set()
    planned: list[Occurrence] = []
    match = playbooks.matcher()
    for alert in payload.alerts:
        key = (alert.fingerprint, alert.starts_at, alert.status)
        if key in seen:
            continue
        seen.add(key)
        planned.append(_plan_one(alert, match, renderer, light_actions))
    return planned


def _plan_one(alert: AlertPayload, match: Callable[[dict[str, str], str], Playbook | None],
              renderer: TemplateRenderer, light_actions: frozenset[str]) -> Occurrence:
    playbook = match(alert.labels, alert.status)
    target = target_error = None
    lane, priority, notify_only = "act", 0, False
    if playbook is not None:
        target, target_error = resolve_target(playbook.target, alert.labels, alert.annotations,
                                              renderer)
        if all(step.action in light_actions for step in playbook.actions):
            lane = "light"
        priority, notify_only = playbook.priority, playbook.notify_only
    ends_at = alert.ends_at if alert.ends_at and alert.ends_at > ZERO_TIME else None
    return Occurrence(
        fingerprint=alert.fingerprint, starts_at=alert.starts_at, ends_at=ends_at,
        status=alert.status, labels=alert.labels, annotations=alert.annotations,
        generator_url=alert.generator_url, playbook=playbook.name if playbook else None,
        target=target, target_error=target_error, lane=lane, priority=priority,
        notify_only=notify_only,
    )
