"""The rule, as pure functions: what is known about why a container is in its state, and
what a run does about it (act, skip, or skip and escalate). No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

__all__ = ["MATCH_TOLERANCE", "TABLE", "Cause", "ContainerFacts", "Coverage", "Known",
           "Record", "Rule", "Verdict", "decide", "state_kind", "what_is_known"]

Cause = Literal["operator", "crash", "oom", "unknown"]
StateKind = Literal["running", "restarting", "paused", "stopped", "created", "other"]
# A die event and the State.FinishedAt it set are the same moment, give or take.
MATCH_TOLERANCE = timedelta(seconds=2)
_OPERATOR_REQUESTS = frozenset({"kill", "stop"})


@dataclass(frozen=True)
class ContainerFacts:
    """What Docker says now: inspect, and dockerd's own (forgetful) event buffer since a
    minute before the container's last start, oldest first."""

    daemon_id: str
    container_id: str
    name: str
    status: str  # Docker's State.Status
    started_at: datetime | None = None
    finished_at: datetime | None = None
    oom_killed: bool = False
    exit_code: int = 0
    buffer: list[dict[str, Any]] = field(default_factory=list)  # action, time_nano, ...


@dataclass(frozen=True)
class Record:
    """The follower's record of the container (a target_transitions row)."""

    action: str
    cause: str
    detail: str
    at: datetime
    started_at: datetime | None = None
    died_at: datetime | None = None


@dataclass(frozen=True)
class Coverage:
    """Since when the daemon's events have been followed without a break, until when."""

    covered_since: datetime | None
    covered_until: datetime | None
    live: bool  # a follower holds the lease now


@dataclass(frozen=True)
class Known:
    cause: Cause
    detail: str  # who/what/when as Docker says it, or why nothing is known
    source: str  # follower, dockerd, inspect, none


@dataclass(frozen=True)
class Rule:
    state: StateKind
    known: Cause | Literal["any"]
    verdict: Literal["act", "skip", "escalate"]  # escalate: skip, and a human is told
    reason: str | None  # the skip reason recorded on the run


@dataclass(frozen=True)
class Verdict:
    act: bool
    reason: str | None
    escalate: bool
    message: str


# The table docs/operator-intent.md shows; the first row that matches decides.
TABLE: tuple[Rule, ...] = (
    Rule("running", "any", "act", None),
    Rule("restarting", "any", "skip", "already_recovered"),
    Rule("paused", "any", "escalate", "target_paused"),
    Rule("stopped", "oom", "act", None),
    Rule("stopped", "crash", "act", None),
    Rule("stopped", "operator", "escalate", "operator_stop"),
    Rule("stopped", "unknown", "escalate", "state_unknown"),
    Rule("created", "any", "escalate", "state_unknown"),
    Rule("other", "any", "escalate", "state_unknown"),
)


def state_kind(status: str) -> StateKind:
    if status in ("running", "restarting", "paused", "created"):
        return status  # type: ignore[return-value]
    return "stopped" if status in ("exited", "dead") else "other"


def decide(facts: ContainerFacts, known: Known) -> Verdict:
    kind = state_kind(facts.status)
    rule = next(r for r in TABLE if r.state == kind and r.known in ("any", known.cause))
    if rule.verdict == "act":
        return Verdict(True, None, False, f"{facts.name} is {facts.status}: {known.detail}")
    return Verdict(False, rule.reason, rule.verdict == "escalate",
                   _message(rule.reason, facts, known))


def _message(reason: str | None, facts: ContainerFacts, known: Known) -> str:
    name = facts.name
    if reason == "target_paused":
        return (f"{name} is paused ({known.detail}); autofix never unpauses or restarts a "
                "paused container: a human decides")
    if reason == "operator_stop":
        return f"{name} was stopped on purpose: {known.detail}; autofix leaves it stopped"
    if reason == "already_recovered":
        return f"{name} is being restarted by Docker"
    return (f"{name} is {facts.status} and autofix cannot tell why: {known.detail}; it "
            "never restarts on a guess")


def what_is_known(facts: ContainerFacts, record: Record | None, coverage: Coverage | None,
                  now: datetime) -> Known:
    """Why the container is in its state, from (in order of trust) inspect's OOMKilled, the
    follower's record and dockerd's buffer. An operator's request seen anywhere wins: it
    is never overruled by a crash seen elsewhere."""
    kind = state_kind(facts.status)
    if kind == "stopped" and facts.oom_killed:
        return Known("oom", f"the kernel's OOM killer ended it at {_at(facts.finished_at)}",
                     "inspect")
    if kind not in ("stopped", "paused"):
        return Known("unknown", f"Docker says it is {facts.status}", "inspect")
    found = [_from_record(facts, record), _from_buffer(facts)]
    for cause in ("operator", "oom", "crash"):
        for known in found:
            if known is not None and known.cause == cause:
                return known
    return Known("unknown", _why_unknown(facts, record, coverage, now), "none")


def _from_record(facts: ContainerFacts, record: Record | None) -> Known | None:
    if record is None:
        return None
    if state_kind(facts.status) == "paused":
        return (Known("operator", record.detail, "follower") if record.action == "pause"
                else None)
    if not _same(record.died_at, facts.finished_at):
        return None  # the record is of an earlier stop: this one was not seen
    if record.cause in ("operator", "oom", "crash"):
        return Known(record.cause, record.detail, "follower")  # type: ignore[arg-type]
    return None


def _from_buffer(facts: ContainerFacts) -> Known | None:
    """dockerd's buffer proves a crash only while it still holds the container's last
    start: then every later event is there too (it forgets the oldest first)."""
    since_start: list[dict[str, Any]] | None = None
    for event in facts.buffer:
        action = str(event.get("action", "")).split(":")[0]
        if action == "start":
            since_start = []
        elif since_start is not None:
            since_start.append({**event, "action": action})
    if since_start is None:
        # Without its start, a stop request is still a fact (seen, so it happened).
        requests = [e for e in facts.buffer
                    if str(e.get("action", "")).split(":")[0] in _OPERATOR_REQUESTS
                    and _after(e, facts.started_at)]
        return _operator(requests[-1]) if requests else None
    if state_kind(facts.status) == "paused":
        pauses = [e for e in since_start if e["action"] == "pause"]
        return _paused(pauses[-1]) if pauses else None
    requests = [e for e in since_start if e["action"] in _OPERATOR_REQUESTS]
    if requests:
        return _operator(requests[0])
    dies = [e for e in since_start if e["action"] == "die"]
    if dies:
        die = dies[-1]
        oom = any(e["action"] == "oom" for e in since_start)
        return Known("oom" if oom else "crash",
                     f"it exited by itself with code {die.get('exit_code')} at "
                     f"{_event_at(die)} (dockerd still holds every event since its start)",
                     "dockerd")
    return None


def _operator(event: dict[str, Any]) -> Known:
    action = str(event.get("action", "")).split(":")[0]
    signal = f" (signal {event['signal']})" if event.get("signal") else ""
    return Known("operator", f"an API caller asked Docker to {action} it{signal} at "
                 f"{_event_at(event)} (dockerd's events)", "dockerd")


def _paused(event: dict[str, Any]) -> Known:
    return Known("operator", f"an API caller paused it at {_event_at(event)} (dockerd's "
                 "events)", "dockerd")


def _why_unknown(facts: ContainerFacts, record: Record | None, coverage: Coverage | None,
                 now: datetime) -> str:
    when = facts.finished_at if state_kind(facts.status) == "stopped" else None
    what = f"it stopped at {_at(when)}" if when else "its last transition"
    if coverage is None or coverage.covered_since is None:
        follower = "no events follower has followed this Docker daemon"
    elif not coverage.live:
        follower = (f"the events follower stopped following at {_at(coverage.covered_until)}"
                    f" (window since {_at(coverage.covered_since)})")
    elif when is not None and coverage.covered_since > when:
        follower = (f"events have been followed only since {_at(coverage.covered_since)}, "
                    f"after {what}")
    elif record is not None:
        follower = (f"the follower's last record ({record.action} at {_at(record.at)}) does "
                    f"not show every event since its start")
    else:
        follower = f"the follower (since {_at(coverage.covered_since)}) has no record of it"
    return (f"{follower}, and dockerd no longer holds the events since its start "
            f"({_at(facts.started_at)}: its buffer rolled over or the daemon restarted)")


def _same(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= MATCH_TOLERANCE


def _after(event: dict[str, Any], moment: datetime | None) -> bool:
    return moment is None or int(event.get("time_nano") or 0) / 1e9 >= moment.timestamp() - 1


def _event_at(event: dict[str, Any]) -> str:
    return datetime.fromtimestamp(int(event.get("time_nano") or 0) / 1e9, UTC).isoformat()


def _at(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "an unknown time"
