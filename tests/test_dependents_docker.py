"""Dependents in order on a real dockerd (issue #31): a container sharing the target's
network namespace is restarted after it, as a run of its own; one not opted in is reported
and left; a cycle of Compose depends_on labels is refused before anything is touched."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.conftest import api_headers
from tests.harness.app_driver import drain, fire_container, incidents, runs
from tests.harness.busybox import FAST_STOP, ensure_busybox_image
from tests.harness.containers import run_container, started_at
from tests.harness.playbook_yaml import restart_playbook

PLAYBOOK = restart_playbook(wait_timeout_s=20, running_for_s=0.5)


def started(container: Any) -> str:
    """StartedAt with 9 fraction digits: Docker trims trailing zeros ("…24.3Z"), and
    untrimmed text sorts wrongly within one second ("…24.3Z" > "…24.34Z")."""
    base, _, fraction = started_at(container).rstrip("Z").partition(".")
    return f"{base}.{fraction.ljust(9, '0')}"


@pytest.fixture
def docker_app(db_url, app_factory, private_dockerd, tmp_path):
    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOK)
    return app_factory(db_url, docker_host=private_dockerd.url, playbooks=path)


def sharing(client: Any, parent: Any, labelled: bool = True) -> Any:
    """A busybox in `parent`'s network namespace (the VPN sidecar pattern)."""
    ensure_busybox_image(client)
    return client.containers.run(
        "autofix/busybox:test", FAST_STOP, name=f"t-{uuid.uuid4().hex[:8]}", detach=True,
        network_mode=f"container:{parent.id}",
        labels={"autofix.enable": "true"} if labelled else {})


def compose_service(client: Any, project: str, service: str, depends_on: str) -> Any:
    """A busybox with the labels Compose v2 writes (project, service, depends_on)."""
    ensure_busybox_image(client)
    labels = {"autofix.enable": "true", "com.docker.compose.project": project,
              "com.docker.compose.service": service}
    if depends_on:
        labels["com.docker.compose.depends_on"] = depends_on
    return client.containers.run("autofix/busybox:test", FAST_STOP, detach=True,
                                 name=f"{project}-{service}-1", network_mode="host",
                                 labels=labels)


def test_the_sidecar_is_restarted_after_its_parent(docker_app, docker_client) -> None:
    parent = run_container(docker_client)
    child = sharing(docker_client, parent)
    child_before = started_at(child)
    fire_container(docker_app.test_client(), parent.name)
    drain(docker_app)
    parent_started, child_started = started(parent), started(child)
    assert started_at(child) != child_before
    assert child_started > parent_started
    found = runs(docker_app)
    assert [(r.trigger, r.target, r.status) for r in found] == [
        ("alert", parent.name, "succeeded"), ("dependent", child.name, "succeeded")]
    [incident] = incidents(docker_app)
    detail = docker_app.test_client().get(f"/api/v1/incidents/{incident.id}",
                                          headers=api_headers()).json
    assert [(a["action"], a["target"], a["outcome"]) for a in detail["actions"]] == [
        ("restart", parent.name, "succeeded"), ("wait_healthy", parent.name, "succeeded"),
        ("restart", child.name, "succeeded"), ("wait_healthy", child.name, "succeeded")]
    assert detail["runs"][1]["chain"]["parent"] == parent.name
    assert detail["runs"][1]["trigger"] == "dependent"
    shown = [e["dependents"] for e in detail["evidence"] if e["target"] == parent.name]
    assert shown and shown[0]["dependents"][0]["name"] == child.name
    assert shown[0]["dependents"][0]["kind"] == "network"
    assert shown[0]["dependents"][0]["opted_in"] is True
    view = docker_app.test_client().get(f"/api/v1/targets/{parent.name}/dependents",
                                        headers=api_headers())
    assert view.status_code == 200
    assert [(d["name"], d["kind"], d["opted_in"], d["would_restart"])
            for d in view.json["dependents"]] == [(child.name, "network", True, True)]


def test_a_sidecar_not_opted_in_is_reported_and_not_touched(docker_app,
                                                            docker_client) -> None:
    parent = run_container(docker_client)
    child = sharing(docker_client, parent, labelled=False)
    child_before, parent_before = started_at(child), started_at(parent)
    fire_container(docker_app.test_client(), parent.name)
    drain(docker_app)
    assert started_at(parent) != parent_before
    assert started_at(child) == child_before
    assert [r.trigger for r in runs(docker_app)] == ["alert"]
    [incident] = incidents(docker_app)
    assert incident.status == "escalated"
    assert f"dependent {child.name} of {parent.name} left: not opted in" in (
        incident.escalation_reason)
    detail = docker_app.test_client().get(f"/api/v1/incidents/{incident.id}",
                                          headers=api_headers()).json
    shown = [e["dependents"] for e in detail["evidence"] if e["dependents"]]
    assert shown and shown[0]["dependents"][0]["name"] == child.name
    assert shown[0]["dependents"][0]["opted_in"] is False


def test_a_compose_cycle_is_refused_before_anything_is_restarted(docker_app,
                                                                 docker_client) -> None:
    project = f"p{uuid.uuid4().hex[:6]}"
    db = compose_service(docker_client, project, "db", "app:service_started:true")
    app = compose_service(docker_client, project, "app", "db:service_healthy:true")
    before = {c.name: started_at(c) for c in (db, app)}
    fire_container(docker_app.test_client(), db.name)
    drain(docker_app)
    assert {c.name: started_at(c) for c in (db, app)} == before
    [run] = runs(docker_app)
    assert run.status == "skipped"
    assert run.error.startswith(f"dependency_cycle: dependency cycle: {db.name} -> "
                                f"{app.name} -> {db.name}")
    [incident] = incidents(docker_app)
    assert incident.status == "escalated" and "dependency cycle" in incident.escalation_reason
    view = docker_app.test_client().get(f"/api/v1/targets/{db.name}/dependents",
                                        headers=api_headers())
    assert view.status_code == 409 and "dependency cycle" in view.json["message"]


def test_compose_restart_true_restarts_the_app_after_the_db(docker_app,
                                                            docker_client) -> None:
    """The labels Compose v2 writes for depends_on: {db: {condition: service_healthy,
    restart: true}}; `restart: false` leaves the other service alone."""
    project = f"p{uuid.uuid4().hex[:6]}"
    db = compose_service(docker_client, project, "db", "")
    app = compose_service(docker_client, project, "app", "db:service_healthy:true")
    other = compose_service(docker_client, project, "other", "db:service_started:false")
    other_before = started_at(other)
    fire_container(docker_app.test_client(), db.name)
    drain(docker_app)
    assert started(app) > started(db)
    assert started_at(other) == other_before
    assert [(r.target, r.status) for r in runs(docker_app)] == [
        (db.name, "succeeded"), (app.name, "succeeded")]


def test_the_dependents_endpoint_answers_503_without_dockerd(db_url, app_factory,
                                                             tmp_path) -> None:
    app = app_factory(db_url, docker_host=f"unix://{tmp_path}/no-dockerd.sock")
    answer = app.test_client().get("/api/v1/targets/web/dependents", headers=api_headers())
    assert answer.status_code == 503 and answer.json["error"] == "backend_unavailable"


COMPOSE_FILE = """
services:
  db:
    image: autofix/busybox:test
    pull_policy: never
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
    network_mode: host
    labels: {autofix.enable: "true"}
    healthcheck: {test: ["CMD", "true"], interval: 1s, timeout: 1s, retries: 3,
                  start_period: 0s}
  app:
    image: autofix/busybox:test
    pull_policy: never
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
    network_mode: host
    labels: {autofix.enable: "true"}
    depends_on:
      db: {condition: service_healthy, restart: true}
"""


def test_a_real_compose_project_restarts_the_app_after_the_db_is_healthy(
        docker_app, docker_client, private_dockerd, tmp_path) -> None:
    """`docker compose up` (v2) writes the labels; autofix restarts db (and waits for its
    health check), then app, which says depends_on db with restart: true."""
    import subprocess

    from tests.harness.procs import components_required, require_binary

    docker = require_binary("docker")
    env = {"DOCKER_HOST": private_dockerd.url, "PATH": "/usr/local/bin:/usr/bin:/bin",
           "HOME": str(tmp_path)}
    if subprocess.run([docker, "compose", "version"], capture_output=True,
                      env=env, timeout=60).returncode != 0:
        message = "`docker compose` (v2) does not run: bash .ci/install-os-packages"
        if components_required():
            pytest.fail(message)
        pytest.skip(message)
    ensure_busybox_image(docker_client)
    (tmp_path / "compose.yml").write_text(COMPOSE_FILE)
    project = f"dep{uuid.uuid4().hex[:6]}"
    compose = [docker, "compose", "-p", project, "-f", str(tmp_path / "compose.yml")]
    up = subprocess.run([*compose, "up", "-d", "--wait"], capture_output=True, text=True,
                        env=env, timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        db = docker_client.containers.get(f"{project}-db-1")
        app = docker_client.containers.get(f"{project}-app-1")
        assert app.labels["com.docker.compose.depends_on"] == "db:service_healthy:true"
        fire_container(docker_app.test_client(), db.name)
        drain(docker_app)
        db.reload()
        assert db.attrs["State"]["Health"]["Status"] == "healthy"
        assert started(app) > started(db)
        assert [(r.target, r.status) for r in runs(docker_app)] == [
            (db.name, "succeeded"), (app.name, "succeeded")]
    finally:
        subprocess.run([*compose, "down", "-t", "1"], capture_output=True, env=env,
                       timeout=300)


def test_a_sidecar_docker_restarted_before_its_parent_s_restart_is_still_restarted(
        docker_app, docker_client) -> None:
    """The VPN pattern: the sidecar crashed while its parent was down and Docker's restart
    policy brought it back, into the old namespace. That restart predates the parent's:
    not a recovery, so autofix still restarts it after the parent."""
    parent = run_container(docker_client)
    ensure_busybox_image(docker_client)
    # Exits once, then runs: Docker's policy restarts it (RestartCount 1).
    once = ["sh", "-c", "test -f /tmp/ran || { touch /tmp/ran; exit 1; }; "
            "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
    child = docker_client.containers.run(
        "autofix/busybox:test", once, name=f"t-{uuid.uuid4().hex[:8]}", detach=True,
        network_mode=f"container:{parent.id}", labels={"autofix.enable": "true"},
        restart_policy={"Name": "on-failure"})
    for _ in range(100):
        child.reload()
        if child.attrs["RestartCount"] >= 1 and child.status == "running":
            break
        time.sleep(0.1)
    assert child.attrs["RestartCount"] >= 1 and child.status == "running"
    child_before = started_at(child)
    fire_container(docker_app.test_client(), parent.name)
    drain(docker_app)
    assert started_at(child) != child_before and started(child) > started(parent)
    assert [(r.trigger, r.status) for r in runs(docker_app)] == [
        ("alert", "succeeded"), ("dependent", "succeeded")]


def test_a_stopped_copy_with_its_service_s_labels_is_not_restarted(docker_app,
                                                                   docker_client) -> None:
    """Review of #31, finding 2: the list is `?all=1`; a quarantined copy (stopped, renamed,
    its Compose labels kept) and a stopped one-off are no dependents."""
    project = f"p{uuid.uuid4().hex[:6]}"
    db = compose_service(docker_client, project, "db", "")
    copy = compose_service(docker_client, project, "app", "db:service_started:true")
    copy.stop(timeout=0)
    copy.rename(f"{project}-app-1.autofix-quarantine-20261207T020000Z")
    one_off = compose_service(docker_client, project, "app", "db:service_started:true")
    one_off.stop(timeout=0)
    one_off.rename(f"{project}-app-run-3f2a")
    app = compose_service(docker_client, project, "app", "db:service_started:true")
    fire_container(docker_app.test_client(), db.name)
    drain(docker_app)
    assert [(r.trigger, r.target, r.status) for r in runs(docker_app)] == [
        ("alert", db.name, "succeeded"), ("dependent", app.name, "succeeded")]
    for stopped in (copy, one_off):
        stopped.reload()
        assert stopped.status == "exited"


def test_a_proxy_that_refuses_the_list_stops_the_restart(
        db_url, app_factory, private_dockerd, docker_client, tmp_path) -> None:
    """Review of #31, finding 7(a): an older socket proxy without the container list
    answers 403; autofix cannot see the sidecar, so it restarts nothing and escalates."""
    from tests.harness.socket_proxy import start_socket_proxy

    proxy = start_socket_proxy("receiver.cfg", private_dockerd.sock, tmp_path,
                               without="http-request allow if read c_list !has_body")
    try:
        path = tmp_path / "playbooks.yml"
        path.write_text(PLAYBOOK)
        app = app_factory(db_url, docker_host=proxy.docker_host, playbooks=path,
                          inventory_interval=0)
        parent = run_container(docker_client)
        child = sharing(docker_client, parent)
        before = started_at(parent), started_at(child)
        fire_container(app.test_client(), parent.name)
        drain(app)
        assert (started_at(parent), started_at(child)) == before
        [run] = runs(app)
        assert run.status == "skipped" and run.error.startswith("dependents_unknown: ")
        [incident] = incidents(app)
        assert incident.status == "escalated"
        assert f"cannot list the dependents of {parent.name}" in incident.escalation_reason
        assert any("/containers/json" in line for line in proxy.denials())
    finally:
        proxy.stop()
