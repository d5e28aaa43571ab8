"""Action budgets and the host storm guard on SQLite and PostgreSQL, with the memory
executor and the injected clock (the Docker runs are in test_blast_radius_docker.py)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.actions.builtin import build_registry
from receiver.domain.errors import ConfigError
from receiver.playbooks.config import parse_playbooks
from receiver.runtime.runner import Runner
from tests.conftest import api_headers, webhook_headers
from tests.harness.app_driver import actions, drain, incidents, runs
from tests.harness.memory_app import fire, make_app
from tests.payloads import alert, notification

RESTART = """
playbooks:
  - name: {name}
    matchers: ['alertname="{alert}"']
    target: "{{{{ labels.container }}}}"
    cooldown: 0s
{budget}
    actions:
      - restart: {{timeout_s: 5}}
"""


def _playbook(name: str = "restart", alert: str = "TargetDown", budget: str = "") -> str:
    return RESTART.format(name=name, alert=alert, budget=budget)


def _params() -> dict[str, Any]:
    return {spec.name: spec.params for spec in build_registry().specs()}


def _reasons(app: Any, target: str) -> list[str | None]:
    return [a.reason for a in actions(app, target) if a.action == "guard"]


# --- config -----------------------------------------------------------------------------

def test_budget_is_one_mapping_or_a_list() -> None:
    one = parse_playbooks(_playbook(budget="    budget: {actions: 2, per: 10m, scope: fleet}"),
                          _params())
    [budget] = one.playbooks[0].budgets
    assert (budget.actions, budget.per_s, budget.scope) == (2, 600.0, "fleet")
    several = parse_playbooks(_playbook(budget=(
        "    budget:\n      - {actions: 2, per: 10m, scope: fleet}\n"
        "      - {actions: 1, per: 90, scope: host}")), _params())
    assert [(b.scope, b.per_s) for b in several.playbooks[0].budgets] == [("fleet", 600.0),
                                                                          ("host", 90.0)]
    assert parse_playbooks(_playbook(), _params()).playbooks[0].budgets == []


@pytest.mark.parametrize(("budget", "says"), [
    ("{actions: 2, per: 10m, scope: galaxy}", "scope"),
    ("{actions: 0, per: 10m, scope: fleet}", "actions"),
    ("{actions: 2, per: 1.5h, scope: fleet}", "not a duration"),
    ("{actions: 2, per: 0, scope: fleet}", "per"),
    ("{actions: 2, scope: fleet}", "per"),
    ("{actions: 2, per: 10m, scope: fleet, burst: 3}", "burst"),
])
def test_a_bad_budget_refuses_the_file(budget: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_playbooks(_playbook(budget=f"    budget: {budget}"), _params())
    [error] = caught.value.details["errors"]
    assert "budget" in error and says in error, error


# --- budgets ----------------------------------------------------------------------------

def test_playbook_budget_counts_only_its_own_runs_and_frees_with_time(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    text = (_playbook("limited", "TargetDown",
                      "    budget: {actions: 1, per: 5m, scope: playbook}")
            + _playbook("other", "Other").replace("playbooks:\n", ""))
    app, executor, clock = make_app(app_factory, db_url, tmp_path, text)
    for name in ("a", "b", "c"):
        executor.add(name)
    client = app.test_client()
    fire(client, {"alertname": "Other", "container": "c"})
    fire(client, {"container": "a"})
    fire(client, {"container": "b"})
    drain(app)
    assert (executor.restarts("c"), executor.restarts("a"), executor.restarts("b")) == (1, 1, 0)
    [skip] = [a for a in actions(app, "b") if a.action == "guard"]
    assert skip.reason == "budget_exhausted"
    assert "1 of 1 actions in 5m (scope playbook limited) used; next at" in (skip.error or "")
    [incident] = [i for i in incidents(app) if i.target == "b"]
    assert incident.status == "escalated"
    assert incident.next_attempt_at == clock() + timedelta(minutes=5)
    shown = client.get("/api/v1/budgets", headers=api_headers()).json
    assert shown["budgets"] == [{"playbook": "limited", "scope": "playbook", "key": "limited",
                                 "limit": 1, "per_s": 300.0, "used": 1,
                                 "frees_at": shown["budgets"][0]["frees_at"]}]
    clock.advance(301)  # the injected clock: the action left the window, the retry is due
    from receiver.engine.retries import queue_due_retries

    queue_due_retries(app.extensions["autofix"])
    drain(app)
    assert executor.restarts("b") == 1
    assert [r.trigger for r in runs(app) if r.target == "b"] == ["alert", "retry"]


def test_host_budget_is_counted_per_host(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    budget = "    budget: {actions: 1, per: 1h, scope: host}"
    app, executor, _ = make_app(app_factory, db_url, tmp_path, _playbook(budget=budget))
    for name in ("a", "b"):
        executor.add(name)
    client = app.test_client()
    fire(client, {"container": "a"})
    drain(app)
    fire(client, {"container": "b"})
    drain(app)
    assert _reasons(app, "b") == ["budget_exhausted"]
    assert {r.host for r in runs(app) if r.admitted_at is not None} == {"memory"}
    [entry] = client.get("/api/v1/budgets", headers=api_headers()).json["budgets"]
    assert (entry["scope"], entry["key"], entry["used"]) == ("host", "memory", 1)


def test_dry_runs_are_neither_counted_nor_limited(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    budget = "    budget: {actions: 1, per: 1h, scope: fleet}"
    app, executor, _ = make_app(app_factory, db_url, tmp_path, _playbook(budget=budget),
                                dry_run=True, host_storm_targets=1)
    for name in ("a", "b", "c"):
        executor.add(name)
        fire(app.test_client(), {"container": name})
    drain(app)
    assert all(_reasons(app, name) == [] for name in ("a", "b", "c"))
    assert all(r.host is None for r in runs(app))


# --- host storm ---------------------------------------------------------------------------

def test_storm_guard_holds_the_host_for_the_window(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    app, executor, clock = make_app(app_factory, db_url, tmp_path, _playbook(),
                                    host_storm_targets=2, host_storm_window_s=60)
    for name in ("a", "b", "c", "d"):
        executor.add(name)
    client = app.test_client()
    for name in ("a", "b", "c"):
        fire(client, {"container": name})
    drain(app)
    assert [executor.restarts(n) for n in ("a", "b", "c")] == [1, 1, 0]
    assert _reasons(app, "c") == ["host_storm"]
    clock.advance(30)
    # While the storm holds, a target already acted on is held too, and a new one joins
    # the same storm: no second incident, no second escalation.
    fire(client, {"container": "a"}, starts=clock())
    fire(client, {"container": "d"}, starts=clock())
    drain(app)
    assert _reasons(app, "a") == ["host_storm"] and _reasons(app, "d") == ["host_storm"]
    [storm] = [i for i in incidents(app) if i.alertname == "AutofixHostStorm"]
    assert storm.labels == {"alertname": "AutofixHostStorm", "host": "memory",
                            "severity": "critical"}
    assert storm.annotations["skipped"] == "c, a, d"
    assert storm.annotations["acted_on"] == "a, b"
    [held] = client.get("/api/v1/budgets", headers=api_headers()).json["host_storms"]
    assert held["skipped"] == ["c", "a", "d"] and held["incident_id"] == storm.id
    # Extended by the last skip (t+30s): still in force at t+61s, over at t+91s.
    clock.advance(31)
    fire(client, {"container": "b"}, starts=clock())
    drain(app)
    assert _reasons(app, "b") == ["host_storm"]
    clock.advance(61)
    fire(client, {"container": "c"}, starts=clock())
    drain(app)
    assert executor.restarts("c") == 1
    assert len([i for i in incidents(app) if i.alertname == "AutofixHostStorm"]) == 1
    assert client.get("/api/v1/budgets", headers=api_headers()).json["host_storms"] == []


def test_storm_guard_off_at_zero(db_url: str, app_factory: Any, tmp_path: Path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, _playbook(),
                                host_storm_targets=0)
    for name in "abcdefgh":
        executor.add(name)
        fire(app.test_client(), {"container": name})
    drain(app)
    assert all(executor.restarts(name) == 1 for name in "abcdefgh")
    shown = app.test_client().get("/api/v1/budgets", headers=api_headers()).json
    assert shown["host_storm"]["enabled"] is False
    assert shown["host_storm"]["hosts"][0] == {"host": "memory", "targets": 8,
                                               "frees_at": shown["host_storm"]["hosts"][0]
                                               ["frees_at"]}


def test_budgets_endpoint_needs_a_token(db_url: str, app_factory: Any,
                                        tmp_path: Path) -> None:
    app, _, _ = make_app(app_factory, db_url, tmp_path, _playbook())
    assert app.test_client().get("/api/v1/budgets").status_code == 401
    body = app.test_client().get("/api/v1/budgets", headers=api_headers()).json
    assert body == {"budgets": [], "host_storm": {"enabled": True, "targets": 5,
                                                  "window_s": 60.0, "hosts": []},
                    "host_storms": []}


def test_prune_removes_host_storms_long_over(db_url: str, app_factory: Any,
                                            tmp_path: Path) -> None:
    from receiver.store.migrate import prune
    from receiver.store.models import HostStorm

    app, executor, clock = make_app(app_factory, db_url, tmp_path, _playbook(),
                                    host_storm_targets=1)
    for name in ("a", "b"):
        executor.add(name)
        fire(app.test_client(), {"container": name})
    drain(app)
    database = app.extensions["autofix"].database
    assert prune(database, timedelta(days=1), now=clock())["host_storms"] == 0
    assert prune(database, timedelta(days=1), now=clock() + timedelta(days=2)) \
        ["host_storms"] == 1
    with database.session() as session:
        assert session.query(HostStorm).count() == 0


def test_storm_counted_atomically_by_two_receivers_on_one_database(
        pg_url: str, app_factory: Any, tmp_path: Path) -> None:
    """Two receivers (two apps, four runner threads) share one PostgreSQL: the advisory
    lock per host makes them count the same rows, so still exactly 5 of 8 act."""
    first, first_executor, clock = make_app(app_factory, pg_url, tmp_path, _playbook())
    second, second_executor, _ = make_app(app_factory, pg_url, tmp_path, _playbook())
    second.extensions["autofix"].clock = clock
    names = [f"c{i}" for i in range(8)]
    for name in names:
        first_executor.add(name)
        second_executor.add(name)
    body = notification([alert({"container": n}, starts_at=clock() - timedelta(minutes=1))
                         for n in names])
    assert first.test_client().post("/webhook/alertmanager", json=body,
                                    headers=webhook_headers()).status_code == 200

    def work(app: Any) -> None:
        runner = Runner(app.extensions["autofix"])
        while runner.run_once() is not None:
            pass

    threads = [threading.Thread(target=work, args=(app,))
               for app in (first, second, first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    acted = sum(first_executor.restarts(n) + second_executor.restarts(n) for n in names)
    assert acted == 5
    assert sorted(_reasons(first, n) == ["host_storm"] for n in names).count(True) == 3
    storms = [i for i in incidents(first) if i.alertname == "AutofixHostStorm"]
    assert len(storms) == 1 and storms[0].status == "escalated"
    assert len(storms[0].annotations["skipped"].split(", ")) == 3


def test_next_at_is_when_one_more_action_fits(db_url: str, app_factory: Any,
                                              tmp_path: Path) -> None:
    from receiver.engine.blast_radius import budget_stop
    from receiver.playbooks.config import Playbook

    budget = "    budget: {actions: 2, per: 10m, scope: fleet}"
    app, executor, clock = make_app(app_factory, db_url, tmp_path, _playbook(budget=budget))
    start = clock()
    for name in ("a", "b", "c"):
        executor.add(name)
        fire(app.test_client(), {"container": name}, starts=clock())
        drain(app)
        clock.advance(60)
    [skip] = [a for a in actions(app, "c") if a.action == "guard"]
    assert (skip.error or "").endswith(f"next at {(start + timedelta(minutes=10)).isoformat()}")
    # Lowered to 1 by a reload: both counted actions must leave, the second at 1m + 10m.
    lowered = Playbook.model_validate({
        "name": "restart", "matchers": ['alertname="TargetDown"'], "actions": ["restart"],
        "budget": {"actions": 1, "per": "10m", "scope": "fleet"}})
    with app.extensions["autofix"].database.session() as session:
        stop = budget_stop(session, lowered, "memory", clock(), None)
    assert stop is not None and stop.message.startswith("2 of 1 actions in 10m (scope fleet)")
    assert stop.message.endswith(f"next at {(start + timedelta(minutes=11)).isoformat()}")


def test_migration_0012_goes_down_and_up(db_url: str) -> None:
    from alembic import command
    from sqlalchemy import create_engine, inspect

    from receiver.store.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(db_url), "0010")
    engine = create_engine(db_url)
    try:
        found = inspect(engine)
        assert "host_storms" not in found.get_table_names()
        assert "host" not in {c["name"] for c in found.get_columns("runs")}
        upgrade(db_url)
        found = inspect(engine)
        assert "host_storms" in found.get_table_names()
        assert "ix_runs_host_admitted" in {i["name"] for i in found.get_indexes("runs")}
    finally:
        engine.dispose()


class _FlakyInfo:
    """A Docker client whose `info` fails with the given errors, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)

    def info(self) -> dict[str, str]:
        if self.errors:
            raise self.errors.pop(0)
        return {"ID": "ENGINE-1"}


def test_a_docker_host_key_is_never_a_guess_made_during_a_blip() -> None:
    """One failed `docker info` once made this process count the host as `docker:url:...`
    for good while the other workers counted `docker:<ID>`: budgets and the storm count
    split. Now the run stops (executor_unavailable) and the next call asks again."""
    import docker.errors
    import requests

    from receiver.executor import ExecutorError, TargetIdentity
    from receiver.executor.docker_executor import DockerExecutor

    executor = DockerExecutor("unix:///nonexistent.sock", 1.0, own_ids=frozenset())
    client = _FlakyInfo(requests.ConnectionError("refused"))
    executor._docker = lambda: client  # type: ignore[method-assign]
    identity = TargetIdentity("web", "c" * 64)
    with pytest.raises(ExecutorError, match="docker info"):
        executor.host_of(identity)
    assert executor.host_of(identity) == "docker:ENGINE-1"
    # A proxy that refuses `info` refuses it on every worker: the URL is the key for good.
    refusing = DockerExecutor("tcp://127.0.0.1:2375", 1.0, own_ids=frozenset())
    response = requests.Response()
    response.status_code = 403
    refusing._docker = lambda: _FlakyInfo(  # type: ignore[method-assign]
        docker.errors.APIError("forbidden", response=response))
    assert refusing.host_of(identity) == "docker:url:tcp://127.0.0.1:2375"
    # The events follower's key during a blip is the URL for now, the ID once it answers.
    blip = DockerExecutor("unix:///x.sock", 1.0, own_ids=frozenset())
    flaky = _FlakyInfo(requests.ConnectionError("refused"))
    blip._docker = lambda: flaky  # type: ignore[method-assign]
    assert blip.daemon_id() == "url:unix:///x.sock"
    assert blip.daemon_id() == "ENGINE-1"


def test_a_retry_blocked_by_the_same_budget_does_not_page_again(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    """Every incident a budget blocks retries when one slot frees: one acts, the others
    skip again. Their first skip escalated; the later ones must not page again."""
    budget = "    budget: {actions: 1, per: 5m, scope: fleet}"
    app, executor, clock = make_app(app_factory, db_url, tmp_path, _playbook(budget=budget))
    for name in ("a", "b", "c"):
        executor.add(name)
    client = app.test_client()
    for name in ("a", "b", "c"):
        fire(client, {"container": name})
    drain(app)
    blocked = {i.target: i.escalation_reason for i in incidents(app) if i.target in "bc"}
    assert all(reason and reason.startswith("budget_exhausted") for reason in blocked.values())
    clock.advance(301)
    from receiver.engine.retries import queue_due_retries

    queue_due_retries(app.extensions["autofix"])
    drain(app)
    assert executor.restarts("b") + executor.restarts("c") == 1
    [still] = [i for i in incidents(app) if i.target in "bc" and i.target in
               {t for t in "bc" if executor.restarts(t) == 0}]
    assert _reasons(app, still.target) == ["budget_exhausted", "budget_exhausted"]
    assert still.escalation_reason == blocked[still.target]  # not escalated a second time
