"""Evidence without dockerd: the pure parts (classification, the operator rule, the alert's
expression, the size cap) and how a run uses captures (step, implicit, budget, playbook
rules, retention), on SQLite and PostgreSQL with the in-memory executor."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.domain.classify import classify
from receiver.domain.redaction import Redactor
from receiver.evidence.capture import CaptureRequest, Evidence, alert_expression, capture_evidence
from receiver.evidence.store import DETAILS_MAX_BYTES, _capped_details
from receiver.executor import EvidenceLimits
from receiver.executor.docker_evidence import operator_stop_reason
from receiver.runtime.runner import Runner
from receiver.store.lifecycle import transition_incident
from receiver.store.migrate import prune
from receiver.store.models import Action, EvidenceRecord, Incident
from tests.conftest import webhook_headers
from tests.harness.memory_executor import MemoryExecutor
from tests.payloads import alert, notification


def _events(*actions: str) -> list[dict[str, Any]]:
    return [{"action": a, "time_nano": i * 10**9, "signal": None} for i, a in enumerate(actions)]


@pytest.mark.parametrize(("actions", "by_operator"), [
    (("start", "kill", "die", "stop"), True),           # docker stop
    (("start", "kill", "die"), True),                   # docker kill
    (("start", "exec_start: sh -c x", "kill", "die", "stop"), True),  # health checks between
    (("start", "die"), False),                          # exited on its own
    (("start", "oom", "die"), False),                   # the kernel's OOM killer
    (("start", "die", "kill"), False),                  # a kill after it died is not why
    (("start", "kill", "die", "stop", "start", "die"), False),  # restarted, then crashed
    ((), False),                                        # dockerd forgot: cannot tell
])
def test_only_a_request_before_the_die_means_an_operator(actions: tuple[str, ...],
                                                         by_operator: bool) -> None:
    assert (operator_stop_reason(_events(*actions)) is not None) is by_operator


def test_classification_order() -> None:
    up_expr = {"expr": 'up{job="x"} == 0', "series": [{"metric": {}, "value": "0"}]}
    assert classify({"running": False, "status": "exited", "oom_killed": True}, "x",
                    None) == "oom_killed"
    assert classify({"running": False, "status": "exited"}, "stopped", None) == \
        "stopped_by_operator"
    assert classify({"running": False, "status": "exited"}, None, None) == "crashed"
    assert classify({"running": True, "health": {"status": "unhealthy"}}, None,
                    up_expr) == "unhealthy"
    assert classify({"running": True}, None, up_expr) == "hung"
    assert classify({"running": True}, None, {"expr": "rate(errors[1m]) > 1",
                                              "series": [{"value": "3"}]}) is None
    assert classify({"running": True}, None, {**up_expr, "series": []}) is None
    assert classify(None, None, up_expr) is None  # the state was cut: no guess


def test_the_expression_comes_from_the_generator_url() -> None:
    assert alert_expression("http://p:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1") == "up == 0"
    assert alert_expression("http://p:9090/graph") is None
    assert alert_expression("") is None


def test_oversized_details_are_cut_to_a_note() -> None:
    evidence = Evidence("web", datetime.now(UTC), results={
        "state": {"status": "running"}, "events": ["x" * DETAILS_MAX_BYTES]})
    details = _capped_details(evidence)
    assert details["state"] == {"status": "running"} and details["oversized"] == ["events"]


class SlowExecutor(MemoryExecutor):
    """One evidence source that answers long after any budget."""

    def evidence_sources(self, target: str, limits: EvidenceLimits) -> dict[str, Any]:
        sources = dict(super().evidence_sources(target, limits))
        sources["logs"] = lambda: time.sleep(5) or {"text": "late"}
        return sources


def test_the_budget_cuts_a_slow_source_and_keeps_the_rest() -> None:
    executor = SlowExecutor()
    executor.add("web")
    request = CaptureRequest("web", "", 0.5, EvidenceLimits(), "http://127.0.0.1:9")
    started = time.monotonic()
    evidence = capture_evidence(executor, request, Redactor(), datetime.now(UTC))
    assert time.monotonic() - started < 1.5
    assert evidence.cut == ["logs"] and evidence.results["state"]["status"] == "running"


def test_a_failed_prometheus_query_is_recorded_not_fatal() -> None:
    executor = MemoryExecutor()
    executor.add("web")
    request = CaptureRequest("web", "http://p/graph?g0.expr=up", 2.0, EvidenceLimits(),
                             "http://127.0.0.1:9")  # nothing listens on port 9
    evidence = capture_evidence(executor, request, Redactor(), datetime.now(UTC))
    assert "expression" in evidence.errors and evidence.results["state"]
    assert evidence.results["expression"] == {"expr": "up", "series": None}


PLAYBOOK = """
playbooks:
  - name: fix
    matchers: ['alertname="TargetDown"']
    cooldown: 0s
{extra}    actions:
{steps}"""


def make_app(app_factory: Any, db_url: str, tmp_path: Path, steps: str, extra: str = "",
             executor: MemoryExecutor | None = None) -> tuple[Any, MemoryExecutor]:
    executor = executor or MemoryExecutor()
    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOK.format(extra=extra, steps=steps))
    return app_factory(db_url, playbooks=path, executor=executor), executor


def fire_and_drain(app: Any, container: str) -> None:
    body = notification([alert({"container": container},
                               starts_at=datetime.now(UTC) - timedelta(minutes=1))])
    assert app.test_client().post("/webhook/alertmanager", json=body,
                                  headers=webhook_headers()).status_code == 200
    runner = Runner(app.extensions["autofix"])
    while runner.run_once() is not None:
        pass


def rows(app: Any, model: Any) -> list[Any]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def test_a_capture_step_and_an_implicit_capture_before_each_later_change(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    app, executor = make_app(app_factory, db_url, tmp_path,
                             "      - capture: {}\n      - restart: {}\n      - restart: {}\n")
    executor.add("web")
    fire_and_drain(app, "web")
    assert executor.restarts("web") == 2
    evidence = rows(app, EvidenceRecord)
    # Before admission (stands for the first restart), the step, before the second restart.
    assert [(e.source, e.step) for e in evidence] == [("implicit", 1), ("step", 0),
                                                      ("implicit", 2)]
    capture = rows(app, Action)[0]
    assert (capture.action, capture.outcome) == ("capture", "succeeded")
    assert capture.params["detail"].startswith(f"evidence #{evidence[1].id}")


def test_the_first_capture_names_the_step_it_stands_before(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    app, executor = make_app(app_factory, db_url, tmp_path,
                             "      - notify: {message: hi}\n      - restart: {}\n")
    executor.add("web")
    fire_and_drain(app, "web")
    assert [(e.source, e.step) for e in rows(app, EvidenceRecord)] == [("implicit", 1)]


def test_capture_false_records_no_evidence(db_url: str, app_factory: Any,
                                           tmp_path: Path) -> None:
    app, executor = make_app(app_factory, db_url, tmp_path, "      - restart: {}\n",
                             extra="    capture: false\n")
    executor.add("web")
    fire_and_drain(app, "web")
    assert executor.restarts("web") == 1 and rows(app, EvidenceRecord) == []


def test_escalate_when_calls_a_human_instead_of_acting(db_url: str, app_factory: Any,
                                                       tmp_path: Path) -> None:
    app, executor = make_app(app_factory, db_url, tmp_path, "      - restart: {}\n",
                             extra="    escalate_when: [crashed]\n")
    executor.add("web", status="exited")
    fire_and_drain(app, "web")
    assert executor.restarts("web") == 0
    [skip] = rows(app, Action)
    assert (skip.outcome, skip.reason) == ("skipped", "crashed")
    [incident] = rows(app, Incident)
    assert (incident.status, incident.classification) == ("escalated", "crashed")


def test_an_operator_stop_is_skipped_even_without_capture(db_url: str, app_factory: Any,
                                                          tmp_path: Path) -> None:
    app, executor = make_app(app_factory, db_url, tmp_path, "      - restart: {}\n",
                             extra="    capture: false\n")
    executor.add("web", status="exited")
    executor.stopped_by_hand.add("web")
    fire_and_drain(app, "web")
    assert executor.restarts("web") == 0
    [skip] = rows(app, Action)
    assert (skip.outcome, skip.reason) == ("skipped", "operator_stop")
    assert [i.status for i in rows(app, Incident)] == ["escalated"]  # a human decides


def test_evidence_is_pruned_with_its_incident(db_url: str, app_factory: Any,
                                              tmp_path: Path) -> None:
    app, executor = make_app(app_factory, db_url, tmp_path, "      - restart: {}\n",
                             extra="    escalate_when: [crashed]\n")
    executor.add("web", status="exited")
    fire_and_drain(app, "web")  # escalated: waits for a human, retention keeps it
    assert len(rows(app, EvidenceRecord)) == 1
    database = app.extensions["autofix"].database
    later = datetime.now(UTC) + timedelta(minutes=1)  # everything so far is older than 0 s
    prune(database, timedelta(seconds=0), now=later)
    assert len(rows(app, Incident)) == 1 and len(rows(app, EvidenceRecord)) == 1
    with database.session() as session:  # a human closes it: finished, prunable
        assert transition_incident(session, rows(app, Incident)[0].id, "close")
    prune(database, timedelta(seconds=0), now=later)
    assert rows(app, Incident) == [] and rows(app, EvidenceRecord) == []


def test_the_slack_message_shows_state_as_fields_and_the_log_tail_as_code() -> None:
    from receiver.notify import Event, IncidentInfo, build_slack_message

    details = {"classification": "oom_killed", "target": "web",
               "state": {"status": "exited", "exit_code": 137, "oom_killed": True,
                         "restart_count": 2},
               "health": "unhealthy", "memory_usage_bytes": 10, "memory_limit_bytes": 16,
               "expression": "up == 0", "series": [{"metric": {}, "value": "0"}],
               "log_tail": "line <one>\n```break out```\n" + "x" * 5000, "cut": []}
    incident = IncidentInfo(1, "TargetDown", "f", "web", "remediating")
    message = build_slack_message(Event("evidence", 1, details), incident)
    assert "evidence captured on web before acting: oom_killed" in message["text"]
    fields = next(b["fields"] for b in message["blocks"] if "fields" in b)
    shown = " ".join(f["text"] for f in fields)
    assert "*Exit code*\n137" in shown and "*OOM killed*\nyes" in shown
    assert "up == 0 = ['0']" in shown
    code = next(b["text"]["text"] for b in message["blocks"]
                if b.get("text", {}).get("text", "").startswith("```"))
    assert len(code) <= 3000 and code.endswith("x```") and code.count("```") == 2
