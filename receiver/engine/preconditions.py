"""`require:`: PromQL a playbook needs to hold (a non-empty result) just before it acts.

Asked after the target guards, before a human is asked to approve and before admission,
outside any database transaction. An empty result, a template that cannot be rendered and
a Prometheus that cannot answer (refused, timed out, an error, not JSON) all stop the run
with `precondition_failed`, escalated: autofix never acts on an unknown.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from receiver.engine.guards import GuardStop
from receiver.engine.services import Services
from receiver.playbooks.config import Playbook
from receiver.playbooks.templating import TemplateRenderError
from receiver.store.models import Action
from receiver.telemetry.prometheus_api import PrometheusError, instant_query

__all__ = ["PRECONDITION_FAILED", "precondition_retry_s", "precondition_stop",
           "promql_string_context"]

PRECONDITION_FAILED = "precondition_failed"
RETRY_FIRST_S = 60.0
RETRY_MAX_S = 1800.0


def promql_string_context(variables: dict[str, Any]) -> dict[str, Any]:
    """The params' template context with every string escaped for a PromQL double-quoted
    string: a label value holding `"} or vector(1)` stays a value and cannot turn an
    expression that should fail into one that passes."""
    return {key: _escaped(value) for key, value in variables.items()}


def _escaped(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _escaped(item) for key, item in value.items()}
    if isinstance(value, str):
        return (value.replace("\\", "\\\\").replace('"', '\\"')
                .replace("\n", "\\n").replace("\r", "\\r"))
    return value


def precondition_stop(services: Services, playbook: Playbook, variables: dict[str, Any],
                      retry_after_s: float | None) -> GuardStop | None:
    """The first `require:` expression that does not hold, as a stop; None when all hold.
    `retry_after_s` is when the incident is tried again (None: never on its own)."""
    context = promql_string_context(variables)
    settings = services.settings
    for number, template in enumerate(playbook.require, 1):
        try:
            expr = services.renderer.render(template, context)
        except TemplateRenderError as exc:
            # The incident's labels will not change: retrying would fail the same way.
            return GuardStop(PRECONDITION_FAILED, f"require #{number} cannot be rendered for "
                             f"this alert, so it cannot be checked: {exc}", escalate=True)
        try:
            result = instant_query(settings.prometheus_url, expr,
                                   settings.precondition_timeout_s)
        except PrometheusError as exc:
            return GuardStop(PRECONDITION_FAILED, f"require {expr!r}: Prometheus gave no "
                             f"answer, and autofix does not act on an unknown: {exc}",
                             retry_after_s, escalate=True)
        if not result.nonempty:
            return GuardStop(PRECONDITION_FAILED, f"require {expr!r} does not hold: "
                             f"Prometheus returned an {result.describe()}",
                             retry_after_s, escalate=True)
    return None


def precondition_retry_s(session: Session, incident_id: int) -> float:
    """60 s, doubling with each earlier precondition_failed of the incident, up to 30 min:
    the target is fixed soon after the fleet is healthy again, and a long outage does not
    re-escalate every minute."""
    earlier = session.scalar(select(func.count()).select_from(Action).where(
        Action.incident_id == incident_id, Action.action == "guard",
        Action.reason == PRECONDITION_FAILED)) or 0
    return min(RETRY_FIRST_S * 2.0 ** min(earlier, 16), RETRY_MAX_S)
