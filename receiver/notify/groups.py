"""Notifications follow Alertmanager's grouping: one message per notification group.

A storm of 5,000 alerts in one group is one Slack message (updated in place as alerts
join or resolve), not 5,000 threads. An alert whose playbook may act on a target keeps its
own incident thread for the remediation story; every other alert (notify-only playbooks,
no playbook at all) is reported only in its group's message: counts, the top alertnames,
a sample of alerts and a link to the drill-down.

The group's state is the latest notification's (Alertmanager sends a group's complete
current set each time). Messages are coalesced: while a group's message is still waiting
to be sent, a new notification adds no second one; the sender renders the state it finds.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from receiver.domain.payload import WebhookPayload
from receiver.notify.messages import LinkSettings, slack_escape
from receiver.playbooks.config import PlaybookFile
from receiver.playbooks.ingest import Occurrence, template_context
from receiver.playbooks.templating import TemplateRenderer, TemplateRenderError
from receiver.store.lifecycle import NEW_OUTBOX_STATUS, OutboxStatus
from receiver.store.models import AlertGroup, Outbox

__all__ = [
    "SAMPLE_SIZE",
    "GroupInfo",
    "build_group_slack",
    "build_group_webhook",
    "emit_group",
    "group_values",
]

SAMPLE_SIZE = 10
TOP_ALERTNAMES = 5
_TEXT_MAX = 300


@dataclass(frozen=True)
class GroupInfo:
    """What a group's message needs, detached from the session."""

    id: int
    group_key: str
    receiver: str
    group_labels: dict[str, str]
    firing: int
    resolved: int
    summary: dict[str, Any]
    last_seen: datetime | None = None

    @classmethod
    def from_row(cls, row: AlertGroup) -> GroupInfo:
        return cls(row.id, row.group_key, row.receiver,
                   {str(k): str(v) for k, v in row.group_labels.items()}, row.firing,
                   row.resolved, dict(row.summary), row.last_seen)


def has_own_thread(occurrence: Occurrence, playbooks: PlaybookFile) -> bool:
    """An alert whose (firing) playbook may act is told in its own incident's thread."""
    if occurrence.status == "firing":
        return occurrence.playbook is not None and not occurrence.notify_only
    playbook = playbooks.first_match(occurrence.labels, "firing")
    return playbook is not None and not playbook.notify_only


def _line(occurrence: Occurrence, playbooks: PlaybookFile, renderer: TemplateRenderer) -> str:
    text = occurrence.annotations.get("summary") or occurrence.annotations.get(
        "description") or ""
    playbook = playbooks.by_name(occurrence.playbook) if occurrence.playbook else None
    if playbook is not None and occurrence.notify_only:
        messages = [str(step.params.get("message", "")) for step in playbook.actions]
        template = next((m for m in messages if m), "")
        if template:
            try:
                text = renderer.render(template, template_context(
                    occurrence.labels, occurrence.annotations, occurrence.status))
            except TemplateRenderError as exc:
                text = f"(message template failed: {exc})"
    return text[:_TEXT_MAX]


def summarize(occurrences: Sequence[Occurrence], playbooks: PlaybookFile,
              renderer: TemplateRenderer, truncated: int) -> dict[str, Any]:
    firing = Counter(o.labels.get("alertname", "") for o in occurrences
                     if o.status == "firing")
    sample = [{"status": o.status, "alertname": o.labels.get("alertname", ""),
               "target": o.target or o.labels.get("container") or o.labels.get("instance", ""),
               "text": _line(o, playbooks, renderer)}
              for o in sorted(occurrences, key=lambda o: o.status != "firing")[:SAMPLE_SIZE]]
    return {"top_alertnames": firing.most_common(TOP_ALERTNAMES), "sample": sample,
            "alerts": len(occurrences), "truncated_alerts": truncated}


def group_values(payload: WebhookPayload, occurrences: Sequence[Occurrence],
                 playbooks: PlaybookFile, renderer: TemplateRenderer,
                 now: datetime) -> dict[str, Any] | None:
    """The group's row (store.group_store.GROUP_COLUMNS), or None when every alert has a
    thread of its own: then the group has no message."""
    if all(has_own_thread(o, playbooks) for o in occurrences):
        return None
    key_hash = hashlib.sha256(f"{payload.receiver}\n{payload.group_key}".encode()).hexdigest()
    return {
        "key_hash": key_hash, "group_key": payload.group_key, "receiver": payload.receiver,
        "group_labels": dict(payload.group_labels), "external_url": payload.external_url,
        "firing": sum(1 for o in occurrences if o.status == "firing"),
        "resolved": sum(1 for o in occurrences if o.status == "resolved"),
        "summary": summarize(occurrences, playbooks, renderer, payload.truncated_alerts),
        "first_seen": now, "last_seen": now,
    }


def emit_group(session: Session, group_id: int, channels: Sequence[str],
               now: datetime) -> int:
    """Queue the group's message on each channel, unless one is already waiting.

    A waiting row is locked until this transaction commits the group's new state: a sender
    cannot claim it in between and render the old state. A row a sender is claiming right now
    is skipped (SKIP LOCKED), so a new row follows it with the new state."""
    waiting = set(session.scalars(select(Outbox.channel).where(
        Outbox.group_id == group_id, Outbox.status == OutboxStatus.PENDING,
        Outbox.attempts == 0)
        .with_for_update(skip_locked=True)))
    added = 0
    for channel in channels:
        if channel in waiting:
            continue
        session.add(Outbox(incident_id=None, group_id=group_id, channel=channel, kind="group",
                           details={}, status=NEW_OUTBOX_STATUS, attempts=0, created_at=now,
                           next_attempt_at=now))
        added += 1
    return added


def _drilldown(group: GroupInfo, links: LinkSettings) -> str:
    top = group.summary.get("top_alertnames") or []
    query = [("var-alertname", name) for name, _ in top]
    base = (links.grafana_url or "").rstrip("/")
    return f"{base}/d/autofix-incidents/autofix-incidents?" + urlencode(query)


def _headline(group: GroupInfo) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(group.group_labels.items()))
    state = ":large_green_circle: resolved" if not group.firing else \
        f":bell: {group.firing} firing"
    resolved = f", {group.resolved} resolved" if group.resolved and group.firing else ""
    return f"{state}{resolved} · group {labels or group.group_key[:200]}"


def build_group_slack(group: GroupInfo, links: LinkSettings) -> dict[str, Any]:
    """A chat.postMessage / chat.update body for the group's one message."""
    summary = group.summary
    headline = _headline(group)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(headline)[:3000]}}]
    top = summary.get("top_alertnames") or []
    if top:
        counts = " · ".join(f"{slack_escape(name)} x{count}" for name, count in top)
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"top alertnames: {counts}"[:3000]}]})
    lines = [f"{':white_check_mark:' if a['status'] == 'resolved' else ':small_red_triangle:'} "
             f"*{slack_escape(a['alertname'])}* {slack_escape(a['target'])}"
             f"{': ' + slack_escape(a['text']) if a['text'] else ''}"
             for a in summary.get("sample") or []]
    more = int(summary.get("alerts", 0)) + int(summary.get("truncated_alerts", 0)) - len(lines)
    if more > 0:
        lines.append(f"… and {more} more")
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": "\n".join(lines)[:3000]}})
    url = _drilldown(group, links)
    if url.startswith(("http://", "https://")):
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Drill down"},
             "url": url[:3000], "action_id": "autofix_group_drilldown"}]})
    return {"text": slack_escape(headline)[:3000], "blocks": blocks}  # mrkdwn too: escaped


def build_group_webhook(group: GroupInfo, links: LinkSettings) -> dict[str, Any]:
    """The outbound webhook's document for a group update (version 1, event "group")."""
    return {"version": "1", "event": "group", "summary": _headline(group),
            "group": {"key": group.group_key, "receiver": group.receiver,
                      "labels": group.group_labels, "firing": group.firing,
                      "resolved": group.resolved, **group.summary},
            "links": {"drilldown": _drilldown(group, links)}}
