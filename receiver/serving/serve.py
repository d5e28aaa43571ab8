"""`autofix serve`: gunicorn with one runner per worker and multiprocess metrics."""

from __future__ import annotations

import gc
import logging
import os
import socket
from typing import Any

from gunicorn.app.base import BaseApplication

from receiver.app import create_app
from receiver.config.settings import Settings
from receiver.config.tls import gunicorn_tls_options
from receiver.domain.redaction import Redactor
from receiver.engine.services import Services
from receiver.runtime.runner import Runner, reconcile_interrupted
from receiver.serving.serve_worker import WholeRequestWorker
from receiver.telemetry.logs import GunicornJsonLogger
from receiver.telemetry.metrics import multiprocess_dir

__all__ = ["serve"]

log = logging.getLogger("autofix.serve")


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any],
                 redactor: Redactor) -> None:
        self._settings = settings
        self._redactor = redactor
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """In each worker, the ones SIGHUP starts included: the Docker hosts file is read
        again; one that no longer validates keeps the hosts the master started with."""
        try:
            settings = self._settings.fleet_reread()
        except ValueError as exc:
            log.error("AUTOFIX_DOCKER_HOSTS not reloaded, the hosts of the start stay",
                      extra={"error": str(exc)})
            settings = self._settings
        return create_app(settings, redactor=self._redactor)


def _post_worker_init(worker: Any) -> None:
    # What the worker built at start (the app, its modules, caches) lives as long as it
    # does: frozen, a full collection no longer walks it. Unfrozen, gen-2 collections took
    # 400-500 ms under load, the webhook's p99. Collected first: frozen garbage stays.
    gc.collect()
    gc.freeze()
    services: Services = worker.wsgi.extensions["autofix"]
    runner = Runner(services)
    runner.start()
    worker.autofix_runner = runner


def _worker_exit(_server: Any, worker: Any) -> None:
    runner: Runner | None = getattr(worker, "autofix_runner", None)
    if runner is not None:
        runner.stop(timeout=25.0)


def _child_exit_hook(services: Services) -> Any:
    def child_exit(_server: Any, worker: Any) -> None:
        """In the master, the moment a worker dies: its runs end `interrupted` now, not
        after the lease (a graceful exit has finished or handed back its runs already)."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
        try:
            interrupted = reconcile_interrupted(
                services, worker=f"{socket.gethostname()}:{worker.pid}")
        except Exception:  # the lease still reconciles them; the master must not die
            log.exception("could not reconcile the runs of a dead worker")
            return
        finally:
            services.database.dispose()  # no connection may leak into the next fork
        if interrupted:
            log.warning("reconciled the runs of a dead worker",
                        extra={"pid": worker.pid, "run_ids": interrupted})

    return child_exit


def _control_socket() -> dict[str, Any]:
    """gunicorn's control socket defaults to one fixed path per user, shared by every
    `autofix serve` on the host: give each instance its own, in its metrics directory (which
    it owns), or none at all."""
    from gunicorn.config import KNOWN_SETTINGS

    if "control_socket" not in {setting.name for setting in KNOWN_SETTINGS}:
        return {}  # an older gunicorn, without a control socket
    path = multiprocess_dir()
    if path is None:
        return {"control_socket_disable": True}
    return {"control_socket": os.path.join(path, "gunicorn.ctl")}


def serve(settings: Settings, bind: str, workers: int, services_for_reconcile: Services) -> None:
    if settings.is_sqlite and workers > 1:
        log.warning("SQLite allows one writer: running 1 worker instead of %d", workers)
        workers = 1
    interrupted = reconcile_interrupted(services_for_reconcile, host=socket.gethostname())
    if interrupted:
        log.warning("reconciled runs interrupted by the last shutdown",
                    extra={"run_ids": interrupted})
    services_for_reconcile.database.dispose()
    options = {
        "bind": bind, "workers": workers, "worker_class": WholeRequestWorker, "threads": 8,
        "timeout": 60, "graceful_timeout": 30, "keepalive": 5,
        "accesslog": "-" if settings.access_log else None, "errorlog": "-",
        "loglevel": settings.log_level.lower(), "logger_class": GunicornJsonLogger,
        **_control_socket(), **gunicorn_tls_options(settings),
        "post_worker_init": _post_worker_init, "worker_exit": _worker_exit,
        "child_exit": _child_exit_hook(services_for_reconcile), "proc_name": "autofix",
    }
    _Gunicorn(settings, options, services_for_reconcile.redactor).run()
