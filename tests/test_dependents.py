"""Dependents in order (issue #31) on the memory executor: the chain after a target's run,
each dependent a run of its own under every guard, opt-in, cycles, `dependents: leave`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from receiver.domain.graph import COMPOSE_DEPENDS_ON, COMPOSE_PROJECT, COMPOSE_SERVICE
from receiver.runtime.runner import Runner
from tests.harness.app_driver import actions, drain, incidents, runs
from tests.harness.memory_app import T0, fire, make_app
from tests.harness.playbook_yaml import restart_playbook

PLAYBOOK = restart_playbook(wait_timeout_s=0.2, running_for_s=0)
LEAVE = PLAYBOOK.replace("    actions:\n", "    dependents: leave\n    actions:\n")


def restarted(executor: Any) -> list[str]:
    return [name for verb, name in executor.calls if verb == "restart"]


def vpn_trio(executor: Any, **child: Any) -> None:
    executor.add("vpn")
    executor.add("app", network_mode="container:vpn", **child)
    executor.add("tail", network_mode=f"container:{executor.containers['app'].id}")


def test_dependents_restart_in_order_each_as_its_own_run(db_url, app_factory,
                                                         tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK)
    vpn_trio(executor)
    executor.add("bystander")
    fire(app.test_client(), {"container": "vpn"})
    drain(app)
    assert restarted(executor) == ["vpn", "app", "tail"]
    found = runs(app)
    assert [(r.trigger, r.target, r.status) for r in found] == [
        ("alert", "vpn", "succeeded"), ("dependent", "app", "succeeded"),
        ("dependent", "tail", "succeeded")]
    assert found[1].chain["parent"] == "vpn"
    assert [entry["name"] for entry in found[1].chain["remaining"]] == ["tail"]
    assert len({r.incident_id for r in found}) == 1
    assert incidents(app)[0].status == "remediating"


def test_a_dependent_not_opted_in_is_reported_and_left_with_its_own(db_url, app_factory,
                                                                    tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK)
    vpn_trio(executor, labels={})
    fire(app.test_client(), {"container": "vpn"})
    drain(app)
    assert restarted(executor) == ["vpn"]
    [incident] = incidents(app)
    assert incident.status == "escalated"
    assert "app" in incident.escalation_reason and "not opted in" in incident.escalation_reason


def test_a_cycle_is_refused_before_the_target_is_touched(db_url, app_factory,
                                                         tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK)
    for name, depends in (("db", "app:service_started:true"),
                          ("app", "db:service_healthy:true")):
        executor.add(name, labels={"autofix.enable": "true", COMPOSE_PROJECT: "p",
                                   COMPOSE_SERVICE: name, COMPOSE_DEPENDS_ON: depends})
    fire(app.test_client(), {"container": "db"})
    drain(app)
    assert restarted(executor) == []
    [run] = runs(app)
    assert run.status == "skipped" and run.error.startswith("dependency_cycle: ")
    [incident] = incidents(app)
    assert incident.status == "escalated"
    assert "dependency cycle: db -> app -> db" in incident.escalation_reason


def test_leave_touches_no_dependent(db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, LEAVE)
    vpn_trio(executor)
    fire(app.test_client(), {"container": "vpn"})
    drain(app)
    assert restarted(executor) == ["vpn"]
    assert [r.trigger for r in runs(app)] == ["alert"]


def test_a_guard_stopping_a_dependent_ends_the_chain_and_escalates(
        db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK,
                                protected_containers=["app"])
    vpn_trio(executor)
    fire(app.test_client(), {"container": "vpn"})
    drain(app)
    assert restarted(executor) == ["vpn"]
    assert [(r.target, r.status) for r in runs(app)] == [("vpn", "succeeded"),
                                                         ("app", "skipped")]
    reason = incidents(app)[0].escalation_reason
    assert "dependent app not restarted: target_not_allowed" in reason
    assert "not restarted after it: tail" in reason


def test_a_dependent_still_runs_after_its_parent_resolved_the_alert(
        db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK)
    vpn_trio(executor)
    client = app.test_client()
    fire(client, {"container": "vpn"})
    # The parent's run alone; its restart resolves the alert before the chain runs.
    assert Runner(app.extensions["autofix"]).run_once() is not None
    fire(client, {"container": "vpn"}, status="resolved")
    assert incidents(app)[0].status == "resolved"
    drain(app)
    assert restarted(executor) == ["vpn", "app", "tail"]


def test_a_dry_run_records_what_it_would_restart(db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path,
                                PLAYBOOK.replace("    actions:\n", "    mode: observe\n"
                                                 "    actions:\n"))
    vpn_trio(executor)
    fire(app.test_client(), {"container": "vpn"})
    drain(app)
    assert restarted(executor) == []
    assert [(r.trigger, r.target, r.status, r.dry_run) for r in runs(app)] == [
        ("alert", "vpn", "succeeded", True), ("dependent", "app", "succeeded", True),
        ("dependent", "tail", "succeeded", True)]
    assert [(a.target, a.action, a.outcome) for a in actions(app, "tail")] == [
        ("tail", "restart", "dry_run"), ("tail", "wait_healthy", "dry_run")]


def test_migration_0014_dependents_goes_down_and_up(db_url: str) -> None:
    from alembic import command
    from sqlalchemy import create_engine, inspect

    from receiver.store.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(db_url), "0013")
    engine = create_engine(db_url)
    try:
        assert "chain" not in {c["name"] for c in inspect(engine).get_columns("runs")}
        upgrade(db_url)
        assert "chain" in {c["name"] for c in inspect(engine).get_columns("runs")}
    finally:
        engine.dispose()


# ---- GET /api/v1/targets/{name}/dependents ----------------------------------------------

def test_dependents_endpoint_answers_the_order_kind_opt_in_and_errors(
        db_url, app_factory, tmp_path) -> None:
    from receiver.executor import ExecutorError
    from tests.conftest import api_headers

    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK)
    vpn_trio(executor, labels={})
    executor.add("db", labels={COMPOSE_PROJECT: "p", COMPOSE_SERVICE: "db"})
    executor.add("api", labels={COMPOSE_PROJECT: "p", COMPOSE_SERVICE: "api",
                                COMPOSE_DEPENDS_ON: "db:service_healthy:false"})
    client = app.test_client()
    got = client.get("/api/v1/targets/vpn/dependents", headers=api_headers())
    assert got.status_code == 200, got.json
    body = got.json
    assert (body["target"], body["backend"]) == ("vpn", "memory")
    assert [(d["name"], d["kind"], d["opted_in"], d["would_restart"], d["depends_on"])
            for d in body["dependents"]] == [("app", "network", False, False, ["vpn"]),
                                            ("tail", "network", True, False, ["app"])]
    assert "not opted in" in body["dependents"][0]["left_because"]
    compose = client.get("/api/v1/targets/db/dependents", headers=api_headers()).json
    assert [(d["name"], d["kind"], d["restart_flag"], d["would_restart"])
            for d in compose["dependents"]] == [("api", "compose", False, False)]
    missing = client.get("/api/v1/targets/nosuch/dependents", headers=api_headers())
    assert missing.status_code == 404 and missing.json["error"] == "not_found"
    assert client.get("/api/v1/targets/vpn/dependents").status_code == 401
    executor.containers["vpn"].network_mode = "container:tail"  # only memory allows it
    cycle = client.get("/api/v1/targets/vpn/dependents", headers=api_headers())
    assert cycle.status_code == 409
    assert "dependency cycle: vpn -> app -> tail -> vpn" in cycle.json["message"]

    def unreachable(identity: Any) -> Any:
        raise ExecutorError("docker ps -a: connection refused")

    executor.dependents = unreachable  # type: ignore[method-assign]
    down = client.get("/api/v1/targets/vpn/dependents", headers=api_headers())
    assert down.status_code == 503 and down.json["error"] == "backend_unavailable"


def test_an_approved_parent_s_dependents_inherit_the_approval(db_url, app_factory,
                                                              tmp_path) -> None:
    from tests.conftest import api_headers

    app, executor, _ = make_app(app_factory, db_url, tmp_path,
                                restart_playbook(wait_timeout_s=0.2, running_for_s=0,
                                                 mode="approve"))
    vpn_trio(executor)
    client = app.test_client()
    fire(client, {"container": "vpn"})
    drain(app)
    [waiting] = runs(app)
    assert waiting.status == "awaiting_approval" and restarted(executor) == []
    assert client.post(f"/api/v1/runs/{waiting.id}/approve", headers=api_headers(),
                       json={"actor": "ops"}).status_code == 200
    drain(app)
    assert restarted(executor) == ["vpn", "app", "tail"]
    found = runs(app)
    assert [r.status for r in found] == ["succeeded"] * 3
    assert [r.decided_by for r in found[1:]] == [f"inherited from run {waiting.id}",
                                                 f"inherited from run {found[1].id}"]


def test_a_manual_run_s_incident_closes_when_its_chain_ends(db_url, app_factory,
                                                            tmp_path) -> None:
    from tests.conftest import api_headers

    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK)
    vpn_trio(executor)
    client = app.test_client()
    assert client.post("/api/v1/playbooks/restart-on-down/run", headers=api_headers(),
                       json={"labels": {"container": "vpn"}, "reason": "t"}).status_code == 202
    drain(app)
    assert restarted(executor) == ["vpn", "app", "tail"]
    assert [r.trigger for r in runs(app)] == ["manual", "dependent", "dependent"]
    [incident] = incidents(app)
    assert incident.status == "closed"
    assert incident.close_reason.startswith("the dependents of a manual run:")


def test_dependents_that_cannot_be_listed_stop_the_run_and_escalate(
        db_url, app_factory, tmp_path) -> None:
    """A socket proxy that refuses the container list: autofix does not act on a guess."""
    from receiver.executor import ExecutorError

    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK)
    vpn_trio(executor)

    def refused(identity: Any) -> Any:
        raise ExecutorError("docker ps -a: 403 Forbidden")

    executor.dependents = refused  # type: ignore[method-assign]
    fire(app.test_client(), {"container": "vpn"})
    drain(app)
    assert restarted(executor) == []
    [run] = runs(app)
    assert run.status == "skipped" and run.error.startswith("dependents_unknown: ")
    assert "403 Forbidden" in run.error
    [incident] = incidents(app)
    assert incident.status == "escalated"
    assert "cannot list the dependents of vpn" in incident.escalation_reason


def test_leave_does_not_need_the_container_list(db_url, app_factory, tmp_path) -> None:
    from receiver.executor import ExecutorError

    app, executor, _ = make_app(app_factory, db_url, tmp_path, LEAVE)
    vpn_trio(executor)

    def refused(identity: Any) -> Any:
        raise ExecutorError("docker ps -a: 403 Forbidden")

    executor.dependents = refused  # type: ignore[method-assign]
    fire(app.test_client(), {"container": "vpn"})
    drain(app)
    assert restarted(executor) == ["vpn"]
    assert [(r.trigger, r.status) for r in runs(app)] == [("alert", "succeeded")]


# ---- a chain's end reaches a human even once the alert resolved (review of #31, 1) -------

HOOK = {"outbound_webhook_url": "http://127.0.0.1:9/hook"}


def escalated_events(app: Any) -> list[str]:
    from sqlalchemy import select

    from receiver.store.models import Outbox

    with app.extensions["autofix"].database.session() as session:
        return [str(o.details.get("reason")) for o in session.scalars(
            select(Outbox).where(Outbox.kind == "escalated").order_by(Outbox.id))]


def _parent_then_resolve(app: Any) -> Any:
    """The parent's run alone; its restart resolves the alert before the chain runs."""
    client = app.test_client()
    fire(client, {"container": "vpn"})
    assert Runner(app.extensions["autofix"]).run_once() is not None
    fire(client, {"container": "vpn"}, status="resolved")
    assert incidents(app)[0].status == "resolved"
    return client


def test_a_guard_stop_after_the_alert_resolved_escalates_and_a_repeat_does_not_hide_it(
        db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK,
                                protected_containers=["app"], **HOOK)
    vpn_trio(executor)
    client = _parent_then_resolve(app)
    drain(app)
    assert [(r.target, r.status) for r in runs(app)] == [("vpn", "succeeded"),
                                                         ("app", "skipped")]
    [incident] = incidents(app)
    assert incident.status == "escalated" and incident.resolved_at is not None
    assert "dependent app not restarted: target_not_allowed" in incident.escalation_reason
    assert any("dependent app not restarted" in reason for reason in escalated_events(app))
    # Alertmanager repeats the resolved alert (a group's next notification): still escalated.
    fire(client, {"container": "vpn"}, status="resolved")
    assert incidents(app)[0].status == "escalated" and incidents(app)[0].next_attempt_at is None
    drain(app)
    assert len(runs(app)) == 2  # nothing retried: the alert resolved
    # The alert fires again later: a new occurrence, a new incident; the first still waits.
    fire(client, {"container": "vpn"}, starts=T0 + timedelta(minutes=5))
    assert sorted(i.status for i in incidents(app)) == ["escalated", "open"]


def test_a_failed_dependent_escalates_after_the_resolve(
        db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK, **HOOK)
    vpn_trio(executor)
    executor.stays_unhealthy.add("app")
    _parent_then_resolve(app)
    drain(app)
    assert [(r.target, r.status) for r in runs(app)] == [("vpn", "succeeded"),
                                                         ("app", "failed")]
    [incident] = incidents(app)
    assert incident.status == "escalated"
    assert "dependent app was not restarted (failed)" in incident.escalation_reason
    assert incident.next_attempt_at is None


def test_a_dependent_left_not_opted_in_escalates_after_the_resolve(
        db_url, app_factory, tmp_path) -> None:
    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK, **HOOK)
    executor.add("vpn")
    executor.add("app", network_mode="container:vpn", labels={})
    client = app.test_client()
    # The parent's restart resolves the alert before its success is recorded.
    executor.on_restart = lambda _name: fire(client, {"container": "vpn"}, status="resolved")
    fire(client, {"container": "vpn"})
    drain(app)
    [incident] = incidents(app)
    assert incident.status == "escalated" and "not opted in" in incident.escalation_reason
    assert any("not opted in" in reason for reason in escalated_events(app))


def test_an_interrupted_dependent_run_escalates_after_the_resolve(
        db_url, app_factory, tmp_path) -> None:
    from sqlalchemy import update

    from receiver.runtime.runner import reconcile_interrupted
    from receiver.store.models import Run

    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK, **HOOK)
    vpn_trio(executor)
    _parent_then_resolve(app)
    dependent = runs(app)[1]
    services = app.extensions["autofix"]
    with services.database.session() as session:  # its worker died mid-step
        session.execute(update(Run).where(Run.id == dependent.id).values(
            status="running", worker="gone:1", current_step=0))
    assert reconcile_interrupted(services, worker="gone:1") == [dependent.id]
    [incident] = incidents(app)
    assert incident.status == "escalated"
    assert "interrupted" in incident.escalation_reason
    assert "not restarted after it: tail" in incident.escalation_reason
    assert any("interrupted" in reason for reason in escalated_events(app))


def test_a_dependent_held_by_the_kill_switch_is_queued_again_at_resume(
        db_url, app_factory, tmp_path) -> None:
    from tests.conftest import api_headers

    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK, **HOOK)
    vpn_trio(executor)
    client = _parent_then_resolve(app)
    assert client.post("/api/v1/pause", json={"actor": "alice", "reason": "freeze"},
                       headers=api_headers()).status_code == 200
    drain(app)
    assert restarted(executor) == ["vpn"]
    assert incidents(app)[0].status == "escalated"  # the chain stopped: a human hears it
    assert client.post("/api/v1/resume", json={"actor": "alice", "reason": "go"},
                       headers=api_headers()).status_code == 200
    drain(app)
    assert restarted(executor) == ["vpn", "app", "tail"]
    assert [(r.trigger, r.target, r.status) for r in runs(app)] == [
        ("alert", "vpn", "succeeded"), ("dependent", "app", "skipped"),
        ("dependent", "app", "succeeded"), ("dependent", "tail", "succeeded")]
    assert runs(app)[2].chain["parent"] == "vpn"


def test_a_dependent_held_by_a_maintenance_window_is_queued_again_at_its_end(
        db_url, app_factory, tmp_path) -> None:
    from tests.conftest import api_headers

    app, executor, clock = make_app(app_factory, db_url, tmp_path, PLAYBOOK, **HOOK)
    vpn_trio(executor)
    client = _parent_then_resolve(app)
    made = client.post("/api/v1/maintenance", headers=api_headers(), json={
        "matchers": ['target="app"'], "ends_at": (clock() + timedelta(hours=1)).isoformat(),
        "reason": "app upgrade", "actor": "alice"})
    assert made.status_code == 201, made.json
    drain(app)
    assert restarted(executor) == ["vpn"]
    ended = client.post(f"/api/v1/maintenance/{made.json['id']}/end", headers=api_headers(),
                        json={"actor": "alice", "reason": "done"})
    assert ended.status_code == 200, ended.json
    drain(app)
    assert restarted(executor) == ["vpn", "app", "tail"]


def test_a_quarantined_copy_and_a_stopped_one_off_are_not_restarted(
        db_url, app_factory, tmp_path) -> None:
    def labels(service: str, depends: str | None = None) -> dict[str, str]:
        return {"autofix.enable": "true", COMPOSE_PROJECT: "p", COMPOSE_SERVICE: service,
                **({COMPOSE_DEPENDS_ON: depends} if depends else {})}

    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK)
    executor.add("db", labels=labels("db"))
    executor.add("app", labels=labels("app", "db:service_started:true"))
    executor.add("app.autofix-quarantine-20261207T020000Z",
                 labels=labels("app", "db:service_started:true"), status="exited")
    executor.add("p-app-run-3f2a", labels=labels("app", "db:service_started:true"),
                 status="exited")
    executor.add("web", labels=labels("web", "db:service_started:true"))
    fire(app.test_client(), {"container": "db"})
    drain(app)
    assert restarted(executor) == ["db", "app", "web"]


def test_an_ambiguous_id_prefix_is_409_listing_the_matches(db_url, app_factory,
                                                           tmp_path) -> None:
    """Review of #31, finding 12: not a 503 (the backend answered; the reference is bad)."""
    from tests.conftest import api_headers

    app, executor, _ = make_app(app_factory, db_url, tmp_path, PLAYBOOK)
    executor.add("one").id = "abc1" + "1" * 60
    executor.add("two").id = "abc2" + "2" * 60
    got = app.test_client().get("/api/v1/targets/abc/dependents", headers=api_headers())
    assert got.status_code == 409, got.json
    assert got.json["reason"] == "target_ambiguous"
    assert "abc1" in got.json["message"] and "abc2" in got.json["message"]
