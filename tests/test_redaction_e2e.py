"""Issue #26's secret shapes, injected through the real paths, never leave the process: an
alert's annotations and generatorURL, a container's log lines and health output (real
dockerd), an `exec` step's output, an `http` step's headers. Checked: every API answer,
the evidence log text, every Slack payload (the local Slack stand-in) and every log line."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from receiver.notify.channels import build_channels
from receiver.notify.outbox import OutboxSender
from receiver.telemetry.logs import JsonFormatter
from tests.conftest import api_headers, webhook_headers
from tests.harness.app_driver import drain
from tests.harness.containers import run_container
from tests.harness.procs import wait_for
from tests.harness.slack_stub import SlackStub
from tests.payloads import alert, notification
from tests.redaction_worst import CORPUS

MARKED = [line.replace("\\n", "\n") for line in (CORPUS / "secrets.txt").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
SECRETS = [line.split("<<S>>", 1)[1].split("<</S>>", 1)[0] for line in MARKED]
LINES = [line.replace("<<S>>", "").replace("<</S>>", "") for line in MARKED]
HEALTH_SECRET = "sk_test_healthcheck0123456789"
EXEC_SECRETS = ["exec-db-pass-0451", "sk_live_execoutput0123456789"]
HTTP_SECRETS = ["http-bearer-token-8c1f", "http-api-key-77aa"]
EXPR_SECRET = "expr-secret-2b9d"
PLAYBOOK = """
playbooks:
  - name: leaky
    matchers: ['alertname="TargetDown"']
    target: "{{{{ labels.container }}}}"
    cooldown: 0s
    actions:
      - capture: {{}}
      - http:
          method: POST
          url: "{hook}"
          headers: {{Authorization: "Bearer {bearer}", X-Api-Key: "{api_key}"}}
      - exec: {{argv: [sh, -c, "echo export DB_PASS={exec0}; echo STRIPE_KEY={exec1}; exit 3"]}}
"""


@pytest.fixture
def slack() -> Any:
    stub = SlackStub().start()
    yield stub
    stub.stop()


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def test_no_secret_shape_leaves_through_api_slack_or_logs(
        pg_url: str, app_factory: Any, private_dockerd: Any, slack: SlackStub,
        tmp_path: Path) -> None:
    hook = f"{slack.url}/hook"
    playbooks = tmp_path / "playbooks.yml"
    playbooks.write_text(PLAYBOOK.format(hook=hook, bearer=HTTP_SECRETS[0],
                                         api_key=HTTP_SECRETS[1], exec0=EXEC_SECRETS[0],
                                         exec1=EXEC_SECRETS[1]))
    host = slack.url.split("://", 1)[1]
    app = app_factory(pg_url, docker_host=private_dockerd.url, playbooks=playbooks,
                      http_allowed_hosts=[host], slack_bot_token="xoxb-test-bot-token-1",
                      slack_channel="#ops", slack_api_url=slack.api_url,
                      prometheus_url="http://127.0.0.1:9")
    svc = app.extensions["autofix"]
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    handler.setFormatter(JsonFormatter([], svc.redactor))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        client = private_dockerd.client()
        container = run_container(
            client, command=["sh", "-c", 'printf "%s\\n" "$LEAK"; '
                             "trap 'exit 0' TERM; while :; do sleep 0.1; done"],
            environment={"LEAK": "\n".join(LINES)},
            healthcheck={"test": ["CMD", "sh", "-c", f"echo STRIPE_KEY={HEALTH_SECRET}"],
                         "interval": 300_000_000, "start_period": 0, "retries": 3})
        wait_for(lambda: (container.reload() or True) and
                 (container.attrs["State"].get("Health") or {}).get("Log"), 20,
                 "a health check")
        body = notification([alert({"container": container.name},
                                   annotations={f"s{i:02}": line
                                                for i, line in enumerate(LINES)},
                                   starts_at=datetime.now(UTC))])
        expr = f'up{{job="x", password="{EXPR_SECRET}"}} == 0'
        body["alerts"][0]["generatorURL"] = f"http://prometheus:9090/graph?g0.expr={quote(expr)}"
        api = app.test_client()
        assert api.post("/webhook/alertmanager", json=body,
                        headers=webhook_headers()).status_code == 200
        drain(app)
        sender = OutboxSender(svc.database, svc.settings, svc.metrics,
                              build_channels(svc.settings), "test", redactor=svc.redactor)
        while sender.send_one():
            pass
    finally:
        root.removeHandler(handler)

    answers: list[Any] = []
    incidents = api.get("/api/v1/incidents", headers=api_headers()).json
    answers.append(incidents)
    for item in incidents["items"]:
        detail = api.get(f"/api/v1/incidents/{item['id']}", headers=api_headers()).json
        answers.append(detail)
        for evidence in detail["evidence"]:
            answers.append(api.get(evidence["logs_url"], headers=api_headers()).text)
    for path in ("/api/v1/actions", "/api/v1/playbooks"):
        answers.append(api.get(path, headers=api_headers()).json)
    shown = "\n".join(_strings(answers))
    # The paths were taken: the lines, the health output, the steps all reached the API.
    assert "[redacted]" in shown
    assert "STRIPE_KEY=[redacted]" in shown and "exit 3" in shown
    assert any(r.path == "/hook" for r in slack.requests), "the http step ran"
    sent = "\n".join(_strings([m.body for m in slack.messages()]))
    assert slack.messages() and "[redacted]" in sent
    lines = logged.getvalue()
    for secret in [*SECRETS, HEALTH_SECRET, *EXEC_SECRETS, *HTTP_SECRETS, EXPR_SECRET]:
        if len(secret) < 6:
            continue
        assert secret not in shown, ("API", secret)
        assert secret not in sent, ("Slack", secret)
        assert secret not in lines, ("log", secret)
