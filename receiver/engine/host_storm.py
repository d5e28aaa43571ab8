"""A host storm, written down: the `host_storms` row every worker checks, and its one
incident (alertname AutofixHostStorm, label host), escalated once.

The run that starts a storm opens the row and the incident; every run the storm holds back
afterwards adds its target to both and keeps the storm in force for another window, without
a second escalation: Slack hears about the storm once, in the incident's own message.
Skipped runs are not retried (retries.py): a host on which many containers fail at once is
a host problem, and restarting its containers later would be a guess.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from receiver.engine.blast_radius import StormHit, lock, storm_in_force
from receiver.engine.services import Services
from receiver.store.lifecycle import new_incident_status
from receiver.store.models import HostStorm, Incident

__all__ = ["STORM_ALERTNAME", "StormRecord", "record_storm"]

log = logging.getLogger("autofix.host_storm")
STORM_ALERTNAME = "AutofixHostStorm"
_ANNOTATION_MAX = 4000


@dataclass(frozen=True)
class StormRecord:
    incident_id: int | None
    escalation: str | None  # set when this hit opened the storm: escalate once, with it


def record_storm(session: Session, services: Services, hit: StormHit) -> StormRecord:
    """Open the host's storm or add `hit` to the one in force, in the transaction that
    records the skip. The caller escalates a new storm's incident."""
    now = services.clock()
    lock(session, f"storm:{hit.host}")  # re-entrant: admit may hold it already
    storms = storm_in_force(session, hit.host, now)
    if storms:
        storm = storms[0]
        skipped = list(storm.targets.get("skipped") or [])
        if hit.target not in skipped:
            skipped.append(hit.target)
        acted = sorted({*storm.targets.get("acted", []), *hit.acted})
        storm.targets = {"acted": acted, "skipped": skipped}
        storm.until = max(storm.until, hit.until)
        incident = session.get(Incident, storm.incident_id) if storm.incident_id else None
        if incident is not None:
            incident.annotations = _annotations(hit.host, acted, skipped)
            incident.last_seen = now
        return StormRecord(storm.incident_id, None)
    acted, skipped = sorted(hit.acted), [hit.target]
    digest = hashlib.sha256(f"{STORM_ALERTNAME}\n{hit.host}".encode()).hexdigest()[:40]
    incident = Incident(
        fingerprint=f"storm-{digest}", starts_at=now, alertname=STORM_ALERTNAME,
        severity="critical", container="", target=hit.host[:255], playbook=None,
        labels={"alertname": STORM_ALERTNAME, "host": hit.host, "severity": "critical"},
        annotations=_annotations(hit.host, acted, skipped), generator_url="",
        status=new_incident_status(resolved=False), notification_count=1, first_seen=now,
        last_seen=now, trigger="storm")
    session.add(incident)
    session.flush()
    session.add(HostStorm(host=hit.host, started_at=now, until=hit.until,
                          targets={"acted": acted, "skipped": skipped},
                          incident_id=incident.id))
    services.metrics.host_storms.inc()
    log.warning("host storm", extra={"host": hit.host, "incident_id": incident.id,
                                     "acted": acted, "skipped": skipped,
                                     "until": hit.until.isoformat()})
    return StormRecord(incident.id, (
        f"host storm on {hit.host}: {len(acted)} targets acted on within "
        f"{services.settings.host_storm_window_s:g}s ({', '.join(acted)}); no further "
        f"mutating action there until {hit.until.isoformat()} (longer while alerts keep "
        f"coming); left as they are: {', '.join(skipped)}"))


def _annotations(host: str, acted: list[str], skipped: list[str]) -> dict[str, Any]:
    return {
        "summary": f"host storm on {host}: {len(acted)} targets acted on, "
                   f"{len(skipped)} left as they are",
        "acted_on": ", ".join(acted)[:_ANNOTATION_MAX],
        "skipped": ", ".join(skipped)[:_ANNOTATION_MAX],
        "runbook": "docs/runbooks.md#autofixhoststorm",
    }
