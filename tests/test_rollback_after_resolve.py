"""A rollback's outcome reaches a human even when the alert resolved while it ran (review
of #31, finding 1): the incident goes resolved → escalated, with the `escalated` event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from receiver.runtime.image_inventory import take_inventory
from receiver.runtime.runner import Runner
from receiver.store.models import Incident, Outbox
from tests.conftest import webhook_headers
from tests.harness.memory_executor import MemoryExecutor
from tests.payloads import alert, notification

V2 = "sha256:" + "2" * 64
PLAYBOOK = """
playbooks:
  - name: fix
    matchers: ['alertname="TargetDown"']
    cooldown: 0s
    on_new_image: rollback
    actions:
      - restart: {}
"""


def rows(app: Any, model: Any) -> list[Any]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def test_a_rollback_verified_after_the_alert_resolved_still_escalates(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    executor = MemoryExecutor()
    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOK)
    app = app_factory(db_url, playbooks=path, executor=executor,
                      outbound_webhook_url="http://127.0.0.1:9/hook")  # events recorded
    svc = app.extensions["autofix"]
    executor.add("web")  # seen on V1 by the inventory, then recreated from V2 and failing
    take_inventory(svc.database, list(svc.executors), "autofix.enable", svc.now)
    executor.recreate("web", V2, "app:v2", datetime.now(UTC) - timedelta(minutes=3),
                      status="running")
    starts = datetime.now(UTC) - timedelta(minutes=1)
    client = app.test_client()

    def post(status: str) -> None:
        body = notification([alert({"container": "web"}, status=status, starts_at=starts,
                                   ends_at=starts + timedelta(minutes=2)
                                   if status == "resolved" else None)])
        assert client.post("/webhook/alertmanager", json=body,
                           headers=webhook_headers()).status_code == 200

    rollback = executor.rollback_image

    def resolving(*args: Any, **kwargs: Any) -> Any:
        done = rollback(*args, **kwargs)
        post("resolved")  # the recreated container is healthy: Prometheus resolves it
        return done

    executor.rollback_image = resolving  # type: ignore[method-assign]
    post("firing")
    runner = Runner(app.extensions["autofix"])
    while runner.run_once() is not None:
        pass
    [incident] = rows(app, Incident)
    assert incident.status == "escalated" and incident.resolved_at is not None
    assert "autofix rolled back web" in (incident.escalation_reason or "")
    assert [o.details["reason"] for o in rows(app, Outbox) if o.kind == "escalated"
            and "rolled back" in str(o.details.get("reason"))]
