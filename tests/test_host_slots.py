"""A slow Docker host holds up only its own work (#32). AUTOFIX_MAX_RUNS_PER_HOST: among
several hosts, a host with its share of runs running sends its next run back to the queue,
and claim_next leaves it there while the other hosts' runs go on; the image inventory asks
every host at once. In-memory executors; tests/test_fleet_slow_host.py does it with a hung
host and the real runner threads."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from receiver.config.settings import Settings
from receiver.domain.images import ContainerImage
from receiver.engine.execution import execute_run
from receiver.engine.host_calls import CALLS_PER_HOST
from receiver.engine.host_slots import take_host_slot
from receiver.executor import ExecutorError
from receiver.runtime.image_inventory import take_inventory
from receiver.runtime.runner import Runner, claim_next
from receiver.store.models import Run
from tests.harness.app_driver import drain
from tests.harness.clock import Clock
from tests.harness.memory_app import fire
from tests.harness.memory_executor import MemoryExecutor
from tests.harness.playbook_yaml import RESTART_ONLY as PLAYBOOK

TWO = json.dumps({"a": {"url": "tcp://127.0.0.1:2375"}, "b": {"url": "unix:///run/b.sock"}})


def test_the_share_defaults_to_half_the_global_cap() -> None:
    assert Settings().host_run_cap() == 2
    assert Settings(max_concurrent_runs=1).host_run_cap() == 1
    assert Settings(max_concurrent_runs=9).host_run_cap() == 4
    assert Settings(max_runs_per_host=3).host_run_cap() == 3


def test_a_share_over_the_global_cap_is_refused_at_startup() -> None:
    with pytest.raises(ValidationError, match="AUTOFIX_MAX_RUNS_PER_HOST \\(5\\) is over "
                       "AUTOFIX_MAX_CONCURRENT_RUNS \\(4\\)"):
        Settings(max_runs_per_host=5)
    with pytest.raises(ValidationError, match="max_runs_per_host"):
        Settings(max_runs_per_host=0)


def _app(app_factory: Any, db_url: str, tmp_path: Path) -> tuple[Any, MemoryExecutor]:
    clock = Clock()
    hosts = {"a": MemoryExecutor(clock=clock), "b": MemoryExecutor(clock=clock)}
    for host, names in (("a", ["app"]), ("b", ["app", "web"])):
        for name in names:
            container = hosts[host].add(name)
            container.id = hashlib.sha256(f"{host}/{name}".encode()).hexdigest()
    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOK)
    app = app_factory(db_url, playbooks=path, docker_hosts=TWO, hosts=hosts,
                      max_runs_per_host=1)
    app.extensions["autofix"].clock = clock
    return app, hosts["a"]


def _run(app: Any, run_id: int) -> Run:
    with app.extensions["autofix"].database.session() as session:
        run = session.get(Run, run_id)
        assert run is not None
        session.expunge(run)
        return run


def test_a_full_host_waits_while_another_hosts_run_goes_on(db_url, app_factory,
                                                           tmp_path) -> None:
    app, on_a = _app(app_factory, db_url, tmp_path)
    services, client = app.extensions["autofix"], app.test_client()
    for host, name in (("b", "app"), ("b", "web"), ("a", "app")):
        fire(client, {"alertname": "TargetDown", "container": name, "host": host})
    # b/app under way (as if its daemon hung): b has its one slot taken.
    first = claim_next(services, "w1")
    assert first is not None and take_host_slot(services, first, "b", "app")
    assert (_run(app, first).target, _run(app, first).docker_host) == ("b/app", "b")

    runner = Runner(services)
    second = runner.run_once()  # b/web: back to the queue, stamped with its host
    assert (_run(app, second).status, _run(app, second).target) == ("queued", "b/web")
    third = runner.run_once()  # a's alert, on a container named like b's running one
    assert _run(app, third).status == "succeeded" and on_a.restarts("app") == 1
    assert claim_next(services, "w1") is None  # b/web waits for b's slot

    execute_run(services, first)  # b/app ends: b/web is claimed again, and runs
    assert drain(app) == [second]
    with services.database.session() as session:
        assert {run.target: run.status for run in session.scalars(select(Run))} == {
            "b/app": "succeeded", "b/web": "succeeded", "a/app": "succeeded"}


def test_one_host_keeps_no_share(db_url, app_factory, tmp_path) -> None:
    """With one host nothing is stamped: the global cap alone holds, as before."""
    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOK)
    executor = MemoryExecutor()
    for name in ("app", "web"):
        executor.add(name)
    app = app_factory(db_url, playbooks=path, executor=executor, max_runs_per_host=1)
    services = app.extensions["autofix"]
    for name in ("app", "web"):
        fire(app.test_client(), {"alertname": "TargetDown", "container": name})
    assert claim_next(services, "w1") is not None
    assert Runner(services).run_once() is not None  # the second runs beside the first
    with services.database.session() as session:
        assert [run.docker_host for run in session.scalars(select(Run))] == [None, None]


class _Hung(MemoryExecutor):
    """A host whose container list answers only once the other host's has been asked."""

    def __init__(self, other_asked: threading.Event) -> None:
        super().__init__()
        self._other_asked = other_asked
        self.saw_other = False

    def inventory(self) -> list[ContainerImage]:
        self.saw_other = self._other_asked.wait(30)  # set at once when asked in parallel
        raise ExecutorError("Docker call timed out")


class _Live(MemoryExecutor):
    def __init__(self, asked: threading.Event) -> None:
        super().__init__()
        self._asked = asked

    def inventory(self) -> list[ContainerImage]:
        self._asked.set()
        return super().inventory()


def test_the_inventory_lists_a_live_host_while_another_hangs(db_url, app_factory) -> None:
    """The hung host first: listed one after the other, the live one is asked only once
    the hung one's call has given up."""
    asked = threading.Event()
    hung, live = _Hung(asked), _Live(asked)
    live.add("web")
    app = app_factory(db_url, executor=live)
    svc = app.extensions["autofix"]
    assert take_inventory(svc.database, [hung, live], "autofix.enable", svc.now) == 1
    assert hung.saw_other  # the live host was listed while the hung one's call waited


class _Stuck(MemoryExecutor):
    """A host whose answers wait until the test releases them."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def dependents(self, identity: Any) -> Any:
        self.entered.release()
        self.release.wait(60)
        return super().dependents(identity)


def test_requests_waiting_on_a_hung_host_are_bounded(db_url, app_factory,
                                                     tmp_path) -> None:
    """Past CALLS_PER_HOST requests waiting on one host, the next one for it is 503 at
    once: a hung host never holds every request thread. Another host still answers."""
    from tests.conftest import api_headers

    stuck, live = _Stuck(), MemoryExecutor()
    stuck.add("app")
    live.add("app")
    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOK)
    app = app_factory(db_url, playbooks=path, docker_hosts=TWO, hosts={"a": live, "b": stuck})
    url = "/api/v1/targets/{}/app/dependents"
    answers: list[int] = []

    def ask() -> None:
        answers.append(app.test_client().get(url.format("b"), headers=api_headers())
                       .status_code)

    waiting = [threading.Thread(target=ask) for _ in range(CALLS_PER_HOST)]
    for thread in waiting:
        thread.start()
    try:
        for _ in waiting:
            assert stuck.entered.acquire(timeout=60)
        refused = app.test_client().get(url.format("b"), headers=api_headers())
        assert refused.status_code == 503, refused.json
        assert refused.json["error"] == "backend_unavailable"
        assert "requests already wait on it" in refused.json["message"]
        assert app.test_client().get(url.format("a"), headers=api_headers()).status_code == 200
    finally:
        stuck.release.set()
        for thread in waiting:
            thread.join(60)
    assert answers == [200] * CALLS_PER_HOST


class _StuckFacts(MemoryExecutor):
    """A host whose container checks wait until the test releases them."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def resolve(self, target: str) -> Any:
        self.entered.release()
        self.release.wait(60)
        return super().resolve(target)


def test_manual_runs_waiting_on_a_hung_host_are_bounded(db_url, app_factory,
                                                        tmp_path) -> None:
    """A manual run checks its target on the request thread: past CALLS_PER_HOST such
    requests waiting on one host, the next is 503 at once; another host's is accepted."""
    from tests.conftest import api_headers

    stuck, live = _StuckFacts(), MemoryExecutor()
    stuck.add("app")
    live.add("app")
    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOK)
    app = app_factory(db_url, playbooks=path, docker_hosts=TWO, hosts={"a": live, "b": stuck})
    answers: list[int] = []

    def run_on(host: str) -> Any:
        return app.test_client().post(
            "/api/v1/playbooks/restart-on-down/run", headers=api_headers(),
            json={"labels": {"container": "app", "host": host}, "reason": "test",
                  "requested_by": "bob"})

    waiting = [threading.Thread(target=lambda: answers.append(run_on("b").status_code))
               for _ in range(CALLS_PER_HOST)]
    for thread in waiting:
        thread.start()
    try:
        for _ in waiting:
            assert stuck.entered.acquire(timeout=60)
        refused = run_on("b")
        assert refused.status_code == 503, refused.json
        assert "requests already wait on it" in refused.json["message"]
        accepted = run_on("a")
        assert accepted.status_code == 202, accepted.json
        assert accepted.json["target"] == "a/app"
    finally:
        stuck.release.set()
        for thread in waiting:
            thread.join(60)
    assert answers == [202] * CALLS_PER_HOST
