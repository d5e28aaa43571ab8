"""Pure functions that turn an event about an incident into a message. No I/O here.

`build_slack_message` gives a Block Kit body (text fallback + blocks) and
`build_webhook_payload` the generic JSON document; both carry the same links: the alert's
source (generatorURL), its runbook, the Grafana incident dashboard and an Alertmanager
silence form prefilled with the alert's labels.

Every link is under a configured base URL (`link_under`): a label or annotation never
chooses where a button points. Everything Slack renders as mrkdwn, the top-level `text`
included, is escaped (`slack_escape`), so `<!channel>` or `<https://x|y>` arrive inert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from receiver.notify.events import Event

if TYPE_CHECKING:
    from receiver.config.settings import Settings
    from receiver.store.models import Incident

__all__ = [
    "APPROVE_ACTION", "DENY_ACTION", "IncidentInfo", "LinkSettings", "build_notice_slack",
    "build_notice_webhook", "build_slack_message", "build_webhook_payload", "dashboard_url",
    "describe", "describe_notice", "incident_links", "link_under", "runbook_link", "silence_url",
    "slack_escape",
]

DASHBOARD_UID = "autofix-incidents"
# Slack's documented limits: section text 3000, button text 75, button url 3000.
_SECTION_MAX = 3000
APPROVE_ACTION, DENY_ACTION = "autofix_run_approve", "autofix_run_deny"
_URL_MAX = 3000
_ERROR_MAX = 500
# encodeURIComponent's unreserved set: what Alertmanager's UI (Elm's Url.percentEncode) keeps.
_URI_COMPONENT_SAFE = "-_.!~*'()"


@dataclass(frozen=True)
class IncidentInfo:
    """What a message needs to know about an incident, detached from the session."""

    id: int
    alertname: str
    fingerprint: str
    target: str | None
    status: str
    severity: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    generator_url: str = ""
    starts_at: datetime | None = None
    time_to_resolve_s: float | None = None

    @classmethod
    def from_row(cls, incident: Incident) -> IncidentInfo:
        return cls(
            id=incident.id, alertname=incident.alertname, fingerprint=incident.fingerprint,
            target=incident.target, status=incident.status, severity=incident.severity,
            labels={str(k): str(v) for k, v in incident.labels.items()},
            annotations={str(k): str(v) for k, v in incident.annotations.items()},
            generator_url=incident.generator_url, starts_at=incident.starts_at,
            time_to_resolve_s=incident.time_to_resolve_s)


@dataclass(frozen=True)
class LinkSettings:
    """The configured base URLs: the only places a message's buttons may point."""

    grafana_url: str | None = None
    alertmanager_url: str | None = None
    prometheus_url: str | None = None  # Prometheus' external URL: Source buttons
    runbook_base_url: str | None = None  # Runbook buttons

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSettings:
        return cls(settings.grafana_url or None, settings.alertmanager_url or None,
                   settings.prometheus_external_url or settings.prometheus_url or None,
                   settings.runbook_base_url or None)


def dashboard_url(grafana_url: str, incident_id: int) -> str:
    return (f"{grafana_url.rstrip('/')}/d/{DASHBOARD_UID}/autofix-incidents"
            f"?var-incident={incident_id}")


def silence_url(alertmanager_url: str, labels: Mapping[str, str]) -> str:
    """Alertmanager 0.25's "new silence" form, prefilled like its own Silence button.

    The UI (ui/app/src/Views/SilenceForm/Parsing.elm, newSilenceFromAlertLabels) sorts the
    labels, writes `{k="v", k2="v2"}` (comma and space) and percent-encodes it the way
    encodeURIComponent does. 0.25 does not escape quotes inside values, so neither do we.
    """
    matchers = ", ".join(f'{name}="{value}"' for name, value in sorted(labels.items()))
    return (f"{alertmanager_url.rstrip('/')}/#/silences/new?filter="
            + quote("{" + matchers + "}", safe=_URI_COMPONENT_SAFE))


def _is_web_url(url: str) -> bool:
    return url.startswith(("http://", "https://")) and len(url) <= _URL_MAX


def link_under(url: str, base: str | None) -> str | None:
    """`url` when it is an http(s) URL under `base`: the same scheme, host and port (no
    userinfo), its path at or below the base's path, no `.`/`..` segment; else None.
    A string prefix test would let `https://wiki.example.com.evil.net/` through."""
    if not base or not _is_web_url(url) or any(c <= " " or c in "\\\x7f" for c in url):
        return None
    try:
        parts, root = urlsplit(url), urlsplit(base.strip())
        _ = (parts.port, root.port)  # a bad port raises ValueError only when read
    except ValueError:
        return None
    if (parts.scheme.lower(), parts.netloc.lower()) != (root.scheme.lower(), root.netloc.lower()) \
            or "@" in parts.netloc or not root.netloc:
        return None
    prefix = root.path.rstrip("/")
    if parts.path != prefix and not parts.path.startswith(prefix + "/"):
        return None
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        return None
    return url


def runbook_link(runbook_url: str, base: str | None) -> str | None:
    """A runbook_url annotation as a link under `base`: a relative one is joined to it, an
    absolute one is kept only when it lies under it."""
    value = runbook_url.strip()
    if not value or not base:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if not parts.scheme and not parts.netloc:  # relative: always below the base
        value = urljoin(base.rstrip("/") + "/", value.lstrip("/"))
    return link_under(value, base)


def incident_links(incident: IncidentInfo, links: LinkSettings) -> list[tuple[str, str]]:
    """(label, url) pairs, only for what is known, each under a configured base URL: the
    alert's generatorURL under Prometheus', its runbook_url under the runbook base."""
    found: list[tuple[str, str]] = []
    source = link_under(incident.generator_url, links.prometheus_url)
    if source:
        found.append(("Source", source))
    runbook = runbook_link(incident.annotations.get("runbook_url", ""), links.runbook_base_url)
    if runbook:
        found.append(("Runbook", runbook))
    if links.grafana_url:
        found.append(("Dashboard", dashboard_url(links.grafana_url, incident.id)))
    if links.alertmanager_url and incident.labels:
        found.append(("Silence", silence_url(links.alertmanager_url, incident.labels)))
    return [(label, url) for label, url in found if _is_web_url(url)]


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60}s"
    return f"{whole // 3600}h {whole % 3600 // 60}m"


def _target(event: Event, incident: IncidentInfo) -> str:
    return str(event.details.get("target") or incident.target or "")


def describe(event: Event, incident: IncidentInfo) -> str:
    """One plain-text line: the Slack fallback text and the webhook's `summary`."""
    d = event.details
    target = _target(event, incident)
    on = f" on {target}" if target else ""
    if event.kind == "playbook_started":
        dry = " (dry run)" if d.get("dry_run") else ""
        return f"playbook {d.get('playbook')} started{on}{dry}"
    if event.kind == "action_result":
        took = (f" in {format_duration(float(d['duration_s']))}"
                if d.get("duration_s") is not None else "")
        error = f": {str(d['error'])[:_ERROR_MAX]}" if d.get("error") else ""
        step = f"step {int(d['step']) + 1} " if d.get("step") is not None else ""
        return f"{step}{d.get('action')} {d.get('outcome')}{on}{took}{error}"
    if event.kind == "escalated":
        return f"escalated: {str(d.get('reason', ''))[:_ERROR_MAX]}"
    if event.kind == "breaker_opened":
        wait = d.get("retry_after_s")
        pause = f" for {format_duration(float(wait))}" if wait is not None else ""
        return f"circuit breaker opened{on}: no automatic action{pause}"
    if event.kind == "approval_requested":
        return (f"run {d.get('run_id')} of playbook {d.get('playbook')} awaits approval{on} "
                f"(POST /api/v1/runs/{d.get('run_id')}/approve or /deny; expires "
                f"{d.get('due')})")
    if event.kind == "approval_decided":
        comment = f": {str(d['comment'])[:_ERROR_MAX]}" if d.get("comment") else ""
        return f"run {d.get('run_id')} {d.get('decision')} by {d.get('actor')}{comment}"
    if event.kind == "evidence":
        found = d.get("classification") or "no classification"
        missing = f"; cut by the time budget: {', '.join(d['cut'])}" if d.get("cut") else ""
        return f"evidence captured{on} before acting: {found}{missing}"
    if event.kind == "resolved":
        if incident.time_to_resolve_s is None:
            return "resolved"
        return f"resolved after {format_duration(incident.time_to_resolve_s)}"
    return str(d.get("text", ""))[:_SECTION_MAX]


_ICONS = {
    "playbook_started": ":arrow_forward:", "escalated": ":rotating_light:",
    "breaker_opened": ":no_entry:", "resolved": ":large_green_circle:", "note": ":memo:",
    "approval_requested": ":raised_hand:", "approval_decided": ":ballot_box_with_check:",
    "evidence": ":mag:",
}
_OUTCOME_ICONS = {"succeeded": ":white_check_mark:", "failed": ":x:", "dry_run": ":memo:",
                  "skipped": ":fast_forward:"}


def slack_escape(text: str) -> str:
    """Slack mrkdwn control characters (&, <, >), so label values cannot inject links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _icon(event: Event) -> str:
    if event.kind == "action_result":
        return _OUTCOME_ICONS.get(str(event.details.get("outcome")), ":grey_question:")
    return _ICONS.get(event.kind, ":information_source:")


def _title(incident: IncidentInfo, target: str) -> str:
    return f"{incident.alertname} · {target}" if target else incident.alertname


def build_slack_message(event: Event, incident: IncidentInfo, *,
                        links: LinkSettings | None = None) -> dict[str, Any]:
    """A chat.postMessage / incoming-webhook body: `text` (fallback) and Block Kit `blocks`."""
    links = links or LinkSettings()
    target = _target(event, incident)
    line = describe(event, incident)
    title = _title(incident, target)
    headline = f"{_icon(event)} *{slack_escape(title)}*: {slack_escape(line)}"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline[:_SECTION_MAX]}},
    ]
    summary = incident.annotations.get("summary") or incident.annotations.get("description")
    if summary:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": slack_escape(summary)[:_SECTION_MAX]}})
    context = [f"incident #{incident.id}", f"status {incident.status}"]
    if incident.severity:
        context.insert(0, f"severity {incident.severity}")
    context.append(f"fingerprint `{incident.fingerprint}`")
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": slack_escape(" · ".join(context))[:_SECTION_MAX]}]})
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": label},
         "url": url, "action_id": f"autofix_{label.lower()}"}
        for label, url in incident_links(incident, links)
    ]
    if event.kind == "approval_requested" and event.details.get("run_id") is not None:
        # Clicks come back to POST /slack/interactions (AUTOFIX_SLACK_SIGNING_SECRET).
        run_id = str(event.details["run_id"])
        buttons = [
            {"type": "button", "text": {"type": "plain_text", "text": "Approve"},
             "style": "primary", "action_id": APPROVE_ACTION, "value": run_id},
            {"type": "button", "text": {"type": "plain_text", "text": "Deny"},
             "style": "danger", "action_id": DENY_ACTION, "value": run_id},
            *buttons]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    if event.kind == "evidence":
        blocks[1:1] = evidence_blocks(event.details)
    # The fallback text is mrkdwn too (and what notifications show): escaped like the blocks.
    fallback = slack_escape(f"[{incident.alertname}] {title}: {line}")
    return {"text": fallback[:_SECTION_MAX], "blocks": blocks}


def _field(label: str, value: object) -> dict[str, str]:
    return {"type": "mrkdwn", "text": slack_escape(f"*{label}*\n{value}")[:2000]}


def evidence_blocks(details: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The target's state as fields and its log tail as a code block (already redacted)."""
    state = details.get("state") or {}
    fields = [_field("Classification", details.get("classification") or "none"),
              _field("Status", state.get("status") or "?")]
    if state.get("exit_code") is not None:
        fields.append(_field("Exit code", state["exit_code"]))
    fields.append(_field("OOM killed", "yes" if state.get("oom_killed") else "no"))
    fields.append(_field("Restarts", state.get("restart_count", "?")))
    if details.get("health"):
        fields.append(_field("Health", details["health"]))
    if details.get("memory_usage_bytes") is not None:
        limit = details.get("memory_limit_bytes")
        fields.append(_field("Memory", f"{details['memory_usage_bytes']} of {limit} bytes"))
    if details.get("new_image"):
        fields.append(_field("New image", details["new_image"]))
    if details.get("expression"):
        values = [item.get("value") for item in details.get("series") or []]
        fields.append(_field("Alert expression now",
                             f"{details['expression']} = {values or 'no series'}"))
    blocks: list[dict[str, Any]] = [{"type": "section", "fields": fields[:10]}]
    tail = str(details.get("log_tail") or "").replace("```", "'''")
    if tail:
        # Slack's section limit is 3000 characters: the newest lines fit.
        text = slack_escape(tail)[-(_SECTION_MAX - 20):]
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"```{text}```"}})
    return blocks


def build_webhook_payload(event: Event, incident: IncidentInfo, *,
                          links: LinkSettings | None = None) -> dict[str, Any]:
    """The generic outbound webhook's JSON document (version 1)."""
    links = links or LinkSettings()
    return {
        "version": "1",
        "event": event.kind,
        "summary": describe(event, incident),
        "details": dict(event.details),
        "incident": {
            "id": incident.id, "alertname": incident.alertname,
            "fingerprint": incident.fingerprint, "target": incident.target,
            "status": incident.status, "severity": incident.severity,
            "labels": dict(incident.labels), "annotations": dict(incident.annotations),
            "starts_at": incident.starts_at.isoformat() if incident.starts_at else None,
            "time_to_resolve_s": incident.time_to_resolve_s,
        },
        "links": {label.lower(): url for label, url in incident_links(incident, links)},
    }


def describe_notice(event: Event) -> str:
    """A notice about autofix itself (the kill switch), in one line."""
    d = event.details
    who = f" by {d.get('actor')}" if d.get("actor") else ""
    why = f": {str(d.get('reason'))[:_ERROR_MAX]}" if d.get("reason") else ""
    if event.kind == "paused":
        until = f" until {d['until']}" if d.get("until") else " until resumed"
        return f"automation paused{who}{until}{why}; only notifications and dry runs go on"
    if event.kind == "resumed":
        return f"automation resumed{who}{why}"
    return str(d.get("text", ""))[:_SECTION_MAX]


def build_notice_slack(event: Event) -> dict[str, Any]:
    icon = ":double_vertical_bar:" if event.kind == "paused" else ":arrow_forward:"
    line = describe_notice(event)
    return {"text": slack_escape(f"[autofix] {line}")[:_SECTION_MAX], "blocks": [
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": f"{icon} *autofix*: {slack_escape(line)}"
                                     [:_SECTION_MAX]}}]}


def build_notice_webhook(event: Event) -> dict[str, Any]:
    return {"version": "1", "event": event.kind, "summary": describe_notice(event),
            "details": dict(event.details), "incident": None, "links": {}}
