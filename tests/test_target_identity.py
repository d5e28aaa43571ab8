"""A target is a container, not a string (#14): every guard keys on one canonical identity.

Docker resolves a full ID, a name, and any unique ID prefix to the same container. Before
#14 the breaker, cooldown, lock and protection keyed on the raw label, so aliases walked
around them. These tests attack with aliases on a real dockerd and real databases.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.actions.builtin import build_registry
from receiver.config.settings import Settings
from receiver.engine.execution import execute_run
from receiver.engine.guards import GuardStop, Subject, check_target, endpoint_key
from receiver.executor import TargetAmbiguous, TargetIdentity, TargetNotFound, TargetState
from receiver.executor.docker_executor import DockerExecutor
from receiver.runtime.runner import claim_next
from receiver.store.models import Action, Breaker, Run
from tests.conftest import api_headers
from tests.harness.app_driver import drain, fire_container
from tests.harness.busybox import FAST_STOP
from tests.harness.containers import run_container, started_at
from tests.harness.playbook_yaml import restart_playbook

MANUAL = "/api/v1/playbooks/restart-on-down/run"


@pytest.fixture
def identity_app(db_url: str, app_factory: Any, private_dockerd: Any, tmp_path: Path) -> Any:
    def make(playbooks: str | None = None, **overrides: Any) -> Any:
        path = tmp_path / f"playbooks-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(playbooks or restart_playbook(max_actions=3, open_for="1h",
                                                      running_for_s=0.2))
        return app_factory(db_url, docker_host=private_dockerd.url, playbooks=path,
                           **overrides)
    return make


def run_named(client: Any, name: str) -> Any:
    container = client.containers.run("autofix/busybox:test", FAST_STOP, name=name,
                                      network_mode="host", detach=True,
                                      labels={"autofix.enable": "true"})
    for _ in range(50):
        container.reload()
        if container.status == "running":
            break
        time.sleep(0.1)
    return container


def guard_skips(app: Any) -> list[Action]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(Action).where(Action.action == "guard")
                                    .order_by(Action.id)))


def breakers(app: Any) -> list[Breaker]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(Breaker)))


def open_breaker(app: Any, name: str) -> None:
    """Three restarts by name (max_actions=3), then the fourth alert opens the breaker."""
    client = app.test_client()
    for _ in range(4):
        fire_container(client, name, starts=datetime.now(UTC))
        drain(app)
        time.sleep(0.05)
    assert [(a.reason, a.target) for a in guard_skips(app)] == [("breaker_open", name)]


# Every length from 4 to 64 took 100 s a database and told nothing more than its boundaries:
# 1 and 2 (likely shared with another container: ambiguous), 4, 11-13 (around the 12 Docker
# shows), 63 and 64 (the full ID), and a few lengths between from a fixed seed (the same on
# every run, so a failure replays).
PREFIX_LENGTHS = sorted({1, 2, 4, 11, 12, 13, 63, 64, *random.Random(29).sample(range(3, 63), 5)})


def unique_prefix(docker_client: Any, prefix: str) -> bool:
    return sum(c.id.startswith(prefix) for c in docker_client.containers.list(all=True)) == 1


def manual(app: Any, container: str) -> Any:
    return app.test_client().post(MANUAL, headers=api_headers(), json={
        "labels": {"container": container}, "reason": "identity test"})


# ---------------------------------------------------------------------------- aliases


def test_id_prefixes_of_a_container_hit_its_one_open_breaker(identity_app,
                                                               docker_client) -> None:
    app = identity_app()
    container = run_container(docker_client)
    open_breaker(app, container.name)
    before = started_at(container)
    aliases = [container.id[:length] for length in PREFIX_LENGTHS]
    expected = ["breaker_open" if unique_prefix(docker_client, alias) else "target_ambiguous"
                for alias in aliases]
    client = app.test_client()
    for alias in aliases:
        fire_container(client, alias, starts=datetime.now(UTC))
        drain(app)
    assert started_at(container) == before, "an alias restarted the container"
    skips = guard_skips(app)[1:]
    assert [s.reason for s in skips] == expected
    # From 4 characters on a clash with another container's ID is rare, not impossible.
    assert expected.count("breaker_open") >= sum(n >= 4 for n in PREFIX_LENGTHS) - 2
    assert {s.target for s in skips if s.reason == "breaker_open"} == {container.name}
    [breaker] = breakers(app)
    assert (breaker.target, breaker.state) == (container.name, "open")
    with app.extensions["autofix"].database.session() as session:
        runs = list(session.scalars(select(Run).order_by(Run.id)))
    assert [r.status for r in runs[:3]] == ["succeeded"] * 3
    assert {r.target for r in runs[3:]} <= {container.name, *aliases}
    assert all(r.status == "skipped" for r in runs[3:])
    container.remove(force=True)
    print(f"\nFIGURES: aliases={len(aliases)} restarts_by_alias=0 breaker_rows=1 "
          f"ambiguous={expected.count('target_ambiguous')}")


def test_protected_container_named_by_id_or_prefix_is_refused(identity_app,
                                                               docker_client) -> None:
    container = run_container(docker_client)
    before = started_at(container)
    app = identity_app(protected_containers=[container.name])
    references = [container.id, container.id[:12],
                  *(p for p in (container.id[:6],) if unique_prefix(docker_client, p))]
    for reference in references:
        refused = manual(app, reference)
        assert refused.status_code == 403, (reference, refused.json)
        assert refused.json["reason"] == "target_not_allowed"
        assert "protected" in refused.json["message"]
    fire_container(app.test_client(), container.id[:12], starts=datetime.now(UTC))  # an alert, too
    drain(app)
    [skip] = guard_skips(app)
    assert (skip.reason, skip.target) == ("target_not_allowed", container.name)
    # A protected entry given as an ID prefix protects the container by its name too.
    by_id = identity_app(protected_containers=[container.id[:10]])
    refused = manual(by_id, container.name)
    assert refused.status_code == 403 and "protected" in refused.json["message"]
    assert started_at(container) == before
    container.remove(force=True)


def test_a_recreated_container_keeps_its_open_breaker(identity_app, docker_client) -> None:
    """Keyed by name, checked by ID: the breaker belongs to the service the name stands for,
    so `docker rm -f web && docker run --name web` does not reset it."""
    app = identity_app()
    name = f"t-{uuid.uuid4().hex[:8]}"
    old = run_named(docker_client, name)
    open_breaker(app, name)
    old.remove(force=True)
    fresh = run_named(docker_client, name)
    assert fresh.id != old.id
    before = started_at(fresh)
    time.sleep(0.05)  # the alerts begin after the new container started
    client = app.test_client()
    fire_container(client, name, starts=datetime.now(UTC))
    drain(app)
    fire_container(client, fresh.id[:12], starts=datetime.now(UTC))
    drain(app)
    assert started_at(fresh) == before
    assert [(s.reason, s.target) for s in guard_skips(app)[1:]] == [("breaker_open", name)] * 2
    [breaker] = breakers(app)
    assert (breaker.target, breaker.state) == (name, "open")
    fresh.remove(force=True)


def test_an_ambiguous_prefix_is_refused_with_its_reason(identity_app, docker_client) -> None:
    app = identity_app()
    made: list[Any] = []
    first: dict[str, Any] = {}
    while True:  # at most 17 containers until two IDs share their first hex digit
        container = run_container(docker_client)
        made.append(container)
        if container.id[0] in first:
            pair = (first[container.id[0]], container)
            break
        first[container.id[0]] = container
    prefix = container.id[0]
    befores = [started_at(c) for c in pair]
    fire_container(app.test_client(), prefix, starts=datetime.now(UTC))
    drain(app)
    [skip] = guard_skips(app)
    assert (skip.reason, skip.target) == ("target_ambiguous", prefix), skip.error
    # The daemon is shared with other tests: the message counts every container it holds.
    sharing = sorted(c.name for c in docker_client.containers.list(all=True)
                     if c.id.startswith(prefix))
    assert f"is a prefix of {len(sharing)} container IDs" in (skip.error or ""), skip.error
    assert ", ".join(sharing[:5]) in (skip.error or ""), skip.error
    if len(sharing) > 5:
        assert f"and {len(sharing) - 5} more" in (skip.error or ""), skip.error
    refused = manual(app, prefix)
    assert refused.status_code == 400 and refused.json["reason"] == "target_ambiguous"
    assert [started_at(c) for c in pair] == befores
    for container in made:
        container.remove(force=True)


def test_two_aliases_claimed_together_act_one_at_a_time(identity_app, docker_client) -> None:
    """The webhook never asks Docker, so runs naming one container by two aliases can both
    be claimed. The second to resolve finds the first running and goes back to the queue,
    now under the canonical name, where claim_next holds it until the first ends."""
    app = identity_app(playbooks=restart_playbook(max_actions=10, running_for_s=0.2))
    services = app.extensions["autofix"]
    container = run_container(docker_client)
    before = started_at(container)
    client = app.test_client()
    starts = datetime.now(UTC)
    fire_container(client, container.name, starts=starts)
    fire_container(client, container.id[:12], starts=starts)
    by_name, by_prefix = claim_next(services, "w1"), claim_next(services, "w2")
    assert by_name is not None and by_prefix is not None
    execute_run(services, by_prefix)
    with services.database.session() as session:
        waiting = session.get(Run, by_prefix)
        assert waiting is not None
        assert (waiting.status, waiting.target) == ("queued", container.name)
    assert claim_next(services, "w3") is None  # its target is running
    execute_run(services, by_name)
    assert started_at(container) != before
    drain(app)  # now it runs, and sees Docker-visible truth: restarted after the alert
    with services.database.session() as session:
        runs = {r.id: r for r in session.scalars(select(Run))}
    assert runs[by_name].status == "succeeded"
    assert (runs[by_prefix].status, runs[by_prefix].target) == ("skipped", container.name)
    assert "already_recovered" in (runs[by_prefix].error or "")
    container.remove(force=True)


# ---------------------------------------------------------------------------- http


class _Listener:
    def __init__(self) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    served = _Listener()
    yield served
    served.close()


def http_playbook(port: int, cooldown: str) -> str:
    return (
        "playbooks:\n"
        "  - name: poke\n"
        "    matchers: ['alertname=\"TargetDown\"']\n"
        "    target: \"{{ labels.container }}\"\n"
        f"    cooldown: {cooldown}\n"
        "    circuit_breaker: {max_actions: 2, window: 10m, open_for: 1h, open_for_max: 1h,\n"
        "                      reset_after: 30m}\n"
        "    actions:\n"
        "      - http: {method: POST,\n"
        f"               url: \"http://127.0.0.1:{port}/reset?for={{{{ target }}}}\"}}\n"
    )


@pytest.fixture
def http_app(db_url: str, app_factory: Any, tmp_path: Path) -> Any:
    def make(port: int, cooldown: str) -> Any:
        path = tmp_path / f"http-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(http_playbook(port, cooldown))
        return app_factory(db_url, playbooks=path, http_allowed_hosts=["127.0.0.1"])
    return make


def test_an_http_only_playbook_has_a_cooldown_per_url_host(http_app, listener) -> None:
    app = http_app(listener.port, "10m")
    client = app.test_client()
    for name in ("web", "api"):  # different labels, one host: one cooldown
        fire_container(client, name, starts=datetime.now(UTC))
        drain(app)
    assert listener.paths == ["/reset?for=web"]
    key = f"http:127.0.0.1:{listener.port}"
    [skip] = guard_skips(app)
    assert (skip.reason, skip.target) == ("cooldown", key)
    with app.extensions["autofix"].database.session() as session:
        assert {r.target for r in session.scalars(select(Run))} == {key}


def test_an_http_only_playbook_has_a_breaker_per_url_host(http_app, listener) -> None:
    app = http_app(listener.port, "0s")
    client = app.test_client()
    for index in range(4):
        fire_container(client, f"web-{index}", starts=datetime.now(UTC))
        drain(app)
    assert listener.paths == ["/reset?for=web-0", "/reset?for=web-1"]
    key = f"http:127.0.0.1:{listener.port}"
    assert [(s.reason, s.target) for s in guard_skips(app)] == [("breaker_open", key)] * 2
    [breaker] = breakers(app)
    assert (breaker.target, breaker.state) == (key, "open")


@pytest.mark.parametrize(("url", "key"), [
    ("http://127.0.0.1:8080/x", "http:127.0.0.1:8080"),
    ("http://Example.COM/x", "http:example.com:80"),
    ("https://example.com./x?y=1", "http:example.com:443"),
    ("http://[::1]:9000/", "http:[::1]:9000"),
    ("http://user:pw@host:81/", "http:host:81"),
    ("ftp://host/", None), ("http://:80/", None), ("http://host:99999/", None), ("nope", None),
])
def test_endpoint_keys_name_host_and_port(url: str, key: str | None) -> None:
    assert endpoint_key(url) == key


# ---------------------------------------------------------------------------- the interface


class FakeSwarm:
    """A second backend with its own naming rules: guards.py must need no change for it."""

    backend = "fake"

    def __init__(self) -> None:
        self.services = {"svc-1": TargetState("web", "svc-1", "running",
                                              {"autofix.enable": "true"},
                                              datetime(2026, 1, 1, tzinfo=UTC))}
        self.aliases = {"web": "svc-1", "stack_web": "svc-1", "svc-1": "svc-1"}
        self.recovering = False

    def validate_target_syntax(self, target: str) -> bool:
        return target.replace("_", "").replace("-", "").isalnum()

    def resolve(self, target: str) -> TargetIdentity:
        if target == "svc":
            raise TargetAmbiguous("svc-1, svc-2")
        if target not in self.aliases:
            raise TargetNotFound(target)
        state = self.services[self.aliases[target]]
        return TargetIdentity(state.name, state.id)

    def refers_to(self, reference: str, identity: TargetIdentity) -> bool:
        return self.aliases.get(reference) == identity.id

    def is_self(self, identity: TargetIdentity) -> bool:
        return False

    def host_of(self, identity: TargetIdentity) -> str:
        return "fake"

    def already_recovering(self, state: TargetState, incident_starts_at: datetime,
                           lookback: timedelta) -> str | None:
        return "a newer task is starting" if self.recovering else None

    def inspect(self, target: str) -> TargetState:
        return self.services[target]

    def restart(self, target: str, timeout_s: float) -> None: ...

    def start(self, target: str) -> None: ...

    def stop(self, target: str, timeout_s: float) -> None: ...

    def kill(self, target: str, signal: str) -> None: ...

    def exec(self, target: str, argv: list[str], timeout_s: float) -> Any: ...


def test_guards_hold_no_backend_rules_and_serve_any_executor() -> None:
    guards_source = (Path(__file__).resolve().parents[1] / "receiver/engine/guards.py").read_text()
    assert "docker" not in guards_source.lower()
    swarm, settings, now = FakeSwarm(), Settings(), datetime.now(UTC)
    for alias in ("web", "stack_web", "svc-1"):
        subject = check_target(alias, swarm, settings, now)
        assert isinstance(subject, Subject) and (subject.key, subject.name) == ("web", "web")
        assert subject.identity == TargetIdentity("web", "svc-1")

    def stop(target: str, **overrides: Any) -> str:
        result = check_target(target, swarm, Settings(**overrides), now)
        assert isinstance(result, GuardStop), result
        return result.reason

    assert stop("svc") == "target_ambiguous"
    assert stop("db") == "target_not_found"
    assert stop("no/such") == "invalid_target"
    assert stop("stack_web", protected_containers=["svc-1"]) == "target_not_allowed"
    swarm.recovering = True
    assert stop("web") == "already_recovered"


def test_docker_protection_matches_names_ids_and_prefixes_as_docker_would() -> None:
    executor = DockerExecutor("unix:///nonexistent.sock", 1, own_ids=frozenset({"abc123def456"}))
    identity = TargetIdentity("web", "abc123def456" + "0" * 52)
    assert executor.refers_to("web", identity) and executor.refers_to(identity.id, identity)
    assert executor.refers_to("/web", identity)
    assert not executor.refers_to("db", identity)  # not hex: never an ID prefix
    assert not executor.refers_to("ff", identity)  # hex, but not this ID's prefix
    assert executor.is_self(identity)
    assert not executor.is_self(TargetIdentity("web", "f" * 64))
    assert build_registry().get("http").endpoint == "url"  # type: ignore[union-attr]
