"""autofix's own metrics. Built per app with its own registry; multiprocess-safe under gunicorn."""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.registry import Collector

from receiver.domain.version import build_version

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_ACTION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# Skip reasons exported at 0 from start, so dashboards and alerts see them before they happen.
SKIP_REASONS_SHOWN = ("paused", "maintenance", "cooldown", "breaker_open",
                      "target_not_allowed", "operator_stop", "target_paused", "state_unknown",
                      "precondition_failed", "host_storm", "budget_exhausted", "bad_update",
                      "image_unknown")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.notifications = Counter(
            "autofix_notifications_received_total",
            "Webhook notifications received, by group status.", ["status"], registry=r)
        self.alerts = Counter(
            "autofix_alerts_received_total", "Alerts received, by alert status.", ["status"],
            registry=r)
        self.duplicates = Counter(
            "autofix_alert_duplicates_total",
            "Alerts that repeated an occurrence already recorded.", registry=r)
        self.deferred = Counter(
            "autofix_deferred_notifications_total",
            "Large notifications acknowledged before their alerts were filed, by outcome: "
            "received, filed, failed.", ["outcome"], registry=r)
        self.actions = Counter(
            "autofix_actions_total", "Actions by playbook, action and outcome.",
            ["playbook", "action", "outcome"], registry=r)
        self.action_duration = Histogram(
            "autofix_action_duration_seconds", "Time an action took.", ["action"],
            buckets=_ACTION_BUCKETS, registry=r)
        self.webhook_latency = Histogram(
            "autofix_webhook_request_duration_seconds", "Webhook request latency by status code.",
            ["code"], buckets=_WEBHOOK_BUCKETS, registry=r)
        self.notification_sends = Counter(
            "autofix_notification_sends_total",
            "Notification send attempts by channel and outcome (sent, retried, failed).",
            ["channel", "outcome"], registry=r)
        self.backend_up = Gauge(
            "autofix_backend_up", "1 while a backend the receiver needs answers its probe "
            "(database, docker, swarm), else 0; `host` names the Docker host (AUTOFIX_DOCKER_HOSTS,"
            " `local` for the one host), empty for the others.", ["backend", "host"], registry=r,
            multiprocess_mode="mostrecent")
        self.build_info = Gauge(
            "autofix_build_info", "Always 1; the version label says which autofix runs.",
            ["version"], registry=r, multiprocess_mode="max")
        self.build_info.labels(build_version()).set(1)
        self.runs_skipped = Counter(
            "autofix_runs_skipped_total",
            "Runs a guard stopped before they acted, by reason (docs/runbooks.md#skip-reasons).",
            ["reason"], registry=r)
        for reason in SKIP_REASONS_SHOWN:  # a rate() over zero beats a missing series
            self.runs_skipped.labels(reason)
        self.rollbacks = Counter(
            "autofix_rollbacks_total",
            "Rollbacks of a bad update (on_new_image: rollback) by outcome: succeeded, failed, "
            "refused (a guard stopped it, or the backend cannot roll back).", ["outcome"],
            registry=r)
        for outcome in ("succeeded", "failed", "refused"):
            self.rollbacks.labels(outcome)
        self.host_storms = Counter(
            "autofix_host_storms_total",
            "Host storms begun: too many targets of one host acted on within the window.",
            registry=r)
        self.database_errors = Counter(
            "autofix_database_errors_total", "Database errors by operation.", ["operation"],
            registry=r)
        self.periodic_overruns = Counter(
            "autofix_periodic_job_overruns_total",
            "Periodic jobs (scheduler.py) that ran longer than their deadline, by job.",
            ["job_name"], registry=r)  # not `job`: Prometheus would rename it exported_job
        self.periodic_errors = Counter(
            "autofix_periodic_job_errors_total",
            "Periodic jobs that raised (the lane goes on), by job.", ["job_name"], registry=r)
        # Computed at scrape time from the database (runtime/db_gauges.py): open incidents, queue
        # depth, approvals, pause, breakers, deferred notifications.
        self.database_gauges: Collector | None = None
        self._invalidate: Callable[[], None] | None = None

    def attach(self, gauges: Collector, invalidate: Callable[[], None]) -> None:
        """The database gauges of the app using these metrics (one app at a time), and how to
        make their next scrape read again (runtime/db_gauges.py owns both)."""
        if self.database_gauges is not None:
            self.registry.unregister(self.database_gauges)
        self.database_gauges = gauges
        self._invalidate = invalidate
        self.registry.register(gauges)

    def database_changed(self) -> None:
        """This process changed a database gauge's truth: its next scrape reads again."""
        if self._invalidate is not None:
            self._invalidate()

    def exposition(self) -> bytes:
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        # Per scrape, as the client_python multiprocess docs prescribe.
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        if self.database_gauges is not None:  # read by the process answering the scrape
            registry.register(self.database_gauges)
        return generate_latest(registry)
