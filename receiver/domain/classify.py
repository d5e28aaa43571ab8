"""What the evidence says happened to the target: one word, recorded with the incident and
matched by playbooks (`skip_when`, `escalate_when`)."""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

__all__ = ["CLASSIFICATIONS", "Classification", "classify"]

Classification = Literal["oom_killed", "crashed", "hung", "unhealthy", "stopped_by_operator",
                         "bad_update"]
CLASSIFICATIONS: tuple[str, ...] = get_args(Classification)

# The alert is about the scrape itself: `up` (TargetDown and friends).
_SCRAPE_METRIC = re.compile(r"(?<![\w:])up(?![\w:])")


def classify(state: dict[str, Any] | None, operator_stop: str | None,
             expression: dict[str, Any] | None, cause: str | None = None,
             new_image: bool = False) -> Classification | None:
    """In order: the kernel's OOM kill, an operator's stop, a bad update (`new_image`: the
    target was created from a new image a moment ago, whatever it does now), a crash (not
    running), a failing health check, a hang (running, and the alert's `up` expression
    still holds). None when the evidence does not say (e.g. it was cut by the time budget).

    `cause` is what the operator-intent guard knows (intent.decide: operator, crash, oom,
    unknown); None when it was not asked (a later step's capture, a backend without it):
    then a stopped container counts as crashed unless the events say otherwise."""
    if state is None:
        return "bad_update" if new_image else None
    if state.get("oom_killed"):
        return "oom_killed"
    if operator_stop or cause == "operator":
        return "stopped_by_operator"
    if new_image:
        return "bad_update"
    if state.get("status") == "paused":
        return None  # frozen on purpose or not, it is neither hung nor crashed
    if not state.get("running"):
        crashed = state.get("status") in ("exited", "dead") and cause in (None, "crash", "oom")
        return "crashed" if crashed else None
    if (state.get("health") or {}).get("status") == "unhealthy":
        return "unhealthy"
    if expression and expression.get("series") and _SCRAPE_METRIC.search(
            str(expression.get("expr", ""))):
        return "hung"
    return None
