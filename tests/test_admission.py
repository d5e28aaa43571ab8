"""Admission as a typed pipeline (#29): `execute_run` returns its decision, and the stages
run in README "Guards: the decision order", so a guard earlier in the order stops a run
before Prometheus is asked about `require:`. Runs on the memory executor; Prometheus is a
loopback stub that records each query."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.engine.admission import AwaitApproval, Proceed, Skip
from receiver.engine.execution import Decision, execute_run
from receiver.runtime.runner import claim_next
from tests.conftest import api_headers
from tests.harness.app_driver import runs
from tests.harness.clock import T0
from tests.harness.memory_app import fire, make_app
from tests.harness.prometheus_stub import PrometheusStub, start_prometheus_stub

PLAYBOOK = """
playbooks:
  - name: guarded-restart
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 10m
    MODE
    require: ['up{job="web"} == 1']
    actions:
      - restart: {timeout_s: 5}
"""


@pytest.fixture
def prometheus() -> Iterator[PrometheusStub]:
    # Only the `require:` is recorded: the evidence asks Prometheus too.
    stub = start_prometheus_stub(record_when="job%3D%22web%22")
    yield stub  # not healthy: every query answers an empty vector (the precondition fails)
    stub.stop()


def _app(app_factory: Any, db_url: str, tmp_path: Path, prometheus: PrometheusStub,
         mode: str = "") -> Any:
    text = PLAYBOOK.replace("MODE", mode)
    app, executor, _ = make_app(app_factory, db_url, tmp_path, text,
                                prometheus_url=prometheus.url)
    executor.add("web")
    return app


def _execute_next(app: Any) -> Decision:
    services = app.extensions["autofix"]
    run_id = claim_next(services, "test-worker")
    assert run_id is not None
    return execute_run(services, run_id)


def test_a_plain_run_proceeds_with_its_canonical_subject(db_url, app_factory, tmp_path,
                                                         prometheus) -> None:
    prometheus.healthy = True
    app = _app(app_factory, db_url, tmp_path, prometheus)
    fire(app.test_client(), {"container": "web"})
    decision = _execute_next(app)
    assert isinstance(decision, Proceed) and decision.subject is not None
    assert decision.subject.key == "web"
    assert decision.breaker is not None  # admitted: the breaker counted it
    assert len(prometheus.queries) == 1


def test_a_failing_require_is_a_skip_after_prometheus_is_asked(db_url, app_factory, tmp_path,
                                                               prometheus) -> None:
    app = _app(app_factory, db_url, tmp_path, prometheus)
    fire(app.test_client(), {"container": "web"})
    decision = _execute_next(app)
    assert isinstance(decision, Skip)
    assert (decision.stop.reason, decision.stop.escalate) == ("precondition_failed", True)
    assert len(prometheus.queries) == 1


def test_a_paused_autofix_skips_paused_and_never_asks_prometheus(db_url, app_factory,
                                                                 tmp_path, prometheus) -> None:
    app = _app(app_factory, db_url, tmp_path, prometheus)
    client = app.test_client()
    paused = client.post("/api/v1/pause", json={"actor": "alice", "reason": "deploy"},
                         headers=api_headers())
    assert paused.status_code == 200, paused.json
    fire(client, {"container": "web"})
    decision = _execute_next(app)
    assert isinstance(decision, Skip) and decision.stop.reason == "paused"
    assert not decision.stop.escalate
    assert prometheus.queries == []


def test_a_cooldown_skips_cooldown_and_never_asks_prometheus(db_url, app_factory, tmp_path,
                                                             prometheus) -> None:
    prometheus.healthy = True
    app = _app(app_factory, db_url, tmp_path, prometheus)
    client = app.test_client()
    fire(client, {"container": "web"})
    assert isinstance(_execute_next(app), Proceed)
    fire(client, {"container": "web"}, status="resolved")
    prometheus.healthy, prometheus.queries = False, []
    fire(client, {"container": "web"}, starts=T0)  # a new occurrence, within the cooldown
    decision = _execute_next(app)
    assert isinstance(decision, Skip) and decision.stop.reason == "cooldown"
    assert prometheus.queries == []
    assert [r.status for r in runs(app)][-1] == "skipped"  # never awaiting approval


def test_mode_approve_awaits_approval_once_the_guards_pass(db_url, app_factory, tmp_path,
                                                           prometheus) -> None:
    prometheus.healthy = True
    app = _app(app_factory, db_url, tmp_path, prometheus, mode="mode: approve")
    fire(app.test_client(), {"container": "web"})
    assert _execute_next(app) == AwaitApproval("web")
    assert len(prometheus.queries) == 1


def test_a_run_that_cannot_act_asks_no_human_nor_prometheus(db_url, app_factory, tmp_path,
                                                             prometheus) -> None:
    """Mode approve in a cooldown: the rolled-back peek stops it before either is asked."""
    prometheus.healthy = True
    app = _app(app_factory, db_url, tmp_path, prometheus, mode="mode: approve")
    client = app.test_client()
    fire(client, {"container": "web"})
    assert isinstance(_execute_next(app), AwaitApproval)
    [run] = runs(app)
    approved = client.post(f"/api/v1/runs/{run.id}/approve", json={"actor": "alice"},
                           headers=api_headers())
    assert approved.status_code == 200, approved.json
    assert isinstance(_execute_next(app), Proceed)
    fire(client, {"container": "web"}, status="resolved")
    prometheus.queries = []
    fire(client, {"container": "web"}, starts=T0)
    decision = _execute_next(app)
    assert isinstance(decision, Skip) and decision.stop.reason == "cooldown"
    assert prometheus.queries == []
    assert [r.status for r in runs(app)][-1] == "skipped"  # never awaiting approval


def test_a_stop_that_ends_between_the_peek_and_admission_sends_the_run_round_again(
        db_url, app_factory, tmp_path, prometheus, monkeypatch) -> None:
    """The peek stopped the run (so `require:` was not asked), and by admission the stop
    had ended: acting now would act unasked. The run is queued again, and the next pass
    asks Prometheus before it acts."""
    import receiver.engine.execution as execution
    from receiver.engine.admission import Requeue
    from receiver.engine.guards import GuardStop

    prometheus.healthy = True
    app = _app(app_factory, db_url, tmp_path, prometheus)
    fire(app.test_client(), {"container": "web"})
    real_peek = execution.peek_admission
    monkeypatch.setattr(execution, "peek_admission", lambda *args: Skip(GuardStop(
        "cooldown", "ended a moment after this peek", 0.001)))
    assert _execute_next(app) == Requeue()
    assert prometheus.queries == [] and [r.status for r in runs(app)] == ["queued"]
    monkeypatch.setattr(execution, "peek_admission", real_peek)
    decision = _execute_next(app)
    assert isinstance(decision, Proceed) and len(prometheus.queries) == 1
