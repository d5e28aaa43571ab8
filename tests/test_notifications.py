"""Notifications: pure message builders, the outbox, and real sends to a local Slack stub."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, select

from receiver.notify import (
    Event,
    IncidentInfo,
    LinkSettings,
    OutboxNotifier,
    OutboxSender,
    build_slack_message,
    build_webhook_payload,
)
from receiver.notify.channels import build_channels, redact, retry_after, secret_fragments
from receiver.notify.groups import GroupInfo, build_group_slack
from receiver.notify.messages import (
    build_notice_slack,
    dashboard_url,
    link_under,
    runbook_link,
    silence_url,
)
from receiver.runtime.runner import Runner
from receiver.store.engine import Database
from receiver.store.migrate import alembic_config
from receiver.store.models import Incident, Outbox, Run
from tests.conftest import webhook_headers
from tests.harness.containers import run_container, started_at
from tests.harness.playbook_yaml import restart_playbook
from tests.harness.procs import wait_for
from tests.harness.slack_stub import POST_MESSAGE, Reply, SlackStub, start_slack_stub
from tests.payloads import alert, notification

BOT_TOKEN = "xoxb-test-1234-abcdefghijkl"
SLACK_HOOK = "/services/T0000/B0000/hooksecret0123456789"
OUT_HOOK = "/outbound/hook-secret-4242"
GRAFANA = "http://grafana.test:3000"
ALERTMANAGER = "http://am.test:9093"
PROMETHEUS = "http://prometheus:9090"  # the generatorURL's base (tests.payloads)
RUNBOOKS = "https://runbooks.example/"
STARTS = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)

NOTIFY_PLAYBOOK = """
playbooks:
  - name: tell-people
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    actions:
      - notify: {message: "looking at {{ labels.container }}"}
      - escalate: {reason: "needs a human"}
"""

RESTART_PLAYBOOK = restart_playbook()


# -- pure builders ---------------------------------------------------------------------------

INCIDENT = IncidentInfo(
    id=7, alertname="TargetDown", fingerprint="abc123", target="web", status="remediating",
    severity="critical",
    labels={"alertname": "TargetDown", "container": "web", "severity": "critical"},
    annotations={"summary": "web is down", "runbook_url": "https://runbooks.example/TargetDown"},
    generator_url="http://prometheus:9090/graph?g0.expr=up+%3D%3D+0", starts_at=STARTS)
LINKS = LinkSettings(GRAFANA, ALERTMANAGER, PROMETHEUS, RUNBOOKS)
SILENCE = (f"{ALERTMANAGER}/#/silences/new?filter=%7Balertname%3D%22TargetDown%22%2C%20"
           "container%3D%22web%22%2C%20severity%3D%22critical%22%7D")
DASHBOARD = f"{GRAFANA}/d/autofix-incidents/autofix-incidents?var-incident=7"


def test_silence_url_is_what_alertmanager_0_25s_silence_button_opens() -> None:
    # Sorted labels, `k="v"` joined by ", ", percent-encoded like encodeURIComponent.
    assert silence_url(ALERTMANAGER + "/", dict(INCIDENT.labels)) == SILENCE
    assert silence_url("http://am", {"job": "a b/c(1)"}) == \
        "http://am/#/silences/new?filter=%7Bjob%3D%22a%20b%2Fc(1)%22%7D"


def test_dashboard_url_points_at_the_incident_dashboard() -> None:
    assert dashboard_url(GRAFANA + "/", 7) == DASHBOARD


def test_playbook_started_message_has_headline_context_and_every_link() -> None:
    event = Event("playbook_started", 7, {"playbook": "restart-on-down", "target": "web",
                                          "trigger": "alert", "dry_run": False})
    assert build_slack_message(event, INCIDENT, links=LINKS) == {
        "text": "[TargetDown] TargetDown · web: playbook restart-on-down started on web",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text":
                ":arrow_forward: *TargetDown · web*: playbook restart-on-down started on web"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "web is down"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text":
                "severity critical · incident #7 · status remediating · "
                "fingerprint `abc123`"}]},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Source"},
                 "url": INCIDENT.generator_url, "action_id": "autofix_source"},
                {"type": "button", "text": {"type": "plain_text", "text": "Runbook"},
                 "url": "https://runbooks.example/TargetDown", "action_id": "autofix_runbook"},
                {"type": "button", "text": {"type": "plain_text", "text": "Dashboard"},
                 "url": DASHBOARD, "action_id": "autofix_dashboard"},
                {"type": "button", "text": {"type": "plain_text", "text": "Silence"},
                 "url": SILENCE, "action_id": "autofix_silence"},
            ]},
        ],
    }


@pytest.mark.parametrize(("event", "headline"), [
    (Event("action_result", 7, {"action": "restart", "target": "web", "outcome": "succeeded",
                                "duration_s": 1.25, "step": 0, "error": None}),
     ":white_check_mark: *TargetDown · web*: step 1 restart succeeded on web in 1.2s"),
    (Event("action_result", 7, {"action": "restart", "target": "web", "outcome": "failed",
                                "duration_s": 65, "step": 1, "error": "boom"}),
     ":x: *TargetDown · web*: step 2 restart failed on web in 1m 5s: boom"),
    (Event("escalated", 7, {"reason": "breaker_open: too many restarts"}),
     ":rotating_light: *TargetDown · web*: escalated: breaker_open: too many restarts"),
    (Event("breaker_opened", 7, {"target": "web", "retry_after_s": 300.0}),
     ":no_entry: *TargetDown · web*: circuit breaker opened on web: no automatic action "
     "for 5m 0s"),
    (Event("note", 7, {"kind": "note", "text": "looking at web"}),
     ":memo: *TargetDown · web*: looking at web"),
])
def test_each_event_kind_has_its_headline(event: Event, headline: str) -> None:
    message = build_slack_message(event, INCIDENT, links=LINKS)
    assert message["blocks"][0]["text"]["text"] == headline


def test_resolved_message_carries_the_time_to_resolve_from_the_incident() -> None:
    resolved = IncidentInfo(**{**INCIDENT.__dict__, "status": "resolved",
                               "time_to_resolve_s": 3725.0})
    message = build_slack_message(Event("resolved", 7), resolved, links=LINKS)
    assert message["blocks"][0]["text"]["text"] == \
        ":large_green_circle: *TargetDown · web*: resolved after 1h 2m"


def test_label_values_cannot_inject_slack_markup_or_links() -> None:
    hostile = IncidentInfo(
        id=1, alertname="A<!channel>", fingerprint="f", target="x&<y>", status="open",
        labels={"alertname": "A<!channel>"},
        annotations={"summary": "<https://evil|click>", "runbook_url": "javascript:alert(1)"},
        generator_url="")
    message = build_slack_message(Event("note", 1, {"text": "<@U123>"}), hostile)
    texts = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert texts == [":memo: *A&lt;!channel&gt; · x&amp;&lt;y&gt;*: &lt;@U123&gt;",
                     "&lt;https://evil|click&gt;"]
    assert all(b["type"] != "actions" for b in message["blocks"])  # no javascript: button


HOSTILE = IncidentInfo(
    id=3, alertname="TargetDown<!channel>", fingerprint="f", target="web&<b>", status="open",
    labels={"alertname": "TargetDown<!channel>", "container": "<https://evil|Click to approve>"},
    annotations={"summary": "<!here> <https://evil|Click to approve>",
                 "runbook_url": "https://evil.example/TargetDown"},
    generator_url="https://evil.example/graph?g0.expr=up")


def test_the_top_level_text_is_escaped_like_the_blocks() -> None:
    """#26: the fallback text is mrkdwn too (and what a notification shows)."""
    event = Event("note", 3, {"text": "<!channel> & <https://evil|Click to approve>"})
    text = build_slack_message(event, HOSTILE, links=LINKS)["text"]
    assert text == ("[TargetDown&lt;!channel&gt;] TargetDown&lt;!channel&gt; · web&amp;&lt;b&gt;: "
                    "&lt;!channel&gt; &amp; &lt;https://evil|Click to approve&gt;")
    notice = build_notice_slack(Event("paused", 0, {"actor": "<!channel>", "reason": "<x|y>"}))
    assert "<" not in notice["text"] and "&lt;!channel&gt;" in notice["text"]
    group = GroupInfo(1, "{}:{alertname=\"X\"}", "r", {"alertname": "<!channel>"}, 1, 0,
                      {"top_alertnames": [["<!here>", 1]], "alerts": 1, "truncated_alerts": 0,
                       "sample": [{"status": "firing", "alertname": "<!here>",
                                   "target": "<https://evil|t>", "text": "<@U1>"}]})
    body = build_group_slack(group, LINKS)
    rendered = [body["text"], *(b["text"]["text"] for b in body["blocks"] if "text" in b),
                *(e["text"] for b in body["blocks"] if b["type"] == "context"
                  for e in b["elements"])]
    assert all("<" not in text and ">" not in text for text in rendered), rendered


def test_buttons_point_only_under_configured_base_urls() -> None:
    """A generatorURL or runbook_url elsewhere makes no button; Approve/Deny stay."""
    event = Event("approval_requested", 3, {"run_id": 9, "playbook": "p", "target": "web",
                                            "due": "soon"})
    message = build_slack_message(event, HOSTILE, links=LINKS)
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    assert [e["text"]["text"] for e in actions["elements"]] == [
        "Approve", "Deny", "Dashboard", "Silence"]
    assert all(e["url"].startswith((GRAFANA + "/", ALERTMANAGER + "/"))
               for e in actions["elements"] if "url" in e)
    assert set(build_webhook_payload(event, HOSTILE, links=LINKS)["links"]) == {
        "dashboard", "silence"}
    unconfigured = build_slack_message(Event("note", 7, {"text": "x"}), INCIDENT,
                                       links=LinkSettings(GRAFANA, ALERTMANAGER))
    assert [e["text"]["text"] for e in unconfigured["blocks"][-1]["elements"]] == [
        "Dashboard", "Silence"]


@pytest.mark.parametrize(("url", "base", "kept"), [
    ("http://prometheus:9090/graph?g0.expr=up", "http://prometheus:9090", True),
    ("http://prometheus:9090/graph?g0.expr=up", "http://prometheus:9090/", True),
    ("http://Prometheus:9090/graph", "http://prometheus:9090", True),
    ("https://wiki.example/runbooks/a#b", "https://wiki.example/runbooks/", True),
    ("https://wiki.example/runbooks", "https://wiki.example/runbooks/", True),
    ("https://wiki.example/runbooksevil/a", "https://wiki.example/runbooks", False),
    ("https://wiki.example/runbooks/../admin", "https://wiki.example/runbooks/", False),
    ("https://wiki.example/runbooks/%2e%2e/admin", "https://wiki.example/runbooks/", False),
    ("https://wiki.example.evil.net/runbooks/a", "https://wiki.example", False),
    ("https://wiki.example@evil.net/runbooks/a", "https://wiki.example", False),
    ("http://wiki.example/runbooks/a", "https://wiki.example", False),
    ("https://wiki.example:8443/a", "https://wiki.example", False),
    ("https://wiki.example/a b", "https://wiki.example", False),
    ("https://wiki.example/a\\b", "https://wiki.example", False),
    ("javascript:alert(1)", "https://wiki.example", False),
    ("http://prometheus:9090/graph", None, False),
])
def test_link_under_compares_scheme_host_port_and_path(url: str, base: str | None,
                                                       kept: bool) -> None:
    assert (link_under(url, base) == url) is kept


@pytest.mark.parametrize(("annotation", "link"), [
    ("docs/runbooks.md#targetdown", "https://git.example/autofix/blob/main/docs/runbooks.md"
                                    "#targetdown"),
    ("/docs/runbooks.md", "https://git.example/autofix/blob/main/docs/runbooks.md"),
    ("https://git.example/autofix/blob/main/x.md", "https://git.example/autofix/blob/main/x.md"),
    ("https://git.example/other/x.md", None),
    ("//evil.example/x", None),
    ("../../../other/x.md", None),
    ("javascript:alert(1)", None),
    ("", None),
])
def test_runbook_links_are_joined_to_or_kept_under_the_base(annotation: str,
                                                            link: str | None) -> None:
    assert runbook_link(annotation, "https://git.example/autofix/blob/main") == link
    assert runbook_link(annotation, None) is None


def test_webhook_payload_is_one_documented_json_shape() -> None:
    event = Event("breaker_opened", 7, {"target": "web", "retry_after_s": 60.0})
    assert build_webhook_payload(event, INCIDENT, links=LINKS) == {
        "version": "1", "event": "breaker_opened",
        "summary": "circuit breaker opened on web: no automatic action for 1m 0s",
        "details": {"target": "web", "retry_after_s": 60.0},
        "incident": {"id": 7, "alertname": "TargetDown", "fingerprint": "abc123",
                     "target": "web", "status": "remediating", "severity": "critical",
                     "labels": dict(INCIDENT.labels), "annotations": dict(INCIDENT.annotations),
                     "starts_at": "2026-11-29T10:00:00+00:00", "time_to_resolve_s": None},
        "links": {"source": INCIDENT.generator_url,
                  "runbook": "https://runbooks.example/TargetDown",
                  "dashboard": DASHBOARD, "silence": SILENCE},
    }


def test_retry_after_reads_seconds_and_http_dates_in_any_case() -> None:
    assert retry_after({"Retry-After": "1"}) == 1.0
    assert retry_after({"retry-after": ["30"]}) == 30.0
    assert retry_after({"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}) == 0.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None


def test_secret_urls_are_redacted_even_when_only_their_path_is_quoted(tmp_path: Path) -> None:
    from tests.conftest import make_settings

    settings = make_settings("sqlite://", slack_webhook_url=f"https://hooks.slack.com{SLACK_HOOK}",
                             outbound_webhook_url=f"http://u:pa55word-x@h{OUT_HOOK}?k=v")
    fragments = secret_fragments(settings)
    text = f"Max retries exceeded with url: {SLACK_HOOK} and {OUT_HOOK}?k=v pa55word-x"
    assert "secret" not in redact(text, fragments) and "pa55word" not in redact(text, fragments)


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def stub() -> Iterator[SlackStub]:
    server = start_slack_stub()
    yield server
    server.stop()


def slack_settings(stub: SlackStub, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "slack_bot_token": BOT_TOKEN, "slack_channel": "#ops", "slack_api_url": stub.api_url,
        "grafana_url": GRAFANA, "alertmanager_url": ALERTMANAGER,
        "prometheus_external_url": PROMETHEUS, "runbook_base_url": RUNBOOKS,
        "notify_timeout_s": 1.0, "notify_backoff_s": 0.05, "notify_poll_s": 0.05}
    values.update(extra)
    return values


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"playbooks-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(text)
    return path


def sender_for(app: Any) -> OutboxSender:
    svc = app.extensions["autofix"]
    return OutboxSender(svc.database, svc.settings, svc.metrics, build_channels(svc.settings),
                        "test-sender")


def drain_runs(app: Any) -> None:
    runner = Runner(app.extensions["autofix"])
    while runner.run_once() is not None:
        pass


def post(app: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = app.test_client().post("/webhook/alertmanager", json=body,
                                      headers=webhook_headers())
    assert response.status_code == 200, response.json
    return dict(response.json)


def outbox(app: Any) -> list[Outbox]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(Outbox).order_by(Outbox.id)))


def sends(app: Any, channel: str, outcome: str) -> float:
    value = app.extensions["autofix"].metrics.registry.get_sample_value(
        "autofix_notification_sends_total", {"channel": channel, "outcome": outcome})
    return value or 0.0


# -- the outbox ------------------------------------------------------------------------------


def test_no_channel_configured_writes_no_outbox_row(db_url, app_factory, tmp_path) -> None:
    app = app_factory(db_url, playbooks=write(tmp_path, NOTIFY_PLAYBOOK))
    post(app, notification([alert({"container": "web"})]))
    drain_runs(app)
    post(app, notification([alert({"container": "web"}, status="resolved",
                                  ends_at=STARTS.replace(hour=11))]))
    assert outbox(app) == []


def test_emit_writes_only_inside_the_callers_transaction(db_url, app_factory, tmp_path) -> None:
    app = app_factory(db_url, outbound_webhook_url="http://127.0.0.1:9/x",
                      slack_webhook_url="http://127.0.0.1:9/y")
    post(app, notification([alert({"container": "web"})]))  # no playbook matches: no events
    database: Database = app.extensions["autofix"].database
    notifier = app.extensions["autofix"].notifier
    assert isinstance(notifier, OutboxNotifier)
    with database.session() as session:
        incident_id = session.scalars(select(Incident.id)).one()
    with pytest.raises(RuntimeError), database.session() as session:
        notifier.emit(session, Event("note", incident_id, {"text": "rolled back"}))
        raise RuntimeError("the caller's transaction fails")
    assert outbox(app) == []
    with database.session() as session:
        notifier.emit(session, Event("note", incident_id, {"text": "kept"}))
    assert [(r.channel, r.kind, r.status) for r in outbox(app)] == [
        ("slack_webhook", "note", "pending"), ("webhook", "note", "pending")]


def test_one_slack_thread_per_incident(db_url, app_factory, tmp_path, stub) -> None:
    app = app_factory(db_url, playbooks=write(tmp_path, NOTIFY_PLAYBOOK), **slack_settings(stub))
    post(app, notification([alert({"container": "web"}), alert({"container": "db"})]))
    drain_runs(app)
    post(app, notification([alert({"container": "web"}, status="resolved",
                                  ends_at=STARTS.replace(hour=11))]))
    assert sender_for(app).run_once() == 11
    messages = stub.messages()
    assert len(messages) == 11
    assert {m.headers["Authorization"] for m in messages} == {f"Bearer {BOT_TOKEN}"}
    assert {m.json()["channel"] for m in messages} == {"#ops"}
    by_target: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        target = m.json()["text"].split(" · ")[1].split(":")[0]
        by_target.setdefault(target, []).append({**m.json(), "ts": m.ts})
    for target, kinds in (("web", ["playbook_started", "step 1 notify", "looking at",
                                   "step 2 escalate", "escalated", "resolved"]),
                          ("db", ["playbook_started", "step 1 notify", "looking at",
                                  "step 2 escalate", "escalated"])):
        thread = by_target[target]
        root = thread[0]
        assert "thread_ts" not in root  # the first message opens the thread
        assert [m.get("thread_ts") for m in thread[1:]] == [root["ts"]] * (len(kinds) - 1)
        assert len(thread) == len(kinds)
        for message, expected in zip(thread, [k.replace("playbook_started",
                                                        "playbook tell-people started")
                                              for k in kinds], strict=True):
            assert expected in message["text"]
    assert by_target["web"][0]["ts"] != by_target["db"][0]["ts"]
    resolved = by_target["web"][-1]
    assert resolved["blocks"][0]["text"]["text"] == \
        ":large_green_circle: *TargetDown · web*: resolved after 1h 0m"
    buttons = {b["text"]["text"]: b["url"] for b in resolved["blocks"][-1]["elements"]}
    with app.extensions["autofix"].database.session() as session:
        web = session.scalars(select(Incident).where(Incident.container == "web")).one()
        assert web.time_to_resolve_s == 3600.0
    assert buttons == {
        "Source": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
        "Runbook": "https://runbooks.example/TargetDown",
        "Dashboard": f"{GRAFANA}/d/autofix-incidents/autofix-incidents?var-incident={web.id}",
        "Silence": f"{ALERTMANAGER}/#/silences/new?filter=%7Balertname%3D%22TargetDown%22%2C%20"
                   "container%3D%22web%22%2C%20severity%3D%22critical%22%7D",
    }
    rows = outbox(app)
    assert {r.status for r in rows} == {"sent"} and {r.attempts for r in rows} == {1}
    assert all(r.slack_ts for r in rows) and sum(r.thread_ts is None for r in rows) == 2
    assert sends(app, "slack", "sent") == 11


def test_every_channel_gets_the_event(db_url, app_factory, tmp_path, stub) -> None:
    app = app_factory(db_url, slack_webhook_url=f"{stub.url}{SLACK_HOOK}",
                      outbound_webhook_url=f"{stub.url}{OUT_HOOK}", **slack_settings(stub))
    post(app, notification([alert({"container": "web"})]))  # its run is never executed
    post(app, notification([alert({"container": "web"}, status="resolved",
                                  ends_at=STARTS.replace(minute=5))]))
    assert sender_for(app).run_once() == 3
    [slack] = stub.messages()
    [hook] = stub.for_path(SLACK_HOOK)
    [out] = stub.for_path(OUT_HOOK)
    with app.extensions["autofix"].database.session() as session:
        incident = IncidentInfo.from_row(session.scalars(select(Incident)).one())
    expected = build_slack_message(Event("resolved", incident.id), incident, links=LINKS)
    assert hook.json() == expected
    assert {k: slack.json()[k] for k in ("text", "blocks")} == expected
    assert out.json() == build_webhook_payload(Event("resolved", incident.id), incident,
                                               links=LINKS)
    assert out.json()["summary"] == "resolved after 5m 0s"
    [out_row] = [r for r in outbox(app) if r.channel == "webhook"]
    assert out.headers["Idempotency-Key"] == f"autofix-{out_row.id}"
    assert out.headers["Content-Type"] == "application/json"


def test_permanent_slack_error_fails_at_once(db_url, app_factory, tmp_path, stub) -> None:
    stub.script(POST_MESSAGE, Reply(200, {"ok": False, "error": "channel_not_found"}))
    app = app_factory(db_url, **slack_settings(stub))
    post(app, notification([alert({"container": "web"})]))
    post(app, notification([alert({"container": "web"}, status="resolved",
                                  ends_at=STARTS.replace(minute=1))]))
    assert sender_for(app).run_once() == 1
    [row] = outbox(app)
    assert (row.status, row.attempts, row.sent_at) == ("failed", 1, None)
    assert row.last_error == "chat.postMessage: channel_not_found"
    assert (sends(app, "slack", "failed"), sends(app, "slack", "retried")) == (1, 0)


def test_retries_stop_after_notify_max_attempts(db_url, app_factory, tmp_path, stub) -> None:
    stub.rule(OUT_HOOK, lambda _: Reply(503))
    app = app_factory(db_url, outbound_webhook_url=f"{stub.url}{OUT_HOOK}",
                      notify_max_attempts=3, notify_backoff_s=0.01)
    post(app, notification([alert({"container": "web"})]))
    post(app, notification([alert({"container": "web"}, status="resolved",
                                  ends_at=STARTS.replace(minute=1))]))
    sender = sender_for(app)
    wait_for(lambda: sender.run_once() == 0 and outbox(app)[0].status == "failed", 10,
             "gave up")
    [row] = outbox(app)
    assert (row.attempts, row.last_error) == (3, "webhook: HTTP 503")
    assert len(stub.for_path(OUT_HOOK)) == 3
    assert (sends(app, "webhook", "retried"), sends(app, "webhook", "failed")) == (2, 1)


# -- remediation never waits for notifications ------------------------------------------------


def fire_and_run(app: Any, container: Any) -> tuple[Runner, int]:
    runner = Runner(app.extensions["autofix"])
    runner.start()  # runner threads, heartbeat and this process's sender
    post(app, notification([alert({"container": container.name},
                                  starts_at=datetime.now(UTC))]))
    with app.extensions["autofix"].database.session() as session:
        incident_id = session.scalars(select(Incident.id)).one()
    return runner, incident_id


def run_row(app: Any) -> Run:
    with app.extensions["autofix"].database.session() as session:
        return session.scalars(select(Run)).one()


def test_rate_limited_slack_is_retried_after_retry_after_while_remediation_finishes(
        db_url, app_factory, tmp_path, stub, private_dockerd, docker_client) -> None:
    limited = threading.Event()
    limited.set()
    stub.rule(POST_MESSAGE, lambda _: Reply(429, {"ok": False, "error": "ratelimited"},
                                            {"Retry-After": "1"}) if limited.is_set() else None)
    app = app_factory(db_url, playbooks=write(tmp_path, RESTART_PLAYBOOK),
                      docker_host=private_dockerd.url,
                      **slack_settings(stub, notify_max_attempts=50))
    container = run_container(docker_client)
    before = started_at(container)
    runner, _ = fire_and_run(app, container)
    try:
        wait_for(lambda: run_row(app).status == "succeeded", 30, "run finished")
        wait_for(lambda: len(stub.for_path(POST_MESSAGE)) >= 2, 10, "a retry")
        limited.clear()  # Slack lets us through again
        wait_for(lambda: {r.status for r in outbox(app)} == {"sent"}, 30, "all sent")
    finally:
        runner.stop(timeout=10)
    assert started_at(container) != before  # the restart happened
    run, rows = run_row(app), outbox(app)
    # The evidence taken before the restart is a reply in the same thread.
    assert [r.kind for r in rows] == ["playbook_started", "evidence", "action_result",
                                      "action_result"]
    first = rows[0]
    assert run.finished_at is not None and first.sent_at is not None
    assert run.finished_at < first.sent_at  # remediation did not wait for Slack
    attempts = stub.for_path(POST_MESSAGE)
    limited_calls = [a for a in attempts if a.status == 429]
    assert first.attempts == len(limited_calls) + 1 >= 3
    # While the first message waited, nothing else of the incident overtook it, and every
    # retry honoured Retry-After: 1.
    assert all("started" in a.json()["text"] and "thread_ts" not in a.json()
               for a in limited_calls)
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts[:len(limited_calls) + 1])]
    assert min(gaps) >= 0.95, gaps
    root, *replies = stub.messages()
    assert [m.json().get("thread_ts") for m in replies] == [root.ts] * 3
    assert sends(app, "slack", "retried") == len(limited_calls)
    assert sends(app, "slack", "sent") == 4


@pytest.mark.parametrize("mode", ["answers 500", "hangs"])
def test_slack_and_webhook_down_or_slow_leave_remediation_alone(
        mode, db_url, app_factory, tmp_path, stub, private_dockerd, docker_client) -> None:
    reply = Reply(500) if mode == "answers 500" else Reply(200, delay_s=30)
    stub.rule(POST_MESSAGE, lambda _: reply)
    stub.rule(OUT_HOOK, lambda _: reply)
    app = app_factory(db_url, playbooks=write(tmp_path, RESTART_PLAYBOOK),
                      docker_host=private_dockerd.url,
                      outbound_webhook_url=f"{stub.url}{OUT_HOOK}",
                      **slack_settings(stub, notify_max_attempts=2))
    container = run_container(docker_client)
    before = started_at(container)
    runner, _ = fire_and_run(app, container)
    try:
        wait_for(lambda: run_row(app).status == "succeeded", 30, "run finished")
        wait_for(lambda: {r.status for r in outbox(app)} == {"failed"}, 60, "gave up")
    finally:
        runner.stop(timeout=10)
    assert started_at(container) != before
    rows = outbox(app)
    assert len(rows) == 8 and {r.attempts for r in rows} == {2}  # 4 events (evidence too)
    errors = {r.channel: r.last_error for r in rows}
    if mode == "answers 500":
        assert errors == {"slack": "chat.postMessage: HTTP 500 stub_error",
                          "webhook": "webhook: HTTP 500"}
    else:
        assert "timed out" in errors["slack"].lower() and "timeout" in errors["webhook"].lower()
    for channel in ("slack", "webhook"):
        assert (sends(app, channel, "retried"), sends(app, channel, "failed")) == (4, 4)
    assert OUT_HOOK not in "".join(r.last_error or "" for r in rows)


# -- schema ----------------------------------------------------------------------------------


def test_migration_0002_adds_and_removes_the_outbox(db_url) -> None:
    database = Database(db_url)
    try:
        assert "notification_outbox" in inspect(database.engine).get_table_names()
        command.downgrade(alembic_config(db_url), "0001")
        assert "notification_outbox" not in inspect(database.engine).get_table_names()
        command.upgrade(alembic_config(db_url), "head")
        assert "notification_outbox" in inspect(database.engine).get_table_names()
    finally:
        database.dispose()


def test_pruning_an_incident_removes_its_outbox_rows(db_url, app_factory) -> None:
    from datetime import timedelta

    from receiver.store.migrate import prune

    app = app_factory(db_url, outbound_webhook_url="http://127.0.0.1:9/x")
    post(app, notification([alert({"container": "web"})]))
    post(app, notification([alert({"container": "web"}, status="resolved",
                                  ends_at=STARTS.replace(minute=1))]))
    assert len(outbox(app)) == 1
    later = datetime.now(UTC) + timedelta(minutes=1)  # the rows are older than 0 s by then
    prune(app.extensions["autofix"].database, timedelta(seconds=0), now=later)
    assert outbox(app) == []


def test_a_sender_that_dies_mid_send_leaves_the_row_to_another(db_url, app_factory,
                                                                stub) -> None:
    from sqlalchemy import update

    app = app_factory(db_url, outbound_webhook_url=f"{stub.url}{OUT_HOOK}",
                      notify_max_attempts=2)
    post(app, notification([alert({"container": "web"})]))
    post(app, notification([alert({"container": "web"}, status="resolved",
                                  ends_at=STARTS.replace(minute=1))]))
    dead = sender_for(app)
    assert dead._claim() is not None  # claimed, then the process "dies" before sending
    assert sender_for(app).run_once() == 0  # leased: nobody else takes it yet
    database = app.extensions["autofix"].database

    def expire_lease() -> None:
        with database.session() as session:
            session.execute(update(Outbox).values(next_attempt_at=STARTS))

    expire_lease()
    assert sender_for(app).run_once() == 1
    [row] = outbox(app)
    assert (row.status, row.attempts, len(stub.for_path(OUT_HOOK))) == ("sent", 2, 1)
    # The same again, when the interrupted attempt was the last one allowed: given up.
    with database.session() as session:
        session.execute(update(Outbox).values(status="pending", attempts=1, sent_at=None,
                                              next_attempt_at=STARTS))
    assert dead._claim() is not None
    expire_lease()
    assert sender_for(app).run_once() == 1
    [row] = outbox(app)
    assert (row.status, row.attempts, len(stub.for_path(OUT_HOOK))) == ("failed", 2, 1)
    assert row.last_error == "last attempt interrupted"
