"""An in-process app on the memory executor and an injected clock (tests/harness/clock.py),
with the notify-and-restart playbooks most lifecycle tests use, and `fire` for its alerts."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import webhook_headers
from tests.harness.clock import T0, Clock
from tests.harness.memory_executor import MemoryExecutor
from tests.payloads import alert, notification

NOTIFY_AND_RESTART = """
playbooks:
  - name: restart-on-down
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
    circuit_breaker: {max_actions: 3, window: 10m, open_for: 1m, open_for_max: 4m,
                      reset_after: 30m}
    actions:
      - restart: {timeout_s: 5}
      - wait_healthy: {timeout_s: 0.2, running_for_s: 0}
  - name: notify-unmatched
    matchers: ['alertname=~".+"']
    target: "{{ labels.alertname }}"
    actions:
      - notify: {}
"""


def make_app(app_factory: Any, db_url: str, tmp_path: Path, text: str = NOTIFY_AND_RESTART,
             **settings: Any) -> tuple[Any, MemoryExecutor, Clock]:
    clock = Clock()
    executor = MemoryExecutor(clock=clock)
    path = tmp_path / f"playbooks-{hashlib.sha256(text.encode()).hexdigest()[:6]}.yml"
    path.write_text(text)
    app = app_factory(db_url, playbooks=path, executor=executor, **settings)
    app.extensions["autofix"].clock = clock
    return app, executor, clock


def fire(client: Any, labels: dict[str, str], status: str = "firing",
         starts: datetime = T0 - timedelta(minutes=1)) -> Any:
    body = notification([alert(labels, status=status, starts_at=starts,
                               ends_at=starts + timedelta(minutes=2)
                               if status == "resolved" else None)])
    response = client.post("/webhook/alertmanager", json=body, headers=webhook_headers())
    assert response.status_code == 200, response.json
    return response.json
