"""Settings (env, *_FILE secrets), and the `autofix` command: serve, check-config, db."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from receiver.config.settings import Settings
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN
from tests.harness.procs import wait_for
from tests.harness.receiver import start_receiver

REPO = Path(__file__).resolve().parents[1]


def autofix(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run([sys.executable, "-m", "receiver.ops.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          cwd=REPO)


def test_secrets_can_come_from_files(tmp_path, monkeypatch) -> None:
    (tmp_path / "wh").write_text("from-file-0123456789\n")
    monkeypatch.setenv("AUTOFIX_WEBHOOK_TOKEN_FILE", str(tmp_path / "wh"))
    monkeypatch.setenv("AUTOFIX_API_TOKEN", "from-env-0123456789")
    settings = Settings()
    assert settings.secret("webhook_token") == "from-file-0123456789"
    assert settings.secret("api_token") == "from-env-0123456789"
    assert "from-file" not in repr(settings)


def test_unreadable_secret_file_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOFIX_API_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="AUTOFIX_API_TOKEN_FILE: cannot read"):
        Settings()


def test_serve_refuses_to_start_without_tokens(sqlite_url) -> None:
    done = autofix("serve", "--bind", "127.0.0.1:1", env={"AUTOFIX_DATABASE_URL": sqlite_url,
                                                          "AUTOFIX_WEBHOOK_TOKEN": "",
                                                          "AUTOFIX_API_TOKEN": ""})
    assert done.returncode == 2
    assert "AUTOFIX_WEBHOOK_TOKEN" in done.stderr and "AUTOFIX_API_TOKEN" in done.stderr


def test_invalid_setting_names_the_variable(sqlite_url) -> None:
    done = autofix("serve", env={"AUTOFIX_DATABASE_URL": sqlite_url,
                                 "AUTOFIX_MAX_BODY_BYTES": "lots"})
    assert done.returncode == 2 and "AUTOFIX_MAX_BODY_BYTES" in done.stderr


def test_unauthenticated_mode_warns_at_every_start(sqlite_url, tmp_path) -> None:
    for attempt in range(2):
        receiver = start_receiver(sqlite_url, root=tmp_path / f"r{attempt}",
                                  env={"AUTOFIX_ALLOW_UNAUTHENTICATED": "true",
                                       "AUTOFIX_WEBHOOK_TOKEN": "", "AUTOFIX_API_TOKEN": ""})
        receiver.stop()
        assert "AUTOFIX_ALLOW_UNAUTHENTICATED=true" in receiver.log()


def test_check_config_prints_each_error_with_its_line(tmp_path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("playbooks:\n"
                   "  - name: a\n"
                   "    matchers: ['alertname=\"A\"']\n"
                   "    actions:\n"
                   "      - restart: {timeout_s: soon}\n"
                   "      - teleport: {}\n")
    done = autofix("check-config", str(bad), "--no-rules")
    assert done.returncode == 1
    assert f"{bad}:5:19: playbooks.0.actions.0.restart.timeout_s" in done.stderr
    assert f"{bad}:6:9: playbooks.0.actions.1: unknown action 'teleport'" in done.stderr
    shipped = autofix("check-config", "receiver/playbooks.yml")
    assert shipped.returncode == 0 and "OK" in shipped.stdout


WEAK_SECRET = "s1gn-s3cr3t"


@pytest.mark.parametrize(("env", "expected"), [
    ({"AUTOFIX_WEBHOOK_TOKEN": "short-token", "AUTOFIX_API_TOKEN": API_TOKEN},
     "AUTOFIX_WEBHOOK_TOKEN: must be at least 16 characters, got 11"),
    ({"AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": " " * 20},
     "AUTOFIX_API_TOKEN: must not be blank (whitespace only)"),
    ({"AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": WEBHOOK_TOKEN},
     "AUTOFIX_WEBHOOK_TOKEN and AUTOFIX_API_TOKEN must differ"),
    ({"AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
      "AUTOFIX_HTTP_ALLOWED_HOSTS": '["LocalHost"]'},
     "AUTOFIX_HTTP_ALLOWED_HOSTS: the host must be lower case"),
    # #26: a 1-character signing secret, or one equal to a token, was accepted.
    ({"AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
      "AUTOFIX_SLACK_SIGNING_SECRET": "Q"},
     "AUTOFIX_SLACK_SIGNING_SECRET: must be at least 16 characters, got 1"),
    ({"AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
      "AUTOFIX_SLACK_SIGNING_SECRET": WEAK_SECRET},
     "AUTOFIX_SLACK_SIGNING_SECRET: must be at least 16 characters, got 11"),
    ({"AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
      "AUTOFIX_SLACK_SIGNING_SECRET": API_TOKEN},
     "AUTOFIX_API_TOKEN and AUTOFIX_SLACK_SIGNING_SECRET must differ"),
    ({"AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
      "AUTOFIX_SLACK_SIGNING_SECRET": WEBHOOK_TOKEN},
     "AUTOFIX_WEBHOOK_TOKEN and AUTOFIX_SLACK_SIGNING_SECRET must differ"),
])
def test_weak_secrets_stop_serve_and_check_config_with_one_line(sqlite_url, env,
                                                                 expected) -> None:
    env = {"AUTOFIX_DATABASE_URL": sqlite_url, **env}
    for args in (("serve", "--bind", "127.0.0.1:1"), ("check-config", "receiver/playbooks.yml")):
        done = autofix(*args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and "input_value" not in done.stderr
        for secret in (WEBHOOK_TOKEN, API_TOKEN, "short-token", WEAK_SECRET):
            assert secret not in done.stderr


def test_world_readable_secret_file_is_a_warning(tmp_path) -> None:
    token_file = tmp_path / "api"
    token_file.write_text(API_TOKEN)
    token_file.chmod(0o644)
    env = {"AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN_FILE": str(token_file)}
    done = autofix("check-config", "receiver/playbooks.yml", env=env)
    assert done.returncode == 0, done.stderr
    assert "AUTOFIX_API_TOKEN_FILE" in done.stderr and "readable by every user" in done.stderr
    token_file.chmod(0o600)
    quiet = autofix("check-config", "receiver/playbooks.yml", env=env)
    assert quiet.returncode == 0 and "readable" not in quiet.stderr


def test_serve_logs_a_world_readable_secret_file(sqlite_url, tmp_path) -> None:
    token_file = tmp_path / "wh"
    token_file.write_text(WEBHOOK_TOKEN)
    token_file.chmod(0o604)
    receiver = start_receiver(sqlite_url, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN_FILE": str(token_file), "AUTOFIX_API_TOKEN": API_TOKEN})
    receiver.stop()
    lines = [json.loads(line) for line in receiver.log().splitlines()
             if "readable by every user" in line]
    assert lines and lines[0]["level"] == "warning", receiver.log()[-2000:]
    assert WEBHOOK_TOKEN not in receiver.log()


def test_check_config_refuses_a_static_url_off_the_allowlist(tmp_path) -> None:
    env = {"AUTOFIX_HTTP_ALLOWED_HOSTS": '["allowed.invalid", "127.0.0.1:8080"]'}
    head = "playbooks:\n  - name: hook\n    matchers: ['alertname=\"A\"']\n    actions:\n"
    path = tmp_path / "http.yml"
    path.write_text(head + "      - http: {url: 'http://127.0.0.1:9\\@allowed.invalid/'}\n")
    done = autofix("check-config", str(path), "--no-rules", env=env)
    assert done.returncode == 1
    assert f"{path}:5:16: playbooks.0.actions.0.http.url" in done.stderr
    assert "backslash" in done.stderr
    path.write_text(head + "      - http: {url: 'http://127.0.0.1:9/'}\n")
    done = autofix("check-config", str(path), "--no-rules", env=env)
    assert done.returncode == 1
    assert "playbooks.0.actions.0.http.url: 127.0.0.1:9 (port 9) is not in" in done.stderr
    path.write_text(head + "      - http: {url: 'http://127.0.0.1:8080/hook'}\n")
    assert autofix("check-config", str(path), "--no-rules", env=env).returncode == 0


def test_db_upgrade_and_prune(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert autofix("db", "upgrade", env={"AUTOFIX_DATABASE_URL": url}).returncode == 0
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("insert into notifications (received_at, group_key, receiver, status,"
                          " alert_count, truncated_alerts, external_url, payload) values "
                          "('2020-01-01 00:00:00', 'g', 'r', 'firing', 0, 0, '', '{}')"))
    engine.dispose()
    done = autofix("db", "prune", "--older-than", "180d", env={"AUTOFIX_DATABASE_URL": url})
    assert done.returncode == 0 and "notifications=1" in done.stdout
    bad = autofix("db", "prune", "--older-than", "a while", env={"AUTOFIX_DATABASE_URL": url})
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def _playbook_names(url: str) -> list[str]:
    request = urllib.request.Request(f"{url}/api/v1/playbooks",
                                     headers={"Authorization": f"Bearer {API_TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return [p["name"] for p in json.loads(response.read())["items"]]


def test_sighup_reloads_and_a_bad_file_keeps_the_old_config(pg_url, tmp_path) -> None:
    path = tmp_path / "playbooks.yml"
    path.write_text("playbooks:\n  - name: one\n    matchers: ['a=\"b\"']\n"
                    "    actions: [notify: {}]\n")
    receiver = start_receiver(pg_url, workers=2, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_PLAYBOOKS": str(path)})
    try:
        path.write_text(path.read_text().replace("one", "two"))
        receiver.process.send_signal(signal.SIGHUP)
        wait_for(lambda: _playbook_names(receiver.url) == ["two"], 30, "reload to two")
        path.write_text("playbooks: [this is not valid")
        receiver.process.send_signal(signal.SIGHUP)
        wait_for(lambda: receiver.log().count("keeping version") >= 2, 60,
                 "both new workers refuse the bad file")
        for _ in range(6):  # whichever worker answers, the old config is live
            assert _playbook_names(receiver.url) == ["two"]
    finally:
        receiver.stop()


def test_sigterm_shuts_down_gracefully(sqlite_url, tmp_path) -> None:
    receiver = start_receiver(sqlite_url, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN})
    assert receiver.process is not None and receiver.process.proc is not None
    receiver.process.send_signal(signal.SIGTERM)
    assert receiver.process.proc.wait(30) == 0


def test_retention_setting_prunes_from_the_runner(db_url, app_factory) -> None:
    from datetime import UTC, datetime, timedelta

    from receiver.runtime.runner import Runner
    from receiver.store.models import Notification

    app = app_factory(db_url, retention_days=30)
    database = app.extensions["autofix"].database
    with database.session() as session:
        for age_days in (40, 1):
            session.add(Notification(received_at=datetime.now(UTC) - timedelta(days=age_days),
                                     group_key="g", receiver="r", status="firing",
                                     alert_count=0, payload={}))
    runner = Runner(app.extensions["autofix"])
    [retention] = [lane for lane in runner._periodic.lanes if lane.name == "retention"]
    [job] = retention.jobs
    assert job.at_start and job.interval_s == 3600  # then hourly
    job.fn()
    with database.session() as session:
        ages = [row.received_at for row in session.query(Notification)]
    assert len(ages) == 1 and ages[0] > datetime.now(UTC) - timedelta(days=2)
