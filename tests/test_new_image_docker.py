"""A bad update on a real dockerd (issue #31): `app` runs from image v1 and autofix records
it (the events follower, or the inventory's one list call); `app` is removed and run again
from image v2, which exits non-zero. TargetDown for `app`: by default nothing restarts and
the incident escalates naming both images; with `on_new_image: act` it restarts as before.
Both images are committed locally from the busybox test image (no registry)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from receiver.runtime.image_inventory import take_inventory
from receiver.runtime.intent_follower import EventsFollower
from receiver.store.models import ImageHistory, Incident
from tests.harness.app_driver import actions, drain, evidence_rows, fire_container
from tests.harness.busybox import FAST_STOP, TAG
from tests.harness.procs import wait_for

REPOSITORY = "autofix/newimage"
PLAYBOOK = """
playbooks:
  - name: restart-on-down
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
%s    actions:
      - restart: {timeout_s: 5}
"""


def build_versions(client: Any) -> dict[str, str]:
    """`autofix/newimage:v1` and `:v2`: the busybox image with a label each, so two IDs."""
    ids = {}
    for version in ("v1", "v2"):
        base = client.containers.create(TAG, ["true"])
        try:
            image = base.commit(repository=REPOSITORY, tag=version,
                                changes=[f"LABEL autofix.test.version={version}"])
        finally:
            base.remove(force=True)
        ids[version] = image.id
    assert ids["v1"] != ids["v2"]
    return ids


def run_app(client: Any, name: str, version: str, command: list[str]) -> Any:
    return client.containers.run(f"{REPOSITORY}:{version}", command, name=name, detach=True,
                                 network_mode="host", labels={"autofix.enable": "true"})


def history(app: Any, name: str) -> list[tuple[str, str]]:
    with app.extensions["autofix"].database.session() as session:
        return [(row.image_id, row.image_ref) for row in session.scalars(
            select(ImageHistory).where(ImageHistory.name == name)
            .order_by(ImageHistory.created_at))]


def incident(app: Any, name: str) -> Incident:
    with app.extensions["autofix"].database.session() as session:
        found = session.scalars(select(Incident).where(Incident.target == name)).one()
        session.expunge(found)
        return found


def make_app(app_factory: Any, pg_url: str, dockerd: Any, tmp_path: Path,
             extra: str = "") -> Any:
    path = tmp_path / f"playbooks-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(PLAYBOOK % extra)
    return app_factory(pg_url, docker_host=dockerd.url, playbooks=path)


def update_to_a_failing_v2(client: Any, name: str) -> Any:
    """`docker rm -f app && docker run --name app app:v2`, and v2 exits with code 3."""
    client.containers.get(name).remove(force=True)
    app_v2 = run_app(client, name, "v2", ["sh", "-c", "sleep 1; exit 3"])
    wait_for(lambda: (app_v2.reload() or True) and app_v2.status == "exited", 20,
             "v2 exited")
    return app_v2


def test_a_failing_new_image_is_escalated_not_restarted(
        pg_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        tmp_path: Path) -> None:
    ids = build_versions(docker_client)
    app = make_app(app_factory, pg_url, private_dockerd, tmp_path)
    svc = app.extensions["autofix"]
    name = f"app-{uuid.uuid4().hex[:6]}"
    follower = EventsFollower(svc.database, svc.executors.default, "test:1",
                              svc.settings.opt_in_label, lease_s=3.0).start()
    try:
        assert follower.following.wait(20), "the follower took the lease"
        run_app(docker_client, name, "v1", FAST_STOP)
        wait_for(lambda: len(history(app, name)) == 1, 10, "the follower recorded v1")
        app_v2 = update_to_a_failing_v2(docker_client, name)
        wait_for(lambda: len(history(app, name)) == 2, 10, "the follower recorded v2")
        assert history(app, name) == [(ids["v1"], f"{REPOSITORY}:v1"),
                                      (ids["v2"], f"{REPOSITORY}:v2")]
        before = (app_v2.attrs["State"]["StartedAt"], app_v2.attrs["RestartCount"])

        fire_container(app.test_client(), name)
        drain(app)

        app_v2.reload()
        assert app_v2.status == "exited", "never restarted"
        assert (app_v2.attrs["State"]["StartedAt"], app_v2.attrs["RestartCount"]) == before
        [skip] = actions(app, name)
        assert (skip.action, skip.outcome, skip.reason) == ("guard", "skipped", "bad_update")
        found = incident(app, name)
        assert (found.status, found.classification) == ("escalated", "bad_update")
        reason = found.escalation_reason or ""
        assert reason.startswith(f"bad_update: {name} was created from a new image"), reason
        assert (f"{ids['v1'][:19]} ({REPOSITORY}:v1) → {ids['v2'][:19]} ({REPOSITORY}:v2)"
                in reason), reason
        [evidence] = evidence_rows(app, name)
        assert evidence.details["new_image"]["old_image_id"] == ids["v1"]
        assert evidence.details["new_image"]["new_image_id"] == ids["v2"]
    finally:
        follower.stop()
        docker_client.containers.get(name).remove(force=True)


def test_on_new_image_act_restarts_as_before(
        pg_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        tmp_path: Path) -> None:
    ids = build_versions(docker_client)
    app = make_app(app_factory, pg_url, private_dockerd, tmp_path, "    on_new_image: act\n")
    svc = app.extensions["autofix"]
    name = f"app-{uuid.uuid4().hex[:6]}"
    try:
        run_app(docker_client, name, "v1", FAST_STOP)
        # No follower here: the inventory's one list call records it.
        assert take_inventory(svc.database, list(svc.executors), svc.settings.opt_in_label,
                              svc.now) >= 1
        assert history(app, name) == [(ids["v1"], f"{REPOSITORY}:v1")]
        app_v2 = update_to_a_failing_v2(docker_client, name)
        before = app_v2.attrs["State"]["StartedAt"]

        fire_container(app.test_client(), name)
        drain(app)

        [restart] = actions(app, name)
        assert (restart.action, restart.outcome) == ("restart", "succeeded")
        app_v2.reload()
        assert app_v2.attrs["State"]["StartedAt"] != before
        [evidence] = evidence_rows(app, name)
        assert evidence.classification == "bad_update"
        assert evidence.details["new_image"]["old_image_ref"] == f"{REPOSITORY}:v1"
    finally:
        docker_client.containers.get(name).remove(force=True)
