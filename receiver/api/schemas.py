"""Response bodies of every route, as pydantic models: each view builds its answer with
one of them (`model_validate` of a row or dataclass, or `of(...)` where a field is derived)
and sends `body()`; the OpenAPI document (openapi.py) is generated from the same models,
and schemathesis checks real responses against it. A field is defined here only.

Timestamps are ISO 8601 strings (aware UTC on PostgreSQL; SQLite returns them without an
offset), so they are typed `str`, not `date-time`. Durations are floats in seconds and
their names end in `_s`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

if TYPE_CHECKING:
    from receiver.domain.redaction import Redactor
    from receiver.engine.blast_radius import BudgetUse, Report
    from receiver.engine.dependents import DependentsView
    from receiver.store.models import Action, EvidenceRecord, HostStorm, Incident, Run
    from receiver.telemetry.readiness import BackendStatus

__all__ = [
    "PAGE_COUNT_CAP", "ActionListItem", "ActionOut", "ActionPage", "AuditEntryOut", "AuditPage",
    "BackendOut", "BreakerList", "BreakerOut", "BreakerResetOut", "BudgetOut", "BudgetsOut",
    "DependentOut", "DependentsOut", "ErrorBody",
    "EvidenceOut", "Health", "HostStormGuardOut", "HostStormOut", "HostUseOut",
    "IncidentDetail", "IncidentListItem", "IncidentOut", "IncidentPage", "MaintenanceList",
    "MaintenanceOut", "PageOut", "PauseOut", "PlaybookList", "PlaybookOut", "Ready", "ReloadOut",
    "RunOut", "RunPage", "RunQueued", "SlackReply", "WebhookAccepted", "WebhookRecorded",
]

SHOWN_CHARS = 64 * 1024  # an annotation or generatorURL, cut before it is redacted


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


# A datetime is shown as its isoformat(), as stored: see the module docstring.
Time = Annotated[str, BeforeValidator(_iso)]
Stamp = Annotated[str | None, BeforeValidator(_iso)]


class _Out(BaseModel):
    # Documented fields only; a new field must be added here first (schemathesis fails
    # on an undocumented one). Rows and dataclasses validate by attribute.
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    @classmethod
    def of_attributes(cls, source: Any, **derived: Any) -> Self:
        """The model from `source`'s attributes of the same names, `derived` for the rest."""
        return cls.model_validate({name: derived[name] if name in derived
                                   else getattr(source, name) for name in cls.model_fields})

    def body(self) -> dict[str, Any]:
        """The JSON body: what jsonify sends."""
        return self.model_dump(mode="json")


class ErrorBody(BaseModel):
    """Every error: a stable code, a sentence, and details that depend on the error
    (`fields` for validation errors, `errors` for an invalid config, `hint`...)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})
    error: str = Field(description="Stable machine-readable code, e.g. bad_request.")
    message: str = Field(description="What went wrong, for a human.")
    retry_after_s: float | None = Field(None, description="409 only: seconds until a retry "
                                        "may pass the guard (also the Retry-After header).")


class IncidentOut(_Out):
    id: int
    fingerprint: str
    alertname: str | None
    status: str
    severity: str | None
    container: str | None
    target: str | None
    playbook: str | None
    trigger: str | None
    labels: Any
    annotations: Any
    generator_url: str | None
    starts_at: Stamp
    ends_at: Stamp
    first_seen: Stamp
    last_seen: Stamp
    resolved_at: Stamp
    time_to_resolve_s: float | None
    resolved_unseen: bool | None
    notification_count: int | None
    escalated_at: Stamp
    escalation_reason: str | None
    acknowledged_at: Stamp
    acknowledged_by: str | None
    closed_at: Stamp
    closed_by: str | None
    close_reason: str | None
    next_attempt_at: Stamp
    classification: str | None = Field(description="What the newest evidence says happened: "
                                       "oom_killed, crashed, hung, unhealthy, "
                                       "stopped_by_operator, bad_update (null: unknown).")

    @classmethod
    def of(cls, row: Incident, redactor: Redactor, **derived: Any) -> Self:
        # An alert's annotations and generatorURL come from outside: served redacted, as
        # are the reasons composed from step errors.
        return cls.of_attributes(
            row, annotations={key: redactor.text(str(value), SHOWN_CHARS)
                              for key, value in (row.annotations or {}).items()},
            generator_url=redactor.url(row.generator_url or "", SHOWN_CHARS),
            escalation_reason=row.escalation_reason and redactor.text(row.escalation_reason),
            close_reason=row.close_reason and redactor.text(row.close_reason), **derived)


class IncidentListItem(IncidentOut):
    truncated: list[str] = Field(description="Label/annotation keys cut in this list.")


class RunOut(_Out):
    id: int
    playbook: str
    target: str | None
    docker_host: str | None = Field(None, description="Among several Docker hosts "
                                    "(AUTOFIX_DOCKER_HOSTS), the one its target is on (`target` "
                                    "is then `<host>/<name>`); null with one host.")
    trigger: str | None = Field(description="alert, retry, manual, or dependent (a "
                                "container restarted after the target it depends on).")
    status: str
    reason: str | None
    actor: str | None = Field(description="Who asked for the run (null for alert runs).")
    requested_by: str | None = Field(deprecated=True, description="Same as `actor`.")
    queued_at: Stamp
    started_at: Stamp
    finished_at: Stamp
    dry_run: bool
    error: str | None
    config_version: int | None
    approval_due_at: Stamp = Field(description="Mode approve: when the wait expires.")
    decision: str | None = Field(description="approved, denied or expired (null: none).")
    decided_by: str | None
    decided_at: Stamp
    decision_comment: str | None
    chain: Any = Field(None, description="A `dependent` run's chain: its parent, the "
                       "dependent it restarts, the ones still to restart after it (in "
                       "order) and the ones left, with why (null for other runs).")

    @classmethod
    def of(cls, row: Run) -> Self:
        return cls.of_attributes(row, actor=row.requested_by)


class ActionOut(_Out):
    id: int
    run_id: int | None
    incident_id: int | None
    playbook: str
    action: str
    target: str | None
    docker_host: str | None = Field(None, description="As a run's `docker_host`.")
    params: Any = Field(description="The rendered parameters the action ran with.")
    detail: Any = Field(description="What the action reported (null when it failed).")
    outcome: str
    reason: str | None
    error: str | None
    started_at: Stamp
    finished_at: Stamp
    duration_s: float | None
    trigger: str | None

    @classmethod
    def of(cls, row: Action, redactor: Redactor) -> Self:
        # execution._run_steps stores what the action reported as params["detail"]; shown
        # as its own field, beside the parameters the action ran with. Redacted: rows stored
        # before redaction covered steps.
        params = redactor.params(row.params)
        detail = None
        if isinstance(params, dict) and "detail" in params:
            params = dict(params)
            detail = params.pop("detail")
        return cls.of_attributes(row, params=params, detail=detail,
                                 error=row.error and redactor.text(row.error))


class ActionListItem(ActionOut):
    truncated: list[str]


class EvidenceOut(_Out):
    """What the target looked like before an action changed it (redacted)."""

    id: int
    run_id: int | None
    step: int | None = Field(description="The step it preceded (implicit) or was (step).")
    source: str = Field(description="implicit (before a step that changes the target) "
                        "or step (a `capture` step).")
    target: str
    captured_at: Stamp
    took_s: float
    classification: str | None
    state: Any = Field(description="Inspect: status, exit_code, oom_killed, restart_count, "
                       "started_at, finished_at, health with its last outputs.")
    stats: Any = Field(description="One sample: memory usage and limit, CPU seconds.")
    expression: Any = Field(description="The alert's expression and its value then.")
    events: Any = Field(description="Recent lifecycle events of the target.")
    operator_stop: str | None = Field(description="Why it counts as stopped by an operator.")
    new_image: Any = Field(None, description="The target was created from a new image a "
                           "moment ago (a bad update): summary, old and new image ID and "
                           "reference, container IDs and creation times; null otherwise.")
    dependents: Any = Field(None, description="Who depends on the target, in restart order "
                            "(name, kind, restart_flag, depends_on, opted_in), or the cycle "
                            "found.")
    logs: Any = Field(description="lines and cut_bytes of the log tail; the text is at "
                      "logs_url.")
    logs_url: str
    cut: list[str] = Field(description="Sources the time budget cut off.")
    errors: dict[str, str] = Field(description="Sources that failed, with why.")
    size_bytes: int

    @classmethod
    def of(cls, row: EvidenceRecord) -> Self:
        details = row.details if isinstance(row.details, dict) else {}
        return cls.of_attributes(
            row, state=details.get("state"), stats=details.get("stats"),
            expression=details.get("expression"), events=details.get("events"),
            operator_stop=details.get("operator_stop"), new_image=details.get("new_image"),
            logs=details.get("logs"), dependents=details.get("dependents"),
            logs_url=f"/api/v1/evidence/{row.id}/logs", cut=list(details.get("cut") or []),
            errors=dict(details.get("errors") or {}))


class IncidentDetail(IncidentOut):
    runs: list[RunOut]
    actions: list[ActionOut]
    evidence: list[EvidenceOut]


# A list page counts its matches up to `offset` + this, not all of them (api/queries.py).
PAGE_COUNT_CAP = 1000


class PageOut(_Out):
    total: int = Field(description=(
        f"How many items match, counted up to `offset` + {PAGE_COUNT_CAP:,} so that a page "
        "costs the same on ten million rows: when more match, `total` is that bound and "
        "`total_exact` is false (at least this many). Page with `next_offset`."))
    total_exact: bool = Field(description=(
        "True when `total` is the exact count; false when counting stopped at "
        f"`offset` + {PAGE_COUNT_CAP:,} and `total` is a lower bound."))
    limit: int
    offset: int
    next_offset: int | None = Field(description="Where the next page starts; null at the end.")


class IncidentPage(PageOut):
    items: list[IncidentListItem]


class RunPage(PageOut):
    items: list[RunOut]


class ActionPage(PageOut):
    items: list[ActionListItem]


class PauseOut(_Out):
    paused: bool = Field(description="True while no step that leaves the process may start.")
    since: Stamp
    until: Stamp = Field(description="When the pause ends by itself (null: on resume).")
    actor: str | None
    reason: str | None


class MaintenanceOut(_Out):
    id: int
    matchers: list[str]
    starts_at: Time
    ends_at: Time = Field(description="When it ends by itself.")
    created_at: Time
    created_by: str
    reason: str
    ended_at: Stamp = Field(description="When it ended by hand, or lapsed (its ends_at).")
    ended_by: str | None = Field(description="Who ended it; \"ends_at\" when it lapsed.")
    state: str = Field(description="scheduled, active or ended.")


class MaintenanceList(_Out):
    items: list[MaintenanceOut]


class BudgetOut(_Out):
    playbook: str
    scope: str = Field(description="fleet, playbook or host.")
    key: str | None = Field(description="What is counted: `fleet`, the playbook's name, or "
                            "the host (null: a host budget no host has used yet).")
    limit: int = Field(description="Mutating runs allowed per `per_s`.")
    per_s: float
    used: int = Field(description="Mutating runs admitted in the window now.")
    frees_at: Stamp = Field(description="When the oldest counted action leaves the window.")

    @classmethod
    def of(cls, use: BudgetUse) -> Self:
        budget = use.usage.budget
        return cls(playbook=use.playbook, scope=budget.scope, key=use.key,
                   limit=budget.actions, per_s=budget.per_s, used=use.usage.used,
                   frees_at=use.usage.frees_at)


class HostUseOut(_Out):
    host: str
    targets: int = Field(description="Distinct targets acted on within the window.")
    frees_at: Stamp = Field(description="When the oldest counted action leaves the window.")


class HostStormGuardOut(_Out):
    enabled: bool = Field(description="False when AUTOFIX_HOST_STORM_TARGETS is 0.")
    targets: int = Field(description="AUTOFIX_HOST_STORM_TARGETS: distinct targets a host "
                         "may have acted on within the window; one more is a storm.")
    window_s: float = Field(description="AUTOFIX_HOST_STORM_WINDOW_S.")
    hosts: list[HostUseOut]


class HostStormOut(_Out):
    id: int
    host: str
    started_at: Stamp
    until: Stamp = Field(description="No mutating action on the host before then.")
    acted: list[str] = Field(description="Targets acted on in the window before the storm.")
    skipped: list[str] = Field(description="Targets the storm left as they are.")
    incident_id: int | None = Field(description="The storm's AutofixHostStorm incident.")

    @classmethod
    def of(cls, row: HostStorm) -> Self:
        return cls.of_attributes(row, acted=list(row.targets.get("acted") or []),
                                 skipped=list(row.targets.get("skipped") or []))


class BudgetsOut(_Out):
    budgets: list[BudgetOut]
    host_storm: HostStormGuardOut
    host_storms: list[HostStormOut] = Field(description="Host storms in force.")

    @classmethod
    def of(cls, report: Report) -> Self:
        return cls(budgets=[BudgetOut.of(use) for use in report.budgets],
                   host_storm=HostStormGuardOut.of_attributes(
                       report.policy,
                       hosts=[HostUseOut.model_validate(use) for use in report.hosts]),
                   host_storms=[HostStormOut.of(row) for row in report.storms])


class DependentOut(_Out):
    name: str
    id: str
    kind: Literal["network", "compose"] = Field(
        description="network: shares the target's (or a dependent's) network namespace "
        "(network_mode container:); compose: a Compose depends_on label.")
    restart_flag: bool = Field(description="One of its compose depends_on says restart: true.")
    depends_on: list[str] = Field(description="The containers of the chain it depends on.")
    opted_in: bool = Field(description="It carries the opt-in label (autofix.enable=true).")
    would_restart: bool = Field(description="A restart of the target restarts it after "
                                "its parents, under the default `dependents: restart`.")
    left_because: str | None = Field(description="Why it would be left, when it would.")


class DependentsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str | None = Field(None, min_length=1, max_length=63, description=(
        "The Docker host (AUTOFIX_DOCKER_HOSTS) to ask; or name it in the path, "
        "`<host>/<name>` (the slash as is, or %2F). Needed with several hosts."))


class DependentsOut(_Out):
    target: str = Field(description="The target's key: `<host>/<name>` with several Docker "
                        "hosts, else its name.")
    id: str
    backend: str
    host: str | None = Field(None, description="The Docker host asked, when one was named.")
    dependents: list[DependentOut] = Field(description="In restart order: each after all "
                                           "it depends on.")

    @classmethod
    def of(cls, view: DependentsView) -> Self:
        return cls(target=view.key, id=view.target.id, backend=view.backend, host=view.host,
                   dependents=[DependentOut(
                       name=d.name, id=d.id, kind=d.kind, restart_flag=d.restart_flag,
                       depends_on=list(d.depends_on), opted_in=opted_in,
                       would_restart=why is None, left_because=why)
                       for d, opted_in, why in view.dependents])


class AuditEntryOut(_Out):
    id: int
    at: Time
    actor: str
    verb: str
    subject: str
    reason: str


class AuditPage(PageOut):
    items: list[AuditEntryOut]


class PlaybookOut(_Out):
    name: str
    description: str
    matchers: list[str]
    target: str
    on: str
    dry_run: bool
    mode: str = Field(description="auto, approve (a human approves each run) or observe "
                      "(recorded as a dry run).")
    approval_timeout_s: float
    executor: str = Field(description="The backend its runs act through: docker or swarm.")
    cooldown_s: float
    circuit_breaker: dict[str, int | float] = Field(description="max_actions, and its "
                                                     "durations in seconds.")
    require: list[str] = Field(description="PromQL that must each return a result just "
                               "before a run acts (as written, before templating).")
    actions: list[dict[str, Any]]


class PlaybookList(_Out):
    items: list[PlaybookOut]
    version: int | None
    sha256: str | None
    source: str | None


class RunQueued(_Out):
    status: str
    incident_id: int
    run_id: int
    target: str


class BreakerOut(_Out):
    target: str
    state: str
    gauge: int = Field(description="autofix_breaker_state: 0 closed, 1 half-open, 2 open.")
    opened_at: Stamp
    open_until: Stamp
    reopen_count: int
    last_admitted_at: Stamp


class BreakerList(_Out):
    items: list[BreakerOut]


class BreakerResetOut(_Out):
    target: str
    state: str
    actor: str
    reset_by: str = Field(deprecated=True, description="Same as `actor`.")
    reason: str


class ReloadOut(_Out):
    status: str
    version: int | None
    sha256: str
    playbooks: int


class WebhookRecorded(_Out):
    status: str
    notification_id: int
    alerts: int
    new: int
    duplicates: int
    resolved: int
    runs_queued: int
    truncated_alerts: int


class WebhookAccepted(_Out):
    """A notification over AUTOFIX_INGEST_DEFER_ALERTS alerts: stored, filed right after."""

    status: str
    notification_id: int
    alerts: int
    truncated_alerts: int


class Health(_Out):
    status: str


class BackendOut(_Out):
    status: str = Field(description="ok or unreachable.")
    error: str | None = Field(description="Why the probe failed (null when ok).")


class Ready(_Out):
    status: str = Field(description="ready, or not_ready while a backend is unreachable.")
    database: str = Field(description="ok or unreachable (also in backends).")
    unreachable: list[str] = Field(description="The backends that failed their probe (a "
                                   "Docker host of several: `docker/<host>`).")
    backends: dict[str, BackendOut] = Field(
        description="Each required backend: database, docker, swarm (when enabled). "
        "Probed with a 2 s timeout; answers are kept 5 s.")

    @classmethod
    def of(cls, statuses: list[BackendStatus]) -> Self:
        """Not ready while a backend is down; of several Docker hosts (`docker/<host>`),
        only while all are: a host that is down fails only its own runs."""
        down = [status.name for status in statuses if not status.up]
        hosts = [status for status in statuses if status.name.startswith("docker/")]
        tolerated = ({status.name for status in hosts if not status.up}
                     if any(status.up for status in hosts) else set())
        database = next((s for s in statuses if s.name == "database"), None)
        return cls(status="not_ready" if set(down) - tolerated else "ready",
                   database="ok" if database is not None and database.up else "unreachable",
                   unreachable=down,
                   backends={status.name: BackendOut(status="ok" if status.up
                                                     else "unreachable", error=status.error)
                             for status in statuses})


class SlackReply(_Out):
    """Slack ignores it for button clicks; who decided reaches the thread by the outbox."""

    text: str
