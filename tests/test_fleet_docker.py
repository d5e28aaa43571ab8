"""Two real Docker hosts, one receiver, one database (#32): host `a` is the session's
private dockerd (a unix socket), host `b` a dockerd of its own listening on
tcp://127.0.0.1 with --tlsverify, reached with a client certificate made by the test. A
container of one name runs on both."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from receiver.store.models import Action, Breaker, Incident
from tests.conftest import api_headers
from tests.harness.app_driver import drain
from tests.harness.busybox import FAST_STOP, ensure_busybox_image
from tests.harness.containers import started_at
from tests.harness.dockerd import start_dockerd
from tests.harness.memory_app import fire
from tests.harness.playbook_yaml import RESTART_ONLY as PLAYBOOK
from tests.harness.procs import free_port
from tests.harness.tls_certs import make_docker_certs


def _run(client: Any, name: str) -> Any:
    ensure_busybox_image(client)
    return client.containers.run("autofix/busybox:test", FAST_STOP, name=name,
                                 network_mode="host", detach=True,
                                 labels={"autofix.enable": "true"})


def _backend_up(web: Any, host: str) -> str:
    text = web.get("/metrics").get_data(as_text=True)
    return next(line.split()[-1] for line in text.splitlines()
                if line.startswith(f'autofix_backend_up{{backend="docker",host="{host}"}}'))


def _actions(database: Any) -> list[Action]:
    with database.session() as session:
        return list(session.scalars(select(Action).order_by(Action.id)))


def test_two_hosts_one_over_tls(pg_url, private_dockerd, app_factory, tmp_path: Path) -> None:
    certs = make_docker_certs(tmp_path / "certs")
    port = free_port()
    daemon_b = start_dockerd(tmp_path / "dockerd-b", [
        "--tlsverify", "--tlscacert", str(certs.ca), "--tlscert", str(certs.server_cert),
        "--tlskey", str(certs.server_key), "-H", f"tcp://127.0.0.1:{port}"])
    try:
        on_a, on_b = private_dockerd.client(), daemon_b.client()
        name = f"app-{uuid.uuid4().hex[:8]}"
        app_a, app_b = _run(on_a, name), _run(on_b, name)
        hosts = {"a": {"url": private_dockerd.url},
                 "b": {"url": f"tcp://127.0.0.1:{port}", "timeout_s": 10,
                       "tls": {"ca": str(certs.ca), "cert": str(certs.client_cert),
                               "key": str(certs.client_key)}}}
        playbooks = tmp_path / "playbooks.yml"
        playbooks.write_text(PLAYBOOK)
        app = app_factory(pg_url, playbooks=playbooks, docker_hosts=json.dumps(hosts),
                          recovery_lookback_s=0)  # containers started a moment ago
        web, database = app.test_client(), app.extensions["autofix"].database
        before_a, before_b = started_at(app_a), started_at(app_b)

        # An open breaker on a/app: host a's alert skips, host b's restarts b's app only.
        with database.session() as session:
            now = datetime.now(UTC)
            session.add(Breaker(target=f"a/{name}", state="open", opened_at=now,
                                open_until=now + timedelta(hours=1)))
        starts = datetime.now(UTC)
        fire(web, {"alertname": "TargetDown", "container": name, "host": "a"}, starts=starts)
        drain(app)
        fire(web, {"alertname": "TargetDown", "container": name, "host": "b"}, starts=starts)
        drain(app)
        assert started_at(app_a) == before_a
        assert started_at(app_b) != before_b  # restarted through the TLS endpoint
        rows = [(row.target, row.action, row.outcome, row.reason) for row in _actions(database)]
        assert rows == [(f"a/{name}", "guard", "skipped", "breaker_open"),
                        (f"b/{name}", "restart", "succeeded", None)]
        runs = web.get(f"/api/v1/runs?target=b/{name}", headers=api_headers()).json["items"]
        assert [run["status"] for run in runs] == ["succeeded"]

        # No host label while two hosts are configured: never a guess.
        fire(web, {"alertname": "TargetDown", "container": name}, starts=starts)
        drain(app)
        assert _actions(database)[-1].reason == "unknown_host"
        with database.session() as session:
            last = session.scalars(select(Incident).order_by(Incident.id.desc())).first()
            assert last is not None and last.status == "escalated"

        ready = web.get("/readyz")
        assert ready.status_code == 200 and ready.json["unreachable"] == []
        assert (_backend_up(web, "a"), _backend_up(web, "b")) == ("1.0", "1.0")

        # Host b down: /readyz names it, its gauge is 0, host a is remediated as before.
        daemon_b.stop()
        app.extensions["autofix"].readiness.expire()
        ready = web.get("/readyz")
        assert ready.status_code == 200, ready.json  # a host down fails only its own runs
        assert ready.json["unreachable"] == ["docker/b"]
        assert ready.json["backends"]["docker/b"]["status"] == "unreachable"
        assert ready.json["backends"]["docker/a"]["status"] == "ok"
        assert _backend_up(web, "b") == "0.0"
        other = _run(on_a, f"other-{uuid.uuid4().hex[:8]}")
        before_other = started_at(other)
        fire(web, {"alertname": "TargetDown", "container": other.name, "host": "a"},
             starts=datetime.now(UTC))
        drain(app)
        assert started_at(other) != before_other
        assert _actions(database)[-1].target == f"a/{other.name}"
        for container in (app_a, other):
            container.remove(force=True)
    finally:
        daemon_b.stop()


def test_dependents_are_asked_of_the_named_hosts_daemon(private_dockerd, app_factory,
                                                         pg_url, tmp_path: Path) -> None:
    """GET /api/v1/targets/{target}/dependents with two real dockerds: `app` on both, a
    sidecar sharing its network namespace on host a only."""
    daemon_b = start_dockerd(tmp_path / "dockerd-b")
    try:
        on_a, on_b = private_dockerd.client(), daemon_b.client()
        name = f"app-{uuid.uuid4().hex[:8]}"
        app_a, app_b = _run(on_a, name), _run(on_b, name)
        sidecar = on_a.containers.run("autofix/busybox:test", FAST_STOP, detach=True,
                                      name=f"{name}-sidecar",
                                      network_mode=f"container:{app_a.id}")
        hosts = {"a": {"url": private_dockerd.url}, "b": {"url": daemon_b.url}}
        playbooks = tmp_path / "playbooks.yml"
        playbooks.write_text(PLAYBOOK)
        web = app_factory(pg_url, playbooks=playbooks, docker_hosts=json.dumps(hosts)
                          ).test_client()

        def get(target: str, query: str = "") -> Any:
            return web.get(f"/api/v1/targets/{target}/dependents?{query}",
                           headers=api_headers())

        for answer in (get(f"a/{name}"), get(f"a%2F{name}"), get(name, "host=a")):
            assert answer.status_code == 200, answer.json
            assert (answer.json["target"], answer.json["id"]) == (f"a/{name}", app_a.id)
            assert [d["name"] for d in answer.json["dependents"]] == [sidecar.name]
        on_host_b = get(f"b/{name}")
        assert on_host_b.status_code == 200, on_host_b.json
        assert (on_host_b.json["id"], on_host_b.json["dependents"]) == (app_b.id, [])
        assert get(sidecar.name, "host=b").status_code == 404  # only on a
        assert get(name).json["reason"] == "host_required"
        unknown = get(f"c/{name}")
        assert unknown.status_code == 404 and unknown.json["reason"] == "unknown_host"
        for container in (sidecar, app_a):
            container.remove(force=True)
    finally:
        daemon_b.stop()
