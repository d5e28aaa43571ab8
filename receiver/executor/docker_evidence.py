"""What Docker can tell about a container before an action changes it: inspect state, the
log tail, one stats sample, and its recent lifecycle events (which also tell a container an
operator stopped from one that died on its own).

Each function is one Docker API call (two for the operator check) and returns JSON-able
data; the evidence capture runs them in parallel under its time budget.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from receiver.executor.base import EvidenceLimits

__all__ = ["HEALTH_OUTPUTS", "container_events", "log_tail", "operator_stop_reason",
           "state_evidence", "stats_sample"]

HEALTH_OUTPUTS = 3  # the last health-check results kept
_HEALTH_OUTPUT_CHARS = 1000
_EVENTS_KEPT = 20
# Docker's own requests that end a container. A `die` with none of these since the last
# `start` is the container's own (crash, OOM kill, its process exited).
_OPERATOR_ACTIONS = frozenset({"kill", "stop"})


def state_evidence(attrs: dict[str, Any]) -> dict[str, Any]:
    """The inspect fields an operator asks for first, health outputs cut to size."""
    state = attrs.get("State") or {}
    health = state.get("Health") or {}
    checks = [{"start": check.get("Start"), "end": check.get("End"),
               "exit_code": check.get("ExitCode"),
               "output": str(check.get("Output") or "")[-_HEALTH_OUTPUT_CHARS:]}
              for check in (health.get("Log") or [])[-HEALTH_OUTPUTS:]]
    return {
        "status": state.get("Status"), "running": bool(state.get("Running")),
        "exit_code": state.get("ExitCode"), "oom_killed": bool(state.get("OOMKilled")),
        "error": state.get("Error") or None, "restart_count": attrs.get("RestartCount", 0),
        "started_at": state.get("StartedAt"), "finished_at": state.get("FinishedAt"),
        "health": ({"status": health.get("Status"),
                    "failing_streak": health.get("FailingStreak"), "checks": checks}
                   if health else None),
    }


def log_tail(container: Any, limits: EvidenceLimits) -> dict[str, Any]:
    """The newest `log_lines` lines of stdout and stderr, at most `log_bytes` (whole lines)."""
    if limits.log_lines == 0 or limits.log_bytes == 0:
        return {"text": "", "lines": 0, "cut_bytes": 0}
    raw = container.logs(stdout=True, stderr=True, timestamps=True, tail=limits.log_lines)
    cut = max(0, len(raw) - limits.log_bytes)
    if cut:
        raw = raw[cut:]
        newline = raw.find(b"\n")
        if 0 <= newline < len(raw) - 1:  # drop the partial first line
            cut += newline + 1
            raw = raw[newline + 1:]
    text = raw.decode("utf-8", errors="replace")
    return {"text": text, "lines": text.count("\n"), "cut_bytes": cut}


def stats_sample(container: Any) -> dict[str, Any]:
    """One sample (one-shot: no waiting for a second one); CPU as cumulative seconds."""
    stats = container.stats(stream=False, one_shot=True)
    memory = stats.get("memory_stats") or {}
    cpu = stats.get("cpu_stats") or {}
    usage = cpu.get("cpu_usage") or {}
    return {
        "read_at": stats.get("read"),
        "memory_usage_bytes": memory.get("usage"), "memory_limit_bytes": memory.get("limit"),
        "memory_max_usage_bytes": memory.get("max_usage"),
        "cpu_total_s": (usage.get("total_usage") or 0) / 1e9,
        "online_cpus": cpu.get("online_cpus"),
        "pids": (stats.get("pids_stats") or {}).get("current"),
    }


def container_events(api: Any, container_id: str, since: datetime | None) -> list[dict[str, Any]]:
    """The container's lifecycle events from `since` (a minute before it when known) to
    now, oldest first. dockerd keeps only its newest events in memory, so older ones may be
    gone."""
    start = int(since.timestamp()) - 60 if since else int(time.time()) - 3600
    # `until` now, to the nanosecond: dockerd answers with past events at once,
    # whereas an `until` in the future holds the stream open until then.
    stream = api.events(since=start, until=f"{time.time():.9f}", decode=True,
                        filters={"type": "container", "container": container_id})
    found = []
    for event in stream:
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        found.append({"action": str(event.get("Action") or event.get("status") or ""),
                      "time_nano": int(event.get("timeNano") or 0),
                      "exit_code": attributes.get("exitCode"),
                      "signal": attributes.get("signal")})
    return found[-_EVENTS_KEPT:]


def operator_stop_reason(events: list[dict[str, Any]]) -> str | None:
    """After the container's last `start`: a `kill` or `stop` request before the first
    `die` means someone asked for it to end (docker stop, docker kill, compose stop)."""
    since_start: list[dict[str, Any]] = []
    for event in events:
        if event["action"] == "start":
            since_start = []
        else:
            since_start.append(event)
    for event in since_start:
        if event["action"].split(":")[0] == "die":
            return None  # died before anyone asked: its own
        if event["action"].split(":")[0] in _OPERATOR_ACTIONS:
            at = datetime.fromtimestamp(event["time_nano"] / 1e9, UTC).isoformat()
            signal = f" (signal {event['signal']})" if event.get("signal") else ""
            return f"an operator asked Docker to {event['action']} it at {at}{signal}"
    return None
