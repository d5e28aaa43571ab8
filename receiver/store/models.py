"""Tables. Every decision that must survive a restart or be shared by workers lives here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Action", "AlertGroup", "AuditEntry", "Base", "Breaker", "ConfigVersion", "EventsFollower",
    "EvidenceRecord", "HostStorm", "ImageHistory", "Incident", "MaintenanceWindow",
    "Notification", "Pause", "Run", "SlackRequest", "TargetTransition", "utcnow",
]

JsonType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way out, whatever the backend stores (SQLite keeps naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JsonType}


class Notification(Base):
    """One webhook POST as received, for audit; for a deferred one, the work still to do."""

    __tablename__ = "notifications"
    __table_args__ = (
        # Only the few pending rows: the drainer's lookup, never a cost at ingest.
        Index("ix_notifications_pending", "id",
              postgresql_where=text("ingest_state = 'pending'"),
              sqlite_where=text("ingest_state = 'pending'")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    group_key: Mapped[str] = mapped_column(Text)
    receiver: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16))
    alert_count: Mapped[int] = mapped_column(Integer)
    truncated_alerts: Mapped[int] = mapped_column(Integer, default=0)
    external_url: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column()
    # None: its alerts were filed as it was received. A large notification is acknowledged
    # once stored and filed by a worker later (receiver/incidents/filing.py): pending, filed,
    # failed.
    ingest_state: Mapped[str | None] = mapped_column(String(16))
    ingest_error: Mapped[str | None] = mapped_column(Text)
    # Filing attempts begun, and when the latest began (its lease): a notification whose
    # filing never ends (the worker killed each time) is failed, not retried forever.
    ingest_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ingest_claimed_at: Mapped[datetime | None] = mapped_column()


class Incident(Base):
    """One alert occurrence: (fingerprint, startsAt). The unique constraint is the dedup key."""

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("fingerprint", "starts_at", name="uq_incident_occurrence"),
        Index("ix_incidents_status_first_seen", "status", "first_seen"),
        # Time ranges (the dashboards, `since`): the panels' columns ride along on
        # PostgreSQL, so a range is read from the index alone (migration 0013).
        Index("ix_incidents_first_seen", "first_seen",
              postgresql_include=["status", "alertname", "container"]),
        Index("ix_incidents_resolved_at", "resolved_at",
              postgresql_include=["alertname", "time_to_resolve_s"]),
        # A dashboard variable's "any incident of this value in the range": one probe.
        Index("ix_incidents_alertname_first_seen", "alertname", "first_seen"),
        Index("ix_incidents_container_first_seen", "container", "first_seen"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column()
    alertname: Mapped[str] = mapped_column(String(255))
    severity: Mapped[str] = mapped_column(String(64), default="")
    container: Mapped[str] = mapped_column(String(255), default="")
    target: Mapped[str | None] = mapped_column(String(255), index=True)
    playbook: Mapped[str | None] = mapped_column(String(255))
    labels: Mapped[dict[str, Any]] = mapped_column()
    annotations: Mapped[dict[str, Any]] = mapped_column()
    generator_url: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))  # lifecycle.IncidentStatus
    notification_count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column()
    time_to_resolve_s: Mapped[float | None] = mapped_column(Float)
    resolved_unseen: Mapped[bool] = mapped_column(default=False)  # resolution of an unseen firing
    escalated_at: Mapped[datetime | None] = mapped_column()
    escalation_reason: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(String(16), default="alert")  # alert or manual
    acknowledged_at: Mapped[datetime | None] = mapped_column()
    acknowledged_by: Mapped[str | None] = mapped_column(String(255))
    closed_at: Mapped[datetime | None] = mapped_column()
    closed_by: Mapped[str | None] = mapped_column(String(255))
    close_reason: Mapped[str | None] = mapped_column(Text)
    # When autofix tries again on its own while the alert keeps firing (CrashLoopBackOff).
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    # What the newest evidence says happened (domain/classify.py), e.g. oom_killed.
    classification: Mapped[str | None] = mapped_column(String(32))


class Run(Base):
    """One playbook execution for one incident; the unit the workers claim."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_status_target", "status", "target"),
                      Index("ix_runs_status_lane", "status", "lane"),
                      # The host storm guard and host budgets count by (host, admitted_at).
                      Index("ix_runs_host_admitted", "host", "admitted_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"),
                                             index=True)
    playbook: Mapped[str] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(String(255))
    # alert, manual, retry, or dependent (engine/dependents.py: restarts one container that
    # depends on an earlier run's target, carrying the rest of the chain in `chain`)
    trigger: Mapped[str] = mapped_column(String(16))
    alert_status: Mapped[str] = mapped_column(String(16), default="firing")
    reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32), default="queued")  # lifecycle.RunStatus
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    admitted_at: Mapped[datetime | None] = mapped_column(index=True)  # passed every guard
    # The host its target lives on, set when a mutating run is admitted (NULL otherwise):
    # what action budgets and the host storm guard count.
    host: Mapped[str | None] = mapped_column(String(255))
    # Among several Docker hosts (AUTOFIX_DOCKER_HOSTS), the one its target is on (its
    # `target` is then `<docker_host>/<name>`); NULL with one host.
    docker_host: Mapped[str | None] = mapped_column(String(63))
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    worker: Mapped[str | None] = mapped_column(String(255))
    dry_run: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    config_version: Mapped[int | None] = mapped_column(Integer)  # the playbooks it was planned with
    # "act": may change a target (global cap, one per target, priority); "light": only
    # notifies or checks, and never waits behind or delays an "act" run.
    lane: Mapped[str] = mapped_column(String(8), default="act")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    current_step: Mapped[int | None] = mapped_column(Integer)  # the step under way, for reconcile
    # Approvals (playbook mode `approve`): the deadline, and the one decision a human made.
    approval_due_at: Mapped[datetime | None] = mapped_column(index=True)
    decided_at: Mapped[datetime | None] = mapped_column()
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decision: Mapped[str | None] = mapped_column(String(16))  # approved, denied, expired
    decision_comment: Mapped[str | None] = mapped_column(Text)
    # A run of trigger `dependent` (engine/dependents.py): the container it restarts after
    # its parent, the ones still to restart after it, and the ones left (why), as JSON.
    chain: Mapped[dict[str, Any] | None] = mapped_column()


class Action(Base):
    """One step of a run (or one guard that stopped it), with its outcome."""

    __tablename__ = "actions"
    __table_args__ = (
        Index("ix_actions_target_started", "target", "started_at"),
        # Time ranges (the dashboards, `since`), as on incidents (migration 0013); the
        # annotations read one outcome's range.
        Index("ix_actions_started_at", "started_at", postgresql_include=["outcome", "action"]),
        Index("ix_actions_outcome_started_at", "outcome", "started_at",
              postgresql_include=["target"]),
        # The dashboards' host variable: one probe per Docker host (migration 0017).
        Index("ix_actions_docker_host_started_at", "docker_host", "started_at"),
        # One row per step of a run: a retried write after a database blip is not a second row.
        UniqueConstraint("run_id", "step", name="uq_actions_run_step"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"),
                                             index=True)
    playbook: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    docker_host: Mapped[str | None] = mapped_column(String(63))  # as runs.docker_host
    params: Mapped[dict[str, Any]] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(16))  # succeeded, failed, skipped, dry_run
    reason: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    duration_s: Mapped[float | None] = mapped_column(Float)
    trigger: Mapped[str] = mapped_column(String(16))
    step: Mapped[int | None] = mapped_column(Integer)  # -1 for the guard that stopped the run


class Breaker(Base):
    """Circuit-breaker state per target."""

    __tablename__ = "breakers"
    target: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="closed")  # closed, open, half_open
    opened_at: Mapped[datetime | None] = mapped_column()
    open_until: Mapped[datetime | None] = mapped_column()
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    last_admitted_at: Mapped[datetime | None] = mapped_column()
    reset_at: Mapped[datetime | None] = mapped_column()  # admissions before it do not count
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who did what by hand: breaker resets, manual runs, reloads."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    verb: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text, default="")


class Pause(Base):
    """One period of the kill switch: no step that leaves the process starts while a pause
    is in force (`active` is 1, and `until`, when set, is still ahead)."""

    __tablename__ = "pauses"
    __table_args__ = (UniqueConstraint("active", name="uq_pauses_active"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    paused_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    paused_by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    until: Mapped[datetime | None] = mapped_column()
    resumed_at: Mapped[datetime | None] = mapped_column()
    resumed_by: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[int | None] = mapped_column(Integer)  # 1 in force, NULL ended


class MaintenanceWindow(Base):
    """A planned maintenance: runs whose alert labels or target match every matcher skip
    (reason `maintenance`) while `starts_at <= now < ends_at` and it was not ended by hand.
    `ended_by` is "ends_at" when it lapsed (set once, when its held runs were queued again)."""

    __tablename__ = "maintenance_windows"
    id: Mapped[int] = mapped_column(primary_key=True)
    matchers: Mapped[list[str]] = mapped_column(JsonType)
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    ended_at: Mapped[datetime | None] = mapped_column()
    ended_by: Mapped[str | None] = mapped_column(String(255))


class SlackRequest(Base):
    """A Slack interaction request already acted on, by its signature: a replay is refused."""

    __tablename__ = "slack_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    signature: Mapped[str] = mapped_column(String(128), unique=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ConfigVersion(Base):
    """Every playbooks file that validated, so all workers switch to the same one on reload."""

    __tablename__ = "config_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    loaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)


class AlertGroup(Base):
    """One Alertmanager notification group (receiver + groupKey), as its latest notification
    described it: the group's one message per channel is rendered from this row."""

    __tablename__ = "alert_groups"
    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256(receiver, key)
    group_key: Mapped[str] = mapped_column(Text)
    receiver: Mapped[str] = mapped_column(String(1024))
    group_labels: Mapped[dict[str, Any]] = mapped_column()
    external_url: Mapped[str] = mapped_column(Text, default="")
    firing: Mapped[int] = mapped_column(Integer, default=0)
    resolved: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column()  # top alertnames, a sample of alerts
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Outbox(Base):
    """One notification for one channel: written with the event, sent by a background thread.

    Rows of one (incident, channel) are sent in id order; a Slack thread's root is the
    first row not given up on, and its `slack_ts` is what every later row replies to.
    """

    __tablename__ = "notification_outbox"
    __table_args__ = (
        Index("ix_outbox_status_due", "status", "next_attempt_at"),
        Index("ix_outbox_incident_channel", "incident_id", "channel", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    # An incident's own message, or (group_id set, incident_id NULL) a group's message.
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"))
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("alert_groups.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(32))  # slack, slack_webhook, webhook
    kind: Mapped[str] = mapped_column(String(32))  # the event kind
    details: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the row may next be claimed; a claim pushes it out by a lease, so a sender that
    # dies mid-send leaves the row to be retried by another one.
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    slack_ts: Mapped[str | None] = mapped_column(String(64))  # ts Slack gave this message
    thread_ts: Mapped[str | None] = mapped_column(String(64))  # the thread it was posted in


class EvidenceRecord(Base):
    """What a target looked like before an action changed it (redacted, size-capped)."""

    __tablename__ = "evidence"
    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"),
                                             index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                               index=True)
    step: Mapped[int | None] = mapped_column(Integer)  # the step it preceded or was
    source: Mapped[str] = mapped_column(String(16))  # implicit, step, guard
    target: Mapped[str] = mapped_column(String(255))
    captured_at: Mapped[datetime] = mapped_column(default=utcnow)
    took_s: Mapped[float] = mapped_column(Float)
    classification: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column()  # state, stats, expression, errors, cut
    logs: Mapped[str] = mapped_column(Text, default="")
    size_bytes: Mapped[int] = mapped_column(Integer)


class EventsFollower(Base):
    """One Docker daemon's events follower: who holds the lease (one follower per daemon,
    whatever the number of workers and receivers), and the window it has followed without a
    break. A reconnect starts a new window: events lost in between are never assumed
    absent."""

    __tablename__ = "events_followers"
    daemon_id: Mapped[str] = mapped_column(String(128), primary_key=True)  # `docker info` ID
    holder: Mapped[str] = mapped_column(String(255))
    lease_until: Mapped[datetime] = mapped_column()
    covered_since: Mapped[datetime | None] = mapped_column()  # the daemon's clock
    covered_until: Mapped[datetime | None] = mapped_column()  # last moment known followed
    windows: Mapped[int] = mapped_column(Integer, default=0)  # windows started, ever


class TargetTransition(Base):
    """A container's last state transition the follower saw, and its cause, since its last
    start: what tells an operator's stop from a crash once dockerd forgot the events."""

    __tablename__ = "target_transitions"
    container_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    daemon_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255), index=True)
    action: Mapped[str] = mapped_column(String(16))  # start, kill, stop, die, oom, pause...
    cause: Mapped[str] = mapped_column(String(16))  # running, operator, crash, oom, paused...
    detail: Mapped[str] = mapped_column(Text, default="")  # who/what/when, as Docker says
    at: Mapped[datetime] = mapped_column()  # the event's time (the daemon's clock)
    started_at: Mapped[datetime | None] = mapped_column()  # the last start seen
    died_at: Mapped[datetime | None] = mapped_column()  # the die since that start
    exit_code: Mapped[int | None] = mapped_column(Integer)
    operator_request: Mapped[str | None] = mapped_column(Text)  # kill/stop since the start
    # The window (covered_since) the last start was seen in, and the last event's: equal
    # means every event since that start was seen.
    start_window: Mapped[datetime | None] = mapped_column()
    window: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class HostStorm(Base):
    """Too many targets of one host acted on at once: while `until` is ahead, no mutating
    run on that host is admitted (receiver/engine/host_storm.py). Shared by every worker."""

    __tablename__ = "host_storms"
    __table_args__ = (Index("ix_host_storms_host_until", "host", "until"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(index=True)
    until: Mapped[datetime] = mapped_column()
    # {"acted": targets admitted in the window, "skipped": targets the storm held back}
    targets: Mapped[dict[str, Any]] = mapped_column()
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"))


class ImageHistory(Base):
    """Each container autofix saw, once: the image it was created from. A container created
    from another image than its predecessor under the same name, a moment ago, is a bad
    update's suspect (receiver/engine/new_image.py); the history starts when autofix first
    sees a container (the events follower, the inventory, a run)."""

    __tablename__ = "image_history"
    __table_args__ = (Index("ix_image_history_name_created", "name", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    container_id: Mapped[str] = mapped_column(String(64), unique=True)
    image_id: Mapped[str] = mapped_column(String(128))  # sha256:...
    image_ref: Mapped[str] = mapped_column(String(512))  # what it was run as, e.g. app:v2
    created_at: Mapped[datetime] = mapped_column()  # the container's creation (daemon clock)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
