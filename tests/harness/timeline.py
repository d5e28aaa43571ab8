"""What happened when, for one scenario: fault → alert → webhook → action → up → resolved.

A poller thread watches Prometheus (alert state, `up`) and Docker (container state) every
100 ms; the receiver's own timestamps come from the database. All times are seconds
since the fault was injected, from real components (never canned).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .stack import Stack, TargetContainer

POLL_S = 0.1
ORDER = ["fault injected", "container exited", "container running again", "alert pending",
         "alert firing", "webhook received", "action started", "action finished",
         "target up", "incident resolved"]


@dataclass
class Timeline:
    stack: Stack
    target: TargetContainer
    alertname: str
    fault_at: float = 0.0
    events: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Timeline:
        self.fault_at = time.time()
        self.events["fault injected"] = self.fault_at
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _first(self, name: str) -> None:
        self.events.setdefault(name, time.time())

    def _poll(self) -> None:
        started_at = self.target.state().get("StartedAt")
        while not self._stop.is_set():
            try:
                state = self.target.state()
                if state["Status"] != "running":
                    self._first("container exited")
                elif "container exited" in self.events or state.get("StartedAt") != started_at:
                    self._first("container running again")
                alert = self.stack.alert_state(self.alertname, self.target.name,
                                               self.target.host)
                if alert in ("pending", "firing"):
                    self._first("alert pending")
                if alert == "firing":
                    self._first("alert firing")
                if "action started" in self.events and self.stack.up(self.target.name,
                                                                  self.target.host) == 1:
                    self._first("target up")
                self._from_database()
            except Exception:  # a component mid-restart answers badly for a moment
                pass
            self._stop.wait(POLL_S)

    def _from_database(self) -> None:
        rows = [r for r in self.stack.incidents(self.target.name)
                if r.alertname == self.alertname and _ts(r.first_seen) >= self.fault_at - 1]
        if not rows:
            return
        incident = rows[0]
        self.events.setdefault("webhook received", _ts(incident.first_seen))
        actions = [a for a in self.stack.actions(self.target.key)
                   if a.incident_id == incident.id and a.action != "guard"]
        if actions:
            self.events.setdefault("action started", _ts(actions[0].started_at))
            if len(actions) == len(self.stack.playbook_steps(incident.playbook)) or any(
                    a.outcome == "failed" for a in actions):
                self.events.setdefault("action finished", _ts(actions[-1].finished_at))
        if incident.resolved_at is not None:
            self.events.setdefault("incident resolved", _ts(incident.resolved_at))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def seconds(self, name: str) -> float | None:
        moment = self.events.get(name)
        return None if moment is None else round(moment - self.fault_at, 2)

    def time_to_detect(self) -> float | None:
        return self.seconds("alert firing") or self.seconds("webhook received")

    def time_to_recover(self) -> float | None:
        return self.seconds("target up")

    def report(self, title: str) -> str:
        lines = [f"--- timeline: {title} ({self.target.name}, {self.alertname}) ---"]
        for name in sorted(self.events, key=lambda n: (self.events[n], ORDER.index(n))):
            lines.append(f"  +{self.seconds(name):7.2f}s  {name}")
        lines.append(f"  time to detect: {self.time_to_detect()}s, "
                     f"time to recover: {self.time_to_recover()}s")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"events": {n: self.seconds(n) for n in self.events},
                "time_to_detect_s": self.time_to_detect(),
                "time_to_recover_s": self.time_to_recover()}


def _ts(value: datetime | str) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.timestamp()
