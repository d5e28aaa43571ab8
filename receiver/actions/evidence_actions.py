"""The `capture` action: evidence about the target, recorded before anything changes it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from receiver.actions.registry import ActionContext, ActionFailed
from receiver.evidence.capture import Evidence

__all__ = ["CaptureParams", "capture_evidence", "describe_evidence"]


class CaptureParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    budget_s: float | None = Field(
        None, gt=0, le=60, description="Time budget; unset: AUTOFIX_EVIDENCE_BUDGET_S.")


def describe_evidence(evidence: Evidence, row_id: int | None) -> str:
    """One line for the action's detail and the logs: what was found, what is missing."""
    parts = [f"evidence #{row_id}" if row_id is not None else "evidence (not stored)",
             f"classification {evidence.classification or 'none'}"]
    logs = evidence.results.get("logs")
    if isinstance(logs, dict):
        parts.append(f"{logs.get('lines', 0)} log lines")
    if evidence.cut:
        parts.append(f"cut by the {evidence.took_s:.1f}s budget: {', '.join(evidence.cut)}")
    if evidence.errors:
        parts.append(f"failed: {', '.join(sorted(evidence.errors))}")
    return "; ".join(parts)


def capture_evidence(ctx: ActionContext, params: CaptureParams) -> str | None:
    """Record the target's state, log tail, stats and the alert's value, redacted."""
    if ctx.capture is None:
        raise ActionFailed("capture_unavailable", "evidence capture is not available here")
    evidence, row_id = ctx.capture(params.budget_s)
    return describe_evidence(evidence, row_id)
