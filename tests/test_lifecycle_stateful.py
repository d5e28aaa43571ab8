"""A hypothesis state machine drives ingest (firing, repeats, resolved), manual runs,
acknowledge/close, breaker resets and retries while four runner threads execute runs, on
PostgreSQL. A trigger records every status change the database sees, so the check covers
writes from any code path, not only the lifecycle module's own.

Invariants: no transition outside the lifecycle table; an occurrence Alertmanager resolved
has a `resolved` incident; every run reaches a terminal state.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import text

from receiver.engine.retries import queue_due_retries
from receiver.runtime.runner import Runner
from receiver.store.lifecycle import INCIDENT_TRANSITIONS, RUN_TRANSITIONS
from receiver.store.migrate import upgrade
from tests.conftest import api_headers, make_settings, webhook_headers
from tests.harness.memory_executor import MemoryExecutor
from tests.payloads import alert, notification

pytestmark = pytest.mark.slow

ALLOWED = {("incidents", src, t.to) for t in INCIDENT_TRANSITIONS.values()
           for src in t.allowed_from}
ALLOWED |= {("runs", src, t.to) for t in RUN_TRANSITIONS.values() for src in t.allowed_from}
# A notify-only playbook's incident is inserted closed (lifecycle.closed_on_arrival).
INITIAL = {("incidents", "open"), ("incidents", "resolved"), ("incidents", "closed"),
           ("runs", "queued")}

PLAYBOOKS = """
playbooks:
  - name: restart-on-down
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
    circuit_breaker: {max_actions: 2, window: 10m, open_for: 1s, open_for_max: 2s,
                      reset_after: 5s}
    actions:
      - restart: {timeout_s: 1}
      - wait_healthy: {timeout_s: 0.05, running_for_s: 0}
  - name: notify-unmatched
    matchers: ['alertname=~".+"']
    target: "{{ labels.alertname }}"
    actions:
      - notify: {}
"""

STATUS_LOG = """
CREATE TABLE status_log (entity text, old text, new text);
CREATE FUNCTION log_status() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO status_log VALUES (TG_TABLE_NAME, NULL, NEW.status);
  ELSIF OLD.status IS DISTINCT FROM NEW.status THEN
    INSERT INTO status_log VALUES (TG_TABLE_NAME, OLD.status, NEW.status);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER incidents_status AFTER INSERT OR UPDATE ON incidents
  FOR EACH ROW EXECUTE FUNCTION log_status();
CREATE TRIGGER runs_status AFTER INSERT OR UPDATE ON runs
  FOR EACH ROW EXECUTE FUNCTION log_status();
"""

CONTAINERS = ("c0", "c1", "c2")
T_START = datetime.now(UTC) - timedelta(hours=1)


def make_machine(postgres: Any, tmp_path: Any) -> type[RuleBasedStateMachine]:
    playbooks = tmp_path / "playbooks.yml"
    playbooks.write_text(PLAYBOOKS)

    class Lifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            from receiver.app import create_app

            url = postgres.create_database()
            upgrade(url)
            self.executor = MemoryExecutor(restart_delay_s=0.01)
            for name in CONTAINERS:
                self.executor.add(name)
            self.app = create_app(make_settings(
                url, playbooks=playbooks, runner_threads=4, runner_poll_s=0.01,
                max_concurrent_runs=4), executor=self.executor)
            self.services = self.app.extensions["autofix"]
            with self.services.database.session() as session:
                session.execute(text(STATUS_LOG))
            self.client = self.app.test_client()
            self.resolved: set[tuple[str, int]] = set()
            self.runner = Runner(self.services)
            self.runner.start()

        def _post(self, name: str, occurrence: int, status: str) -> None:
            starts = T_START + timedelta(minutes=occurrence)
            body = notification([alert(
                {"container": name}, status=status, starts_at=starts,
                ends_at=datetime.now(UTC) if status == "resolved" else None)])
            response = self.client.post("/webhook/alertmanager", json=body,
                                        headers=webhook_headers())
            assert response.status_code == 200, response.json
            if status == "resolved":
                self.resolved.add((name, occurrence))

        @rule(name=st.sampled_from(CONTAINERS), occurrence=st.integers(0, 3))
        def fire(self, name: str, occurrence: int) -> None:
            self._post(name, occurrence, "firing")

        @rule(name=st.sampled_from(CONTAINERS), occurrence=st.integers(0, 3))
        def resolve(self, name: str, occurrence: int) -> None:
            self._post(name, occurrence, "resolved")

        @rule(name=st.sampled_from(CONTAINERS))
        def unrelated_alert(self, name: str) -> None:
            body = notification([alert({"alertname": "DiskFilling", "container": name},
                                       starts_at=datetime.now(UTC))])
            assert self.client.post("/webhook/alertmanager", json=body,
                                    headers=webhook_headers()).status_code == 200

        @rule(name=st.sampled_from(CONTAINERS), dry_run=st.booleans())
        def manual_run(self, name: str, dry_run: bool) -> None:
            response = self.client.post(
                "/api/v1/playbooks/restart-on-down/run", headers=api_headers(),
                json={"labels": {"container": name}, "reason": "sm", "dry_run": dry_run})
            assert response.status_code in (202, 409), response.json

        @rule(verb=st.sampled_from(("acknowledge", "close")), pick=st.integers(0, 30))
        def decide(self, verb: str, pick: int) -> None:
            response = self.client.post(f"/api/v1/incidents/{pick + 1}/{verb}",
                                        headers=api_headers(),
                                        json={"actor": "sm", "reason": "test"})
            assert response.status_code in (200, 404, 409), response.json

        @rule(name=st.sampled_from(CONTAINERS))
        def reset_breaker(self, name: str) -> None:
            response = self.client.post(f"/api/v1/breakers/{name}/reset",
                                        headers=api_headers(),
                                        json={"actor": "sm", "reason": "test"})
            assert response.status_code in (200, 404), response.json

        @rule(name=st.sampled_from(CONTAINERS), healthy=st.booleans())
        def health(self, name: str, healthy: bool) -> None:
            (self.executor.stays_unhealthy.discard if healthy
             else self.executor.stays_unhealthy.add)(name)

        @rule()
        def retries(self) -> None:
            queue_due_retries(self.services)

        @rule()
        def let_runners_work(self) -> None:
            time.sleep(0.05)

        @invariant()
        def only_allowed_transitions(self) -> None:
            with self.services.database.session() as session:
                log = session.execute(text("SELECT entity, old, new FROM status_log")).all()
            for entity, old, new in log:
                if old is None:
                    assert (entity, new) in INITIAL, (entity, new)
                else:
                    assert (entity, old, new) in ALLOWED, (entity, old, new)

        def teardown(self) -> None:
            try:
                self.runner.stop(10)
                drainer = Runner(self.services)
                while drainer.run_once() is not None:
                    pass
                self.only_allowed_transitions()
                with self.services.database.session() as session:
                    stuck = session.execute(text(
                        "SELECT id, status FROM runs WHERE status IN ('queued', 'running')"
                    )).all()
                    incidents = session.execute(text(
                        "SELECT container, starts_at, status FROM incidents "
                        "WHERE trigger = 'alert' AND alertname = 'TargetDown'")).all()
                assert stuck == []
                for container, starts_at, status in incidents:
                    occurrence = round((starts_at - T_START).total_seconds() / 60)
                    if (container, occurrence) in self.resolved:
                        assert status == "resolved", (container, occurrence, status)
            finally:
                self.services.database.dispose()

    return Lifecycle


def test_lifecycle_state_machine_on_postgresql(postgres, tmp_path) -> None:
    examples = int(os.environ.get("AUTOFIX_STATEFUL_EXAMPLES", "12"))
    run_state_machine_as_test(
        make_machine(postgres, tmp_path),
        settings=settings(max_examples=examples, stateful_step_count=25, deadline=None,
                          suppress_health_check=list(HealthCheck)))
