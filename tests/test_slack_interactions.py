"""Approve/Deny from Slack (#19): only a correctly signed, fresh, first-seen click by an
allowed user decides; everything else changes nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from receiver.notify import Event, OutboxSender
from receiver.notify.channels import build_channels
from receiver.notify.messages import APPROVE_ACTION, DENY_ACTION, build_slack_message
from receiver.store.models import AuditEntry, Run
from tests.conftest import webhook_headers
from tests.harness.app_driver import drain
from tests.harness.memory_app import fire, make_app
from tests.harness.slack_clicks import signed_click
from tests.harness.slack_stub import start_slack_stub
from tests.payloads import alert, notification

SECRET = "slack-signing-secret-for-tests"
APPROVER = "U0APPROVER"
PLAYBOOK = """
playbooks:
  - name: restart-on-down
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
    mode: approve
    actions:
      - restart: {timeout_s: 5}
"""


@pytest.fixture
def waiting(db_url, app_factory, tmp_path) -> tuple[Any, Any, int]:
    """An app whose one run awaits approval, and its executor."""
    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK,
                                slack_signing_secret=SECRET, slack_approvers=APPROVER)
    executor.add("web")
    fire(app.test_client(), {"container": "web"})
    drain(app)
    [run] = runs(app)
    assert run.status == "awaiting_approval"
    return app, executor, run.id


def runs(app: Any) -> list[Run]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(Run).order_by(Run.id)))


def click(app: Any, body: bytes, headers: dict[str, str]) -> Any:
    return app.test_client().post("/slack/interactions", data=body, headers=headers)


def unchanged(app: Any, executor: Any) -> bool:
    drain(app)
    return [r.status for r in runs(app)] == ["awaiting_approval"] and \
        executor.restarts("web") == 0


def test_a_signed_click_by_an_approver_approves(waiting) -> None:
    app, executor, run_id = waiting
    response = click(app, *signed_click(SECRET, APPROVER, APPROVE_ACTION, str(run_id)))
    assert response.status_code == 200, response.json
    assert f"run {run_id} approved by <@{APPROVER}>" == response.json["text"]
    drain(app)
    [run] = runs(app)
    assert (run.status, run.decision, run.decided_by) == (
        "succeeded", "approved", f"slack:{APPROVER} (u)")
    assert executor.restarts("web") == 1
    with app.extensions["autofix"].database.session() as session:
        assert [e.actor for e in session.scalars(select(AuditEntry))] == [
            f"slack:{APPROVER} (u)"]


def test_a_signed_deny_denies(waiting) -> None:
    app, executor, run_id = waiting
    response = click(app, *signed_click(SECRET, APPROVER, DENY_ACTION, str(run_id)))
    assert response.status_code == 200
    assert runs(app)[0].status == "denied" and executor.restarts("web") == 0


def test_a_wrong_signature_is_401_and_changes_nothing(waiting) -> None:
    app, executor, run_id = waiting
    body, headers = signed_click("another-secret-entirely", APPROVER, APPROVE_ACTION,
                                 str(run_id))
    assert click(app, body, headers).status_code == 401
    body, headers = signed_click(SECRET, APPROVER, APPROVE_ACTION, str(run_id))
    tampered = body.replace(APPROVER.encode(), b"U0SOMEONE1")
    assert click(app, tampered, headers).status_code == 401
    unsigned = {"Content-Type": headers["Content-Type"]}
    assert click(app, body, unsigned).status_code == 401
    assert unchanged(app, executor)


def test_an_old_timestamp_is_401_and_changes_nothing(waiting) -> None:
    app, executor, run_id = waiting
    old = int(time.time()) - 6 * 60
    response = click(app, *signed_click(SECRET, APPROVER, APPROVE_ACTION, str(run_id), old))
    assert response.status_code == 401
    assert unchanged(app, executor)


def test_a_replayed_request_is_refused(waiting) -> None:
    app, executor, run_id = waiting
    body, headers = signed_click(SECRET, APPROVER, DENY_ACTION, str(run_id))
    # First seen by a user who may not decide: refused, and the request is spent.
    app.extensions["autofix"].settings.slack_approvers = []
    assert click(app, body, headers).status_code == 403
    app.extensions["autofix"].settings.slack_approvers = [APPROVER]
    replayed = click(app, body, headers)
    assert replayed.status_code == 401 and replayed.json["reason"] == "replay"
    assert unchanged(app, executor)


def test_a_user_not_in_the_approver_list_changes_nothing(waiting) -> None:
    app, executor, run_id = waiting
    response = click(app, *signed_click(SECRET, "U0STRANGER", APPROVE_ACTION, str(run_id)))
    assert response.status_code == 403 and response.json["reason"] == "not_an_approver"
    assert unchanged(app, executor)


def test_without_a_signing_secret_interactions_are_off(db_url, app_factory, tmp_path) -> None:
    app, _, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK)
    assert click(app, *signed_click(SECRET, APPROVER, APPROVE_ACTION, "1")).status_code == 401


@pytest.mark.parametrize("body", [b"", b"payload=not-json", b"payload=%7B%7D", b"\xff\xfe"])
def test_a_signed_body_that_is_not_a_click_is_400(waiting, body) -> None:
    from slack_sdk.signature import SignatureVerifier

    app, executor, _ = waiting
    stamp = str(int(time.time()))
    try:
        signature = SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body)
    except UnicodeDecodeError:
        signature = "v0=00"
    response = click(app, body, {"X-Slack-Request-Timestamp": stamp,
                                 "X-Slack-Signature": signature or ""})
    assert response.status_code in (400, 401)
    assert unchanged(app, executor)


def test_the_approval_request_carries_approve_and_deny_buttons() -> None:
    from datetime import UTC, datetime

    from receiver.notify.messages import IncidentInfo

    incident = IncidentInfo(id=7, alertname="TargetDown", fingerprint="f", target="web",
                            status="open", severity="", labels={}, annotations={},
                            starts_at=datetime.now(UTC), time_to_resolve_s=None)
    message = build_slack_message(Event("approval_requested", 7, {
        "run_id": 42, "playbook": "restart-on-down", "target": "web", "due": "soon"}),
        incident)
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"][:2]] == [
        (APPROVE_ACTION, "42"), (DENY_ACTION, "42")]
    assert "awaits approval" in message["text"]


def _texts(value: Any) -> list[str]:
    """Every string Slack renders (text, blocks, fields, buttons) in a posted message."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() if k not in ("url", "action_id", "value")
                for t in _texts(v)]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    return []


def test_hostile_labels_reach_slack_inert_and_approve_still_works(db_url, app_factory,
                                                                   tmp_path) -> None:
    """#26 finding 7, through the local Slack stand-in: `<!channel>` and a disguised link
    in labels and annotations arrive escaped in every text, the top-level one included;
    buttons point only under configured bases; the Approve button still approves."""
    stub = start_slack_stub()
    try:
        app, executor, _ = make_app(
            app_factory, db_url, tmp_path, PLAYBOOK, slack_signing_secret=SECRET,
            slack_approvers=APPROVER, slack_bot_token="xoxb-test-hostile",
            slack_channel="C0OPS", slack_api_url=stub.api_url,
            grafana_url="http://grafana.test:3000", alertmanager_url="http://am.test:9093",
            prometheus_external_url="http://prometheus.test:9090",
            runbook_base_url="https://runbooks.test/")
        executor.add("web")
        hostile = alert({"container": "web", "team": "<!channel>",
                         "alertname": "TargetDown"}, annotations={
            "summary": "<!channel> <https://evil.test|Click to approve> & <@U1>",
            "runbook_url": "https://evil.test/runbook"})
        hostile["generatorURL"] = "https://evil.test/graph?g0.expr=up"
        response = app.test_client().post("/webhook/alertmanager",
                                          json=notification([hostile]),
                                          headers=webhook_headers())
        assert response.status_code == 200, response.json
        drain(app)
        [run] = runs(app)
        svc = app.extensions["autofix"]
        OutboxSender(svc.database, svc.settings, svc.metrics, build_channels(svc.settings),
                     "test").run_once()
        posted = [m.json() for m in stub.messages()]
        assert posted and any("awaits approval" in m["text"] for m in posted)
        rendered = [t for m in posted for t in _texts({"text": m["text"],
                                                       "blocks": m["blocks"]})]
        assert not [t for t in rendered if "<" in t or ">" in t], rendered
        assert any("&lt;!channel&gt; &lt;https://evil.test|Click to approve&gt;" in t
                   for t in rendered)
        urls = [e["url"] for m in posted for b in m["blocks"] if b["type"] == "actions"
                for e in b["elements"] if "url" in e]
        assert urls and all(u.startswith(("http://grafana.test:3000/", "http://am.test:9093/"))
                            for u in urls), urls
        [approval] = [m for m in posted if "awaits approval" in m["text"]]
        [actions] = [b for b in approval["blocks"] if b["type"] == "actions"]
        approve = actions["elements"][0]
        assert (approve["action_id"], approve["value"]) == (APPROVE_ACTION, str(run.id))
        answer = click(app, *signed_click(SECRET, APPROVER, approve["action_id"],
                                          approve["value"]))
        assert answer.status_code == 200, answer.json
        drain(app)
        assert runs(app)[0].status == "succeeded" and executor.restarts("web") == 1
    finally:
        stub.stop()
