"""create_app: builds the services, registers the views, maps errors to HTTP once."""

from __future__ import annotations

import logging
import re
import time

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from receiver.actions.builtin import build_registry
from receiver.api import (
    budgets,
    control,
    health,
    incidents,
    maintenance,
    playbooks,
    queries,
    runs,
    slack,
    targets,
    webhook,
)
from receiver.api.auth import install_auth
from receiver.api.openapi import blueprint as openapi_blueprint
from receiver.api.openapi import routes as documented_routes
from receiver.config.settings import Settings
from receiver.domain.errors import AutofixError, BadRequest, Conflict
from receiver.domain.redaction import Redactor
from receiver.engine.services import Services
from receiver.executor import Executor
from receiver.executor.registry import Executors, build_executors, playbook_backends
from receiver.notify import Notifier, OutboxNotifier, build_notifier
from receiver.runtime.db_gauges import DatabaseGauges
from receiver.store.config_store import ConfigStore
from receiver.store.engine import Database
from receiver.store.lifecycle import IngestState
from receiver.telemetry.metrics import Metrics
from receiver.telemetry.readiness import Readiness

__all__ = ["create_app"]

log = logging.getLogger("autofix.app")
# A query value decodes to NUL only from a raw NUL or %00: without either, the query is
# not parsed for the check (most requests, the webhook's included, have none).
_MAY_HOLD_NUL = re.compile(rb"\x00|%00")


def create_app(settings: Settings | None = None, *, executor: Executor | None = None,
               notifier: Notifier | None = None, metrics: Metrics | None = None,
               swarm_executor: Executor | None = None,
               redactor: Redactor | None = None,
               hosts: dict[str, Executor] | None = None) -> Flask:
    """`executor` replaces the Docker backend, `swarm_executor` the Swarm one (when
    AUTOFIX_SWARM_ENABLED); by default both are built from the settings. `redactor` is the
    one every outgoing text passes through (the process's logs share it); by default it is
    built from AUTOFIX_REDACT_PATTERNS. `hosts` replaces the Docker hosts' executors, by
    name (AUTOFIX_DOCKER_HOSTS)."""
    settings = settings or Settings()
    metrics = metrics or Metrics()
    database = Database(settings.database_url,
                        on_error=lambda op: metrics.database_errors.labels(op).inc())
    registry = build_registry()
    executors = build_executors(settings, docker=executor, swarm=swarm_executor, hosts=hosts)
    services = Services(
        settings=settings, database=database, registry=registry,
        config=ConfigStore(settings.playbooks, database, registry.params_models(),
                           backends=playbook_backends(settings, registry.backend_limits())),
        executors=executors, notifier=notifier or build_notifier(settings), metrics=metrics,
        readiness=_readiness(database, executors, metrics),
        redactor=redactor or Redactor(settings.redact_patterns),
    )
    if isinstance(services.notifier, OutboxNotifier):
        services.notifier.clock = services.now  # rows stamped on the clock the sender reads
    app = Flask("autofix")
    # One byte more than the limit: a chunked body without Content-Length is cut at this
    # length, and json_body can only tell it was too large if it may read past the limit.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.extensions["autofix"] = services
    for blueprint in (webhook.blueprint, queries.blueprint, incidents.blueprint,
                      playbooks.blueprint, control.blueprint, maintenance.blueprint,
                      runs.blueprint, slack.blueprint, budgets.blueprint, targets.blueprint,
                      health.blueprint,
                      openapi_blueprint):
        app.register_blueprint(blueprint)
    documented_routes(app)  # a view without @operation fails here, not in the document
    _register_error_handlers(app)
    _register_webhook_timing(app, metrics)
    install_auth(app, settings)
    gauges = DatabaseGauges(database, services.now)
    metrics.attach(gauges, gauges.invalidate)
    _initialise_failure_series(services)
    return app


def _readiness(database: Database, executors: Executors, metrics: Metrics) -> Readiness:
    """The database and every enabled backend: each is required (/readyz is 503 without it)."""

    def database_probe() -> None:
        if not database.ping():
            raise ConnectionError("the database does not answer SELECT 1")

    probes = {"database": database_probe}
    for name in sorted(executors.enabled()):
        if name == "docker" and executors.multi_host:  # one probe per host: docker/<host>
            for host, executor in executors.host_executors().items():
                probes[f"docker/{host}"] = executor.ping
            continue
        probes[name] = executors.get(name).ping
    return Readiness(probes, metrics)


def _initialise_failure_series(services: Services) -> None:
    """Export failure counters at 0, so an alert's increase() sees the very first failure."""
    for playbook in services.config.current.playbooks.playbooks:
        for step in playbook.actions:
            services.metrics.actions.labels(playbook.name, step.action, "failed")
    services.metrics.deferred.labels(IngestState.FAILED)


def _error_response(error: AutofixError) -> tuple[Response, int]:
    response = jsonify(error.to_dict())
    if isinstance(error, Conflict) and error.retry_after_s is not None:
        response.headers["Retry-After"] = str(max(1, int(error.retry_after_s + 0.999)))
    return response, error.status


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(AutofixError)
    def _autofix(error: AutofixError) -> tuple[Response, int]:
        return _error_response(error)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(error: RequestEntityTooLarge) -> tuple[Response, int]:
        return jsonify({"error": "payload_too_large",
                        "message": "body is over AUTOFIX_MAX_BODY_BYTES"}), 413

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> tuple[Response, int]:
        code = error.code or 500
        return jsonify({"error": (error.name or "error").lower().replace(" ", "_"),
                        "message": error.description}), code

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[Response, int]:
        # Logged with its trace; the client gets no trace, only an id to look it up.
        log.exception("unhandled error", extra={"path": request.path})
        return jsonify({"error": "internal_error",
                        "message": "unexpected error; see the receiver's log"}), 500


def _register_webhook_timing(app: Flask, metrics: Metrics) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()
        # NUL cannot be stored or compared by PostgreSQL; refuse it in the URL up front.
        if "\x00" in request.path or (_MAY_HOLD_NUL.search(request.query_string)
                                      and any("\x00" in v for v in request.args.values())):
            raise BadRequest("the URL must not contain NUL characters")

    @app.after_request
    def _observe(response: Response) -> Response:
        if request.path == "/webhook/alertmanager" and "started" in g:
            metrics.webhook_latency.labels(str(response.status_code)).observe(
                time.perf_counter() - g.started)
        return response
