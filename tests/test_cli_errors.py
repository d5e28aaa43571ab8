"""Every settings, connection and CLI mistake is one line naming the setting and the fix,
exit code 2, never a traceback: run as the operator runs it, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest

from receiver.config.settings import Settings
from tests.harness.postgres import LOOPBACK, Postgres

REPO = Path(__file__).resolve().parents[1]
TOKENS = {"AUTOFIX_WEBHOOK_TOKEN": "whk-cli-errors-4b7d9e2a6c",
          "AUTOFIX_API_TOKEN": "api-cli-errors-8f1c3a5e7d"}


def autofix(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO,
            timeout: float = 90) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFIX_")}
    return subprocess.run([sys.executable, "-m", "receiver.ops.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**clean, **(env or {})}, cwd=cwd)


def assert_one_line(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def password_role(postgres: Postgres) -> tuple[str, str, str]:
    """A role that must give its password (the shared server trusts everyone else)."""
    role, password = f"pw_{uuid.uuid4().hex[:8]}", "right-" + uuid.uuid4().hex[:8]
    database = postgres.create_database().rsplit("/", 1)[1]
    conn = psycopg2.connect(postgres.admin_dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        cur.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')
        hba = Path(postgres.data) / "pg_hba.conf"
        rule = f"host all {role} {LOOPBACK}/32 scram-sha-256\n"
        hba.write_text(rule + hba.read_text())  # first match wins: only this role
        cur.execute("SELECT pg_reload_conf()")
    conn.close()
    return role, password, database


def test_postgres_urls_without_a_driver_use_psycopg2(postgres: Postgres) -> None:
    for scheme in ("postgresql", "postgres"):
        url = postgres.create_database().replace("postgresql+psycopg2", scheme)
        done = autofix("db", "upgrade", env={"AUTOFIX_DATABASE_URL": url})
        assert done.returncode == 0 and "database at head" in done.stdout, done.stderr
    assert Settings(database_url="postgres://u@h/d").database_url == "postgresql+psycopg2://u@h/d"


@pytest.mark.parametrize("command", [("db", "upgrade"), ("serve", "--bind", "127.0.0.1:1")])
@pytest.mark.parametrize("mistake", ["password", "port", "database"])
def test_a_wrong_password_port_or_database_is_one_line(
        mistake: str, command: tuple[str, ...], postgres: Postgres,
        password_role: tuple[str, str, str]) -> None:
    role, password, database = password_role
    port = postgres.port
    if mistake == "password":
        password = "wrong"
    elif mistake == "port":
        port = 1
    else:
        database = "no_such_database"
    url = f"postgresql://{role}:{password}@{LOOPBACK}:{port}/{database}"
    done = autofix(*command, env={"AUTOFIX_DATABASE_URL": url, **TOKENS})
    hint = {"password": "password authentication failed",
            "port": "check the host and port", "database": "does not exist"}[mistake]
    line = assert_one_line(done, "AUTOFIX_DATABASE_URL", hint)
    assert "wrong" not in line or mistake != "password", "the password must not be shown"


def test_the_right_password_works(password_role: tuple[str, str, str],
                                  postgres: Postgres) -> None:
    role, password, database = password_role
    url = f"postgresql://{role}:{password}@{LOOPBACK}:{postgres.port}/{database}"
    done = autofix("db", "upgrade", env={"AUTOFIX_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("command", "env", "needles"), [
    (("db", "upgrade"), {"AUTOFIX_DATABASE_URL": "mysql://u:p@h/d"},
     ("AUTOFIX_DATABASE_URL", "unsupported scheme 'mysql'", "postgresql://")),
    (("db", "upgrade"), {"AUTOFIX_DATABASE_URL": "postgresql+psycopg://u@h/d"},
     ("AUTOFIX_DATABASE_URL", "unsupported scheme")),
    (("db", "upgrade"), {"AUTOFIX_DATABASE_URL": "sqlite:////no/such/dir/x.db"},
     ("AUTOFIX_DATABASE_URL", "unable to open database file", "directory must exist")),
    (("serve",), {"AUTOFIX_MAX_BODY_BYTES": "lots"}, ("AUTOFIX_MAX_BODY_BYTES", "'lots'")),
    (("serve",), {"AUTOFIX_PROTECTED_CONTAINERS": '["a", '},
     ("AUTOFIX_PROTECTED_CONTAINERS", "not a JSON list", "a,b")),
    (("check-config", "receiver/playbooks.yml"), {"AUTOFIX_LOG_LEVEL": "LOUD"},
     ("AUTOFIX_LOG_LEVEL", "'DEBUG'")),
    (("check-config", "receiver/playbooks.yml"), {"AUTOFIX_HTTP_ALLOWED_HOSTS": "[1"},
     ("AUTOFIX_HTTP_ALLOWED_HOSTS",)),
    (("db", "prune", "--older-than", "1d"), {"AUTOFIX_DATABASE_URL": "postgres:/x"},
     ("AUTOFIX_DATABASE_URL", "not a database URL")),
])
def test_a_bad_setting_is_one_line(command: tuple[str, ...], env: dict[str, str],
                                   needles: tuple[str, ...], tmp_path: Path) -> None:
    env = {"AUTOFIX_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", **TOKENS, **env}
    assert_one_line(autofix(*command, env=env), *needles)


def test_list_settings_accept_commas_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOFIX_PROTECTED_CONTAINERS", "db, receiver ,")
    monkeypatch.setenv("AUTOFIX_HTTP_ALLOWED_HOSTS", '["a.example", "b.example"]')
    settings = Settings()
    assert settings.protected_containers == ["db", "receiver"]
    assert settings.http_allowed_hosts == ["a.example", "b.example"]
    monkeypatch.setenv("AUTOFIX_HTTP_ALLOWED_HOSTS", "one.example")
    assert Settings().http_allowed_hosts == ["one.example"]


def test_docs_outside_the_repository_is_one_line(tmp_path: Path) -> None:
    assert_one_line(autofix("docs", cwd=tmp_path), "README.md", "--file")
    (tmp_path / "README.md").write_text("# not ours\n")
    assert_one_line(autofix("docs", cwd=tmp_path), "no <!-- reference:")


def test_version() -> None:
    from receiver.domain.version import build_version

    done = autofix("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"autofix {build_version()}"


@pytest.mark.parametrize("command", [("db", "upgrade"), ("serve", "--bind", "127.0.0.1:1")])
@pytest.mark.parametrize("password", ["zq7@kx9#mv2", "jt4/wr8@hn6", "bx5?lp3@ck1"])
def test_a_database_password_with_an_unencoded_at_or_hash_is_refused_without_quoting_it(
        command: tuple[str, ...], password: str) -> None:
    """Parsed as it stands, pieces of such a password become the host or the database
    name, and the connection error quoted them (issue #26, finding 5)."""
    url = f"postgresql://autofix:{password}@{LOOPBACK}:1/autofix"
    done = autofix(*command, env={"AUTOFIX_DATABASE_URL": url, **TOKENS})
    line = assert_one_line(done, "AUTOFIX_DATABASE_URL", "percent-encode")
    pieces = [p for p in password.replace("@", " ").replace("#", " ").replace("/", " ")
              .replace("?", " ").split() if len(p) > 2]
    assert not any(piece in done.stderr + done.stdout for piece in pieces), line
    encoded = f"postgresql://autofix:{quote(password, safe='')}@{LOOPBACK}:1/autofix"
    assert Settings(database_url=encoded).database_url.endswith("@127.0.0.1:1/autofix")
