"""Everything a request or a run needs, built once per app in create_app."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from receiver.actions.registry import ActionRegistry
from receiver.config.settings import Settings
from receiver.domain.redaction import Redactor
from receiver.engine.host_calls import HostCalls
from receiver.executor import Executor
from receiver.executor.registry import Executors
from receiver.notify import Notifier
from receiver.playbooks.config import Playbook
from receiver.playbooks.templating import TemplateRenderer
from receiver.store.config_store import ConfigStore
from receiver.store.engine import Database
from receiver.store.models import utcnow
from receiver.telemetry.metrics import Metrics
from receiver.telemetry.readiness import Readiness

__all__ = ["Services", "worker_id"]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Services:
    settings: Settings
    database: Database
    registry: ActionRegistry
    config: ConfigStore
    executors: Executors
    notifier: Notifier
    metrics: Metrics
    readiness: Readiness  # /readyz and autofix_backend_up
    renderer: TemplateRenderer = field(default_factory=TemplateRenderer)
    redactor: Redactor = field(default_factory=Redactor)  # evidence, before it is stored
    wakeup: threading.Event = field(default_factory=threading.Event)
    ingest_wakeup: threading.Event = field(default_factory=threading.Event)  # deferred filing
    host_calls: HostCalls = field(default_factory=HostCalls)  # requests waiting per host
    # Injectable: tests move time on instead of sleeping through cooldowns and breakers.
    clock: Callable[[], datetime] = utcnow

    def now(self) -> datetime:
        """`clock()` looked up at each call: a component handed `services.now` follows a
        clock swapped in after it was built."""
        return self.clock()

    def executor_for(self, playbook: Playbook, host: str | None = None) -> Executor:
        """The backend a playbook (and so each of its runs) acts through; for docker, the
        executor of `host` (a Subject's fleet_host; None: the one host)."""
        return self.executors.get(playbook.executor, host)
