"""Webhook bodies shaped exactly as Alertmanager 0.25 sends them (notify/webhook/webhook.go)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

ZERO = "0001-01-01T00:00:00Z"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]


def alert(labels: dict[str, str], *, status: str = "firing", starts_at: datetime | None = None,
          ends_at: datetime | None = None, annotations: dict[str, str] | None = None
          ) -> dict[str, Any]:
    labels = {"alertname": "TargetDown", "severity": "critical", **labels}
    starts = starts_at or datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    return {
        "status": status, "labels": labels,
        "annotations": annotations or {"summary": f"{labels.get('container', '?')} is down",
                                       "runbook_url": "https://runbooks.example/TargetDown"},
        "startsAt": iso(starts),
        "endsAt": iso(ends_at) if ends_at else ZERO,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
        "fingerprint": fingerprint(labels),
    }


def notification(alerts: list[dict[str, Any]], *, receiver: str = "autofix",
                 truncated: int = 0) -> dict[str, Any]:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    first = alerts[0]["labels"] if alerts else {}
    group_labels = {k: first[k] for k in ("alertname", "container") if k in first}
    common = {k: v for k, v in first.items() if all(a["labels"].get(k) == v for a in alerts)}
    return {
        "receiver": receiver, "status": status, "alerts": alerts,
        "groupLabels": group_labels, "commonLabels": common, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}",
        "truncatedAlerts": truncated,
    }
