"""A bad update (issue #31): the image history, the new-image check, and what a playbook's
`on_new_image` does with it (escalate by default, act, or roll back), on the in-memory
executor against SQLite and PostgreSQL. tests/test_new_image_docker.py is the real proof."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.config.settings import Settings
from receiver.domain.images import ContainerImage, new_image
from receiver.executor import RollbackResult
from receiver.playbooks.config import Playbook
from receiver.runtime.image_inventory import take_inventory
from receiver.runtime.runner import Runner
from receiver.store import image_history
from receiver.store.migrate import prune
from receiver.store.models import Action, EvidenceRecord, ImageHistory, Incident, Run
from tests.conftest import api_headers, webhook_headers
from tests.harness.memory_executor import MemoryExecutor
from tests.payloads import alert, notification

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

PLAYBOOK = """
playbooks:
  - name: fix
    matchers: ['alertname="TargetDown"']
    cooldown: 0s
{extra}    actions:
      - restart: {{}}
"""


def image(name: str, container_id: str, image_id: str, created: datetime) -> ContainerImage:
    return ContainerImage(name, container_id, image_id, f"app:{image_id[7]}", created)


# --- pure: what a new image is ---------------------------------------------------------

def test_a_new_image_is_another_image_than_the_predecessor_within_the_window() -> None:
    old = image("app", "a", V1, NOW - timedelta(days=3))
    new = image("app", "b", V2, NOW - timedelta(minutes=5))
    change = new_image(new, old, NOW, 3600)
    assert change is not None
    text = change.describe(NOW)
    assert "app was created from a new image 5 min ago" in text
    assert "sha256:111111111111 (app:1) → sha256:222222222222 (app:2)" in text
    assert change.as_evidence(NOW)["old_image_id"] == V1
    assert new_image(new, old, NOW + timedelta(hours=1), 3600) is None  # outside the window
    assert new_image(new, old, NOW, 0) is None  # turned off
    assert new_image(new, None, NOW, 3600) is None  # no predecessor: history starts now
    assert new_image(new, image("app", "a", V2, NOW - timedelta(days=3)), NOW, 3600) is None
    assert new_image(new, old, NOW, 3600, ran_before=True) is None  # a return to it


def test_settings_and_playbook_defaults() -> None:
    settings = Settings()
    assert (settings.new_image_window, settings.inventory_interval) == (3600.0, 60.0)
    assert Settings(new_image_window="30m", inventory_interval="2m").new_image_window == 1800
    with pytest.raises(ValueError, match="not a duration"):
        Settings(new_image_window="soon")
    playbook = Playbook.model_validate({"name": "p", "matchers": ['a="b"'],
                                        "actions": ["restart"]})
    assert playbook.on_new_image == "escalate"
    with pytest.raises(ValueError):
        Playbook.model_validate({"name": "p", "matchers": ['a="b"'], "actions": ["restart"],
                                 "on_new_image": "ignore"})


# --- the history in the database -------------------------------------------------------

def test_history_is_insert_if_absent_and_finds_the_predecessor(db_url: str,
                                                               app_factory: Any) -> None:
    database = app_factory(db_url).extensions["autofix"].database
    old = image("app", "a" * 64, V1, NOW - timedelta(days=3))
    new = image("app", "b" * 64, V2, NOW - timedelta(minutes=5))
    with database.session() as session:
        assert image_history.record(session, [old, new], NOW) == 2
    with database.session() as session:  # another worker saw the same containers
        assert image_history.record(session, [old, new], NOW + timedelta(seconds=1)) == 0
        assert image_history.known_ids(session, [old.container_id, "c" * 64]) == {
            old.container_id}
    with database.session() as session:
        rows = list(session.scalars(select(ImageHistory).order_by(ImageHistory.id)))
        assert [(r.container_id, r.image_id, r.first_seen_at) for r in rows] == [
            (old.container_id, V1, NOW), (new.container_id, V2, NOW)]
        assert image_history.predecessor(session, new) == old
        assert image_history.predecessor(session, old) is None
        assert not image_history.ran_before(session, new, old)


def test_retention_keeps_the_newest_three_of_each_name(db_url: str, app_factory: Any) -> None:
    database = app_factory(db_url).extensions["autofix"].database
    with database.session() as session:
        image_history.record(session, [
            image("app", f"{i}" * 64, V1 if i % 2 else V2, NOW - timedelta(days=10 - i))
            for i in range(1, 6)], NOW - timedelta(days=9))
        image_history.record(session, [image("db", "d" * 64, V1, NOW - timedelta(days=9))],
                             NOW - timedelta(days=9))
    assert prune(database, timedelta(days=1), now=NOW)["image_history"] == 2
    with database.session() as session:
        left = sorted((r.name, r.container_id[0]) for r in session.scalars(select(ImageHistory)))
    assert left == [("app", "3"), ("app", "4"), ("app", "5"), ("db", "d")]


def test_retention_never_loses_the_row_that_tells_a_return_to_an_earlier_image(
        db_url: str, app_factory: Any) -> None:
    """Review #31, 6 (/tmp/rev/flip.py): A for months, B deployed, rolled back to A. Keeping
    two rows per name pruned the first A, so the rolled-back A failing within the window
    was judged "new image B → A" and rolled back to the bad B. Now a name with a container
    created within the window keeps every row, and each name its newest three."""
    database = app_factory(db_url).extensions["autofix"].database
    t0, now = datetime(2026, 1, 1, tzinfo=UTC), NOW
    rows_ = [image("app", "0" * 64, V2, t0 - timedelta(days=1)),  # older still: B once
             image("app", "1" * 64, V1, t0), image("app", "2" * 64, V2, now),
             image("app", "3" * 64, V1, now + timedelta(minutes=5))]

    def judge(at: datetime) -> Any:
        with database.session() as session:
            current = image_history.find(session, "3" * 64)
            assert current is not None
            previous = image_history.predecessor(session, current)
            return new_image(current, previous, at, 3600, previous is not None
                             and image_history.ran_before(session, current, previous))

    with database.session() as session:
        for row in rows_:
            image_history.record(session, [row], min(row.created_at, now))
    assert judge(now + timedelta(minutes=20)) is None  # a return to A: no new image
    # Retention 30 days: the window (1h) holds the name's every row; even the fourth.
    assert prune(database, timedelta(days=30), now=now + timedelta(minutes=10))[
        "image_history"] == 0
    assert judge(now + timedelta(minutes=20)) is None
    # Once no container of the name can be judged, it keeps its newest three.
    assert prune(database, timedelta(days=30), now=now + timedelta(hours=2))[
        "image_history"] == 1
    with database.session() as session:
        assert sorted(r.container_id[0] for r in session.scalars(select(ImageHistory))) == [
            "1", "2", "3"]
    # And the newest three still tell the return.
    assert judge(now + timedelta(minutes=20)) is None


def test_the_inventory_records_opted_in_containers_once_from_one_list(
        db_url: str, app_factory: Any) -> None:
    executor = MemoryExecutor()
    app = app_factory(db_url, executor=executor)
    svc = app.extensions["autofix"]
    executor.add("web")
    executor.add("other", labels={})
    assert take_inventory(svc.database, list(svc.executors), "autofix.enable", svc.now) == 1
    assert take_inventory(svc.database, list(svc.executors), "autofix.enable", svc.now) == 0
    assert executor.image_reads == ["inventory", "inventory"]  # never one inspect each
    with svc.database.session() as session:
        assert [r.name for r in session.scalars(select(ImageHistory))] == ["web"]


def test_the_history_follows_a_compose_v2_rename(db_url: str, app_factory: Any) -> None:
    """Review #31, 3 (/tmp/rev/tmpname.py): Compose v2 creates a recreated container as
    `<old id[:12]>_<name>` and renames it; the history recorded the temporary name, so a
    config-only recreate (same image B) was judged "new image A → B" against a 60-day-old
    container. The start/rename event and the inventory move a known row to its name."""
    from receiver.engine.new_image import _judged, _named
    from receiver.runtime.image_inventory import record_container
    from tests.harness.memory_executor import MemoryContainer

    executor = MemoryExecutor()
    svc = app_factory(db_url, executor=executor).extensions["autofix"]
    c1 = image("p-app-1", "1" * 64, V1, NOW - timedelta(days=60))
    c2 = image("111111111111_p-app-1", "2" * 64, V2, NOW - timedelta(days=7))
    c3 = image("222222222222_p-app-1", "3" * 64, V2, NOW)  # config-only: the same image
    with svc.database.session() as session:  # as the follower's inspect on `create` saw them
        image_history.record(session, [c1], c1.created_at)
        image_history.record(session, [c2], c2.created_at)
    # c2's start (or rename) event: the follower moves its row to its name, no inspect.
    assert not record_container(svc.database, executor, c2.container_id, NOW, "p-app-1")
    assert executor.image_reads == []
    with svc.database.session() as session:
        image_history.record(session, [c3], c3.created_at)
    # c3 renamed too, seen this time by the inventory's list; a set-aside name is not
    # followed (a quarantined container keeps its place in its name's history).
    executor.containers["p-app-1"] = MemoryContainer("p-app-1", c3.container_id, image=V2,
                                                     created_at=NOW)
    executor.containers["q"] = MemoryContainer(
        "p-app-1.autofix-quarantine-20260601T120000Z", c2.container_id, image=V2)
    assert take_inventory(svc.database, [executor], "autofix.enable", svc.now) == 0
    with svc.database.session() as session:
        assert {r.container_id[0]: r.name for r in session.scalars(select(ImageHistory))} == {
            "1": "p-app-1", "2": "p-app-1", "3": "p-app-1"}
        current = image_history.find(session, c3.container_id)
        assert current is not None
        assert _judged(session, _named(current, "p-app-1"), NOW + timedelta(minutes=10),
                       3600) is None  # B after B: no new image
    # A run's own lookup moves a row it finds under another name too.
    with svc.database.session() as session:
        image_history.record(session, [image("333333333333_web", "4" * 64, V2, NOW)], NOW)
        assert image_history.rename(session, "4" * 64, "web") == 1
        assert image_history.rename(session, "4" * 64, "web") == 0


def test_the_inventory_is_a_periodic_job_of_its_own_lane(db_url: str, app_factory: Any) -> None:
    app = app_factory(db_url, executor=MemoryExecutor(), inventory_interval="2m")
    lanes = {lane.name: lane for lane in Runner(app.extensions["autofix"])._periodic.lanes}
    [job] = lanes["inventory"].jobs
    assert (job.name, job.interval_s, job.at_start) == ("image_inventory", 120.0, True)
    app = app_factory(db_url, executor=MemoryExecutor(), inventory_interval=0)
    assert "inventory" not in {lane.name for lane in
                               Runner(app.extensions["autofix"])._periodic.lanes}


# --- what a run does with a new image --------------------------------------------------

def make_app(app_factory: Any, db_url: str, tmp_path: Path, extra: str = ""
             ) -> tuple[Any, MemoryExecutor, list[str]]:
    """The app with the real rollback_image action on the memory executor; `rolled` lists
    the images it rolled back to."""
    executor = MemoryExecutor()
    path = tmp_path / "playbooks.yml"
    path.write_text(PLAYBOOK.format(extra=extra))
    app = app_factory(db_url, playbooks=path, executor=executor)
    rolled: list[str] = []
    rollback_image = executor.rollback_image

    def recording(target: str, image: str, now: datetime,
                  stop_timeout_s: float = 10.0) -> RollbackResult:
        rolled.append(image)
        return rollback_image(target, image, now, stop_timeout_s)

    executor.rollback_image = recording  # type: ignore[method-assign]
    return app, executor, rolled


def updated(app: Any, executor: MemoryExecutor, ago: timedelta = timedelta(minutes=3)) -> None:
    """web seen on V1 by the inventory, then recreated from V2 `ago`, and failing."""
    svc = app.extensions["autofix"]
    executor.add("web")
    take_inventory(svc.database, list(svc.executors), "autofix.enable", svc.now)
    executor.recreate("web", V2, "app:v2", datetime.now(UTC) - ago, status="exited")


def fire_and_drain(app: Any, container: str = "web") -> None:
    body = notification([alert({"container": container},
                               starts_at=datetime.now(UTC) - timedelta(minutes=1))])
    assert app.test_client().post("/webhook/alertmanager", json=body,
                                  headers=webhook_headers()).status_code == 200
    runner = Runner(app.extensions["autofix"])
    while runner.run_once() is not None:
        pass


def rows(app: Any, model: Any) -> list[Any]:
    with app.extensions["autofix"].database.session() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def skipped(app: Any, reason: str) -> float:
    value = app.extensions["autofix"].metrics.registry.get_sample_value(
        "autofix_runs_skipped_total", {"reason": reason})
    return float(value or 0)


def rollbacks(app: Any, outcome: str) -> float:
    return float(app.extensions["autofix"].metrics.registry.get_sample_value(
        "autofix_rollbacks_total", {"outcome": outcome}) or 0)


def test_by_default_a_new_image_escalates_and_nothing_restarts(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    app, executor, rolled = make_app(app_factory, db_url, tmp_path)
    updated(app, executor)
    fire_and_drain(app)
    assert executor.restarts("web") == 0 and rolled == []
    [skip] = rows(app, Action)
    assert (skip.action, skip.outcome, skip.reason) == ("guard", "skipped", "bad_update")
    [incident] = rows(app, Incident)
    assert (incident.status, incident.classification) == ("escalated", "bad_update")
    reason = incident.escalation_reason or ""
    assert reason.startswith("bad_update: web was created from a new image 3 min ago"), reason
    assert "sha256:111111111111 (app:v1) → sha256:222222222222 (app:v2)" in reason
    assert "on_new_image: escalate" in reason
    assert skipped(app, "bad_update") == 1
    [evidence] = rows(app, EvidenceRecord)
    assert evidence.details["new_image"]["new_image_id"] == V2
    assert evidence.details["new_image"]["old_image_ref"] == "app:v1"
    # The incident's evidence, as the API serves it.
    served = app.test_client().get(f"/api/v1/incidents/{incident.id}",
                                   headers=api_headers()).json
    assert served["classification"] == "bad_update"
    [shown] = served["evidence"]
    assert shown["classification"] == "bad_update"
    assert shown["new_image"]["old_image_id"] == V1


def test_an_unreadable_image_is_no_guess_it_skips_image_unknown_and_escalates(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    """Review #31, 7(b): an ExecutorError reading the image was "no new image", so the
    container was restarted; now nothing is touched and a human is told why."""
    from receiver.executor import ExecutorError

    app, executor, rolled = make_app(app_factory, db_url, tmp_path)
    executor.add("web", status="exited")

    def refused(target: str) -> ContainerImage | None:
        raise ExecutorError("403 Forbidden from the socket proxy")

    executor.container_image = refused  # type: ignore[method-assign]
    fire_and_drain(app)
    assert executor.restarts("web") == 0 and rolled == []
    [skip] = rows(app, Action)
    assert (skip.action, skip.outcome, skip.reason) == ("guard", "skipped", "image_unknown")
    [incident] = rows(app, Incident)
    assert incident.status == "escalated"
    reason = incident.escalation_reason or ""
    assert reason.startswith("image_unknown: could not read which image web runs"), reason
    assert "403 Forbidden from the socket proxy" in reason
    assert skipped(app, "image_unknown") == 1


def test_without_a_predecessor_or_outside_the_window_it_acts(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    executor.recreate("web", V2, "app:v2", datetime.now(UTC) - timedelta(minutes=3),
                      status="exited")  # autofix never saw its predecessor
    executor.recreate("api", V2, "app:v2", datetime.now(UTC) - timedelta(hours=2),
                      status="exited")
    svc = app.extensions["autofix"]
    with svc.database.session() as session:  # api's predecessor is known, but long ago
        image_history.record(session, [image("api", "e" * 64, V1, NOW - timedelta(days=9))],
                             NOW)
    fire_and_drain(app, "web")
    fire_and_drain(app, "api")
    assert executor.restarts("web") == 1 and executor.restarts("api") == 1
    assert [i.classification for i in rows(app, Incident)] == ["crashed", "crashed"]
    assert executor.image_reads == ["web", "api"]  # one inspect each, then remembered
    with svc.database.session() as session:
        assert {r.name for r in session.scalars(select(ImageHistory))} == {"web", "api"}


def test_on_new_image_act_acts_and_still_records_the_new_image(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, "    on_new_image: act\n")
    updated(app, executor)
    fire_and_drain(app)
    assert executor.restarts("web") == 1
    [restart] = rows(app, Action)
    assert (restart.action, restart.outcome) == ("restart", "succeeded")
    [evidence] = rows(app, EvidenceRecord)
    assert evidence.classification == "bad_update"
    assert evidence.details["new_image"]["old_image_id"] == V1


def test_on_new_image_rollback_replaces_the_steps_and_escalates_what_it_did(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    app, executor, rolled = make_app(app_factory, db_url, tmp_path,
                                     "    on_new_image: rollback\n")
    updated(app, executor)
    executor.containers["web"].status = "running"  # what the wait step then sees

    fire_and_drain(app)
    assert rolled == [V1] and executor.restarts("web") == 0
    steps = rows(app, Action)
    assert [(a.action, a.outcome) for a in steps] == [("rollback_image", "succeeded"),
                                                      ("wait_healthy", "succeeded")]
    assert steps[0].params["image"] == V1
    [incident] = rows(app, Incident)
    assert incident.status == "escalated"
    assert "autofix rolled back web to sha256:111111111111 (app:v1)" in (
        incident.escalation_reason or "")
    assert [r.status for r in rows(app, Run)] == ["succeeded"]
    assert (rollbacks(app, "succeeded"), rollbacks(app, "failed")) == (1, 0)


def test_a_rollback_the_backend_refuses_fails_and_escalates(
        db_url: str, app_factory: Any, tmp_path: Path) -> None:
    app, executor, rolled = make_app(app_factory, db_url, tmp_path,
                                     "    on_new_image: rollback\n")
    executor.images = {"sha256:" + "9" * 64}  # V1 is no longer present locally
    updated(app, executor)
    fire_and_drain(app)
    assert rolled == [V1] and executor.restarts("web") == 0
    assert "web" in executor.containers and executor.containers["web"].image == V2
    [incident] = rows(app, Incident)
    assert incident.status == "escalated"
    assert "is no longer present" in (incident.escalation_reason or "")
    assert rollbacks(app, "failed") == 1


def test_a_return_to_an_earlier_image_is_no_new_image(db_url: str, app_factory: Any,
                                                      tmp_path: Path) -> None:
    """After a rollback, web runs V1 again: its predecessor ran V2, but an earlier one ran
    V1. Were that a new image, the next failure would roll back to the bad update."""
    app, executor, _ = make_app(app_factory, db_url, tmp_path, "    on_new_image: rollback\n")
    updated(app, executor, ago=timedelta(minutes=10))
    svc = app.extensions["autofix"]
    take_inventory(svc.database, list(svc.executors), "autofix.enable", svc.now)
    executor.recreate("web", V1, "app:v1", datetime.now(UTC) - timedelta(minutes=1),
                      status="exited")
    fire_and_drain(app)
    assert executor.restarts("web") == 1
    assert [i.classification for i in rows(app, Incident)] == ["crashed"]


def test_a_manual_run_does_what_its_playbook_says(db_url: str, app_factory: Any,
                                                  tmp_path: Path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path)
    updated(app, executor)
    response = app.test_client().post(
        "/api/v1/playbooks/fix/run", headers=api_headers(),
        json={"labels": {"container": "web"}, "reason": "the new image is fine, restart"})
    assert response.status_code == 202, response.json
    runner = Runner(app.extensions["autofix"])
    while runner.run_once() is not None:
        pass
    assert executor.restarts("web") == 1


def test_migration_0013_goes_down_and_up(db_url: str) -> None:
    from alembic import command
    from sqlalchemy import create_engine, inspect

    from receiver.store.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(db_url), "0012")
    engine = create_engine(db_url)
    try:
        assert "image_history" not in inspect(engine).get_table_names()
        upgrade(db_url)
        found = inspect(engine)
        assert "image_history" in found.get_table_names()
        assert "ix_image_history_name_created" in {
            i["name"] for i in found.get_indexes("image_history")}
    finally:
        engine.dispose()


def test_the_slack_evidence_message_shows_the_image_change() -> None:
    from receiver.notify import Event, IncidentInfo, build_slack_message

    details = {"classification": "bad_update", "target": "web",
               "state": {"status": "exited", "exit_code": 3},
               "new_image": "web was created from a new image 3 min ago (at ...): "
                            "sha256:111111111111 (app:v1) → sha256:222222222222 (app:v2)"}
    message = build_slack_message(Event("evidence", 1, details),
                                  IncidentInfo(1, "TargetDown", "f", "web", "remediating"))
    fields = next(b["fields"] for b in message["blocks"] if "fields" in b)
    shown = " ".join(f["text"] for f in fields)
    assert "*New image*" in shown and "(app:v1) → sha256:222222222222 (app:v2)" in shown
