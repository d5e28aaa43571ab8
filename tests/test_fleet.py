"""Many Docker hosts, one receiver (#32): AUTOFIX_DOCKER_HOSTS parsed and validated, the
playbook's `host` rendered for each alert, and a target keyed `<host>/<name>` when several
hosts are configured. Runs on two in-memory executors; tests/test_fleet_docker.py does it
with two real dockerds, one behind TLS."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from receiver.config.settings import Settings
from receiver.domain.redaction import Redactor
from receiver.store.models import Action, Breaker, Incident, Run
from tests.harness.app_driver import drain
from tests.harness.clock import Clock
from tests.harness.memory_app import fire
from tests.harness.memory_executor import MemoryExecutor

TWO = json.dumps({"a": {"url": "tcp://127.0.0.1:2375"}, "b": {"url": "unix:///run/b.sock"}})

PLAYBOOK = """
playbooks:
  - name: restart-on-down
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
    circuit_breaker: {max_actions: 1, window: 10m, open_for: 10m, open_for_max: 20m,
                      reset_after: 30m}
    actions:
      - restart: {timeout_s: 5}
"""


# --- AUTOFIX_DOCKER_HOSTS -------------------------------------------------------------

def test_no_setting_is_the_one_host_local() -> None:
    assert list(Settings().fleet()) == ["local"]
    assert Settings(docker_host="unix:///x.sock").fleet()["local"].url == "unix:///x.sock"


def test_hosts_from_json_and_from_a_yaml_file(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    fleet = Settings(docker_hosts=TWO).fleet()
    assert list(fleet) == ["a", "b"] and fleet["a"].timeout_s is None
    path = tmp_path / "hosts.yml"
    path.write_text(f"""
edge-1:
  url: tcp://127.0.0.1:2376
  timeout_s: 5
  tls: {{ca: {tmp_path}/ca.pem, cert: {tmp_path}/cert.pem, key: {tmp_path}/key.pem}}
""")
    host = Settings(docker_hosts=str(path)).fleet()["edge-1"]
    assert host.timeout_s == 5 and host.tls is not None and host.tls.ca == tmp_path / "ca.pem"


@pytest.mark.parametrize(("value", "says"), [
    ('{"A": {"url": "tcp://127.0.0.1:1"}}', "host name 'A' must match"),
    ('{"a": {"url": "http://127.0.0.1:1"}}', "unix://, tcp:// or ssh://"),
    ('{"a": {"url": "tcp://127.0.0.1:1", "tlsverify": true}}', "tlsverify: Extra inputs"),
    ('{"a": {"url": "tcp://127.0.0.1:1", "tls": {"ca": "/nope/ca.pem", "cert": "/nope/c",'
     ' "key": "/nope/k"}}}', "no such file: /nope/ca.pem"),
    ('{"a": {"url": "tcp://127.0.0.1:1", "timeout_s": 0}}', "timeout_s"),
    ("{}", "at least one"),
    ("{not json", "AUTOFIX_DOCKER_HOSTS"),
    ("/nowhere/hosts.yml", "cannot read /nowhere/hosts.yml"),
])
def test_bad_hosts_are_refused_at_startup_naming_why(value: str, says: str) -> None:
    with pytest.raises(ValidationError, match="AUTOFIX_DOCKER_HOSTS") as raised:
        Settings(docker_hosts=value)
    assert says in str(raised.value)


def test_never_both_docker_host_and_docker_hosts() -> None:
    with pytest.raises(ValidationError, match="set one"):
        Settings(docker_host="unix:///x.sock", docker_hosts=TWO)


# --- the host of an alert, and a target per host ----------------------------------------

def _two_hosts(app_factory: Any, db_url: str, tmp_path: Path
               ) -> tuple[Any, MemoryExecutor, MemoryExecutor]:
    clock = Clock()
    hosts = {"a": MemoryExecutor(clock=clock), "b": MemoryExecutor(clock=clock)}
    for name, executor in hosts.items():
        container = executor.add("app")
        # Docker IDs are unique across daemons; the memory executor's are not by default.
        container.id = hashlib.sha256(f"{name}/app".encode()).hexdigest()
    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOK)
    app = app_factory(db_url, playbooks=path, docker_hosts=TWO, hosts=hosts)
    app.extensions["autofix"].clock = clock
    return app, hosts["a"], hosts["b"]


def _actions(app: Any) -> list[Action]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(Action).order_by(Action.id)))


def test_an_alert_acts_only_on_its_own_host(db_url, app_factory, tmp_path) -> None:
    app, on_a, on_b = _two_hosts(app_factory, db_url, tmp_path)
    fire(app.test_client(), {"alertname": "TargetDown", "container": "app", "host": "b"})
    drain(app)
    assert (on_a.restarts("app"), on_b.restarts("app")) == (0, 1)
    [restart] = [row for row in _actions(app) if row.action == "restart"]
    assert (restart.target, restart.outcome) == ("b/app", "succeeded")
    answer = app.test_client().get("/api/v1/runs?target=b/app", headers=_read()).json
    assert [(run["target"], run["docker_host"]) for run in answer["items"]] == [("b/app", "b")]
    assert restart.docker_host == "b"
    actions = app.test_client().get("/api/v1/actions?target=b/app", headers=_read()).json
    assert [row["docker_host"] for row in actions["items"]] == ["b"]


def test_an_open_breaker_on_one_host_does_not_stop_the_other(db_url, app_factory,
                                                              tmp_path) -> None:
    app, on_a, on_b = _two_hosts(app_factory, db_url, tmp_path)
    client = app.test_client()
    fire(client, {"alertname": "TargetDown", "container": "app", "host": "a"})
    drain(app)
    clock = app.extensions["autofix"].clock
    clock.advance(300)  # a new occurrence, well after the restart: the breaker stops it
    fire(client, {"alertname": "TargetDown", "container": "app", "host": "a"},
         starts=clock.now - timedelta(seconds=10))
    drain(app)
    with app.extensions["autofix"].database.session() as session:
        assert {b.target: b.state for b in session.scalars(select(Breaker))} == {"a/app": "open"}
    fire(client, {"alertname": "TargetDown", "container": "app", "host": "b"})
    drain(app)
    assert (on_a.restarts("app"), on_b.restarts("app")) == (1, 1)
    skipped = [row.reason for row in _actions(app) if row.outcome == "skipped"]
    assert skipped == ["breaker_open"]


@pytest.mark.parametrize("labels", [{}, {"host": ""}, {"host": "c"}])
def test_an_alert_without_a_known_host_skips_unknown_host_and_escalates(
        db_url, app_factory, tmp_path, labels) -> None:
    app, on_a, on_b = _two_hosts(app_factory, db_url, tmp_path)
    fire(app.test_client(), {"alertname": "TargetDown", "container": "app", **labels})
    drain(app)
    assert on_a.calls == on_b.calls == []
    [guard] = _actions(app)
    assert (guard.outcome, guard.reason) == ("skipped", "unknown_host")
    assert "the configured hosts are a, b" in (guard.error or "")
    with app.extensions["autofix"].database.session() as session:
        assert [i.status for i in session.scalars(select(Incident))] == ["escalated"]
        assert [r.status for r in session.scalars(select(Run))] == ["skipped"]


def test_one_host_keeps_todays_plain_keys_and_ignores_the_host_label(
        db_url, app_factory, tmp_path) -> None:
    executor = MemoryExecutor()
    executor.add("app")
    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOK)
    app = app_factory(db_url, playbooks=path, executor=executor)
    fire(app.test_client(), {"alertname": "TargetDown", "container": "app", "host": "zz"})
    drain(app)
    assert executor.restarts("app") == 1
    assert [(row.target, row.docker_host) for row in _actions(app)] == [("app", None)]


def _read() -> dict[str, str]:
    from tests.conftest import api_headers
    return api_headers()


def test_the_deploy_guides_hosts_file_loads(tmp_path: Path) -> None:
    """docs/examples/docker-hosts.yml (docs/deploy.md, Fleet), its TLS files made up."""
    text = (Path(__file__).resolve().parents[1] / "docs/examples/docker-hosts.yml").read_text()
    text = text.replace("/etc/autofix", str(tmp_path))
    for host in ("edge-1", "edge-2"):
        (tmp_path / "docker" / host).mkdir(parents=True)
        for name in ("ca.pem", "cert.pem", "key.pem"):
            (tmp_path / "docker" / host / name).write_text("x")
    path = tmp_path / "docker-hosts.yml"
    path.write_text(text)
    fleet = Settings(docker_hosts=str(path)).fleet()
    assert list(fleet) == ["edge-1", "edge-2"]
    assert all(spec.tls is not None and spec.url.endswith(":2376") for spec in fleet.values())
    assert fleet["edge-2"].timeout_s == 10


def test_a_breaker_is_reset_by_its_host_qualified_name(db_url, app_factory, tmp_path) -> None:
    app, _, _ = _two_hosts(app_factory, db_url, tmp_path)
    with app.extensions["autofix"].database.session() as session:
        session.add(Breaker(target="a/app", state="open"))
    answer = app.test_client().post("/api/v1/breakers/a/app/reset", headers=_read(),
                                    json={"actor": "alice", "reason": "fixed"})
    assert answer.status_code == 200, answer.json
    with app.extensions["autofix"].database.session() as session:
        assert {b.target: b.state for b in session.scalars(select(Breaker))} == {
            "a/app": "closed"}


def test_migration_0016_docker_host_goes_down_and_up(db_url: str) -> None:
    from alembic import command
    from sqlalchemy import create_engine, inspect

    from receiver.store.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(db_url), "0015")
    engine = create_engine(db_url)
    try:
        for table in ("runs", "actions"):
            assert "docker_host" not in {c["name"] for c in inspect(engine).get_columns(table)}
        upgrade(db_url)
        for table in ("runs", "actions"):
            assert "docker_host" in {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_each_worker_reads_the_hosts_file_again_on_sighup(sqlite_url, tmp_path: Path,
                                                          caplog) -> None:
    """gunicorn starts new workers on SIGHUP, each calling load(): the file is read again;
    a file that no longer validates keeps the hosts of the start."""
    from receiver.serving.serve import _Gunicorn
    from tests.conftest import make_settings

    path = tmp_path / "hosts.yml"
    path.write_text("a: {url: 'tcp://127.0.0.1:1'}\nb: {url: 'tcp://127.0.0.1:2'}\n")
    settings = make_settings(sqlite_url, docker_hosts=str(path))
    gunicorn = _Gunicorn(settings, {}, Redactor([]))
    loaded = []
    for text in ("a: {url: 'tcp://127.0.0.1:1'}\nc: {url: 'tcp://127.0.0.1:3'}\n",
                 "a: {url: 'tcp://127.0.0.1:1', bogus: 1}\n"):
        path.write_text(text)
        app = gunicorn.load()
        loaded.append(app.extensions["autofix"].executors.hosts())
        app.extensions["autofix"].database.dispose()
    assert loaded == [("a", "c"), ("a", "b")]
    [kept] = [r for r in caplog.records if "not reloaded" in r.getMessage()]
    assert "bogus: Extra inputs are not permitted" in kept.error


# --- GET /api/v1/targets/{target}/dependents, per host -----------------------------------

def test_dependents_are_asked_of_the_named_host_only(db_url, app_factory, tmp_path) -> None:
    app, on_a, _ = _two_hosts(app_factory, db_url, tmp_path)
    on_a.add("sidecar", network_mode="container:app")  # only host a's app has one
    client = app.test_client()

    def get(path: str) -> Any:
        target, _, query = path.partition("?")
        return client.get(f"/api/v1/targets/{target}/dependents?{query}", headers=_read())

    # The host in the path (the slash as is, or URL-encoded), or as ?host=.
    for path in ("a/app", "a%2Fapp", "app?host=a"):
        got = get(path)
        assert got.status_code == 200, (path, got.json)
        assert (got.json["target"], got.json["host"]) == ("a/app", "a")
        assert [d["name"] for d in got.json["dependents"]] == ["sidecar"]
    on_b = get("b/app").json
    assert (on_b["target"], on_b["host"], on_b["dependents"]) == ("b/app", "b", [])
    assert get("app?host=b").json == on_b

    # Two hosts and none named: never a guess.
    bare = get("app")
    assert bare.status_code == 404 and bare.json["reason"] == "host_required"
    assert "<host>/<name> or ?host=" in bare.json["message"]
    for path in ("zz/app", "app?host=zz"):
        unknown = get(path)
        assert unknown.status_code == 404, path
        assert unknown.json == {"error": "not_found", "reason": "unknown_host",
                                "hosts": ["a", "b"],
                                "message": "no Docker host named 'zz' (AUTOFIX_DOCKER_HOSTS:"
                                           " a, b)"}
    assert get("a/nosuch").status_code == 404
    assert "on a" in get("a/nosuch").json["message"]
    assert get("a/app?host=b").status_code == 400  # two hosts named
    assert get("app?host=").status_code == 400
    assert get("app?hots=a").status_code == 400  # an unknown parameter


def test_one_host_answers_by_name_or_by_its_host_name(db_url, app_factory, tmp_path) -> None:
    from tests.harness.memory_app import make_app
    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK)
    executor.add("app")
    executor.add("sidecar", network_mode="container:app")
    client = app.test_client()
    for path, query in (("app", ""), ("local/app", ""), ("app", "host=local")):
        got = client.get(f"/api/v1/targets/{path}/dependents?{query}", headers=_read())
        assert got.status_code == 200, (path, got.json)
        assert (got.json["target"], got.json["host"]) == ("app", None)  # one host: plain keys
    unknown = client.get("/api/v1/targets/app/dependents?host=b", headers=_read())
    assert unknown.status_code == 404 and unknown.json["reason"] == "unknown_host"
