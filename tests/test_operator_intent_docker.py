"""Operator intent on a real dockerd: once dockerd's 256-event buffer has forgotten why a
container stopped, a `docker stop` is still never undone (the events follower saw it, or
nobody can tell), a `docker pause` is never undone, and a real crash is still restarted."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from receiver.executor.docker_evidence import container_events
from receiver.runtime.intent_follower import EventsFollower as Follower
from receiver.store.models import EventsFollower, Incident, TargetTransition
from tests.harness.app_driver import actions, drain, evidence_rows, fire_container
from tests.harness.containers import run_container, started_at
from tests.harness.playbook_yaml import write_playbooks
from tests.harness.procs import wait_for

FILLER_EVENTS = 300  # more than dockerd's buffer of 256
# Ignores SIGUSR1: each `docker kill -s USR1` is one event and changes nothing.
FILLER = ["sh", "-c", "trap '' USR1; trap 'exit 0' TERM; while :; do sleep 0.1; done"]


def follower_for(app: Any, holder: str) -> Follower:
    svc = app.extensions["autofix"]
    follower = Follower(svc.database, svc.executors.default, holder,
                        svc.settings.opt_in_label, lease_s=3.0).start()
    assert follower.following.wait(20), "the follower took the lease and opened the stream"
    return follower


def roll_the_buffer(client: Any) -> None:
    """300 events of another (unlabelled) container, as a busy health check would make."""
    filler = run_container(client, labelled=False, command=FILLER)
    try:
        for _ in range(FILLER_EVENTS):
            filler.kill(signal="USR1")
    finally:
        filler.remove(force=True)


def record(app: Any, container: Any) -> TargetTransition | None:
    with app.extensions["autofix"].database.session() as session:
        row = session.get(TargetTransition, container.id)
        if row is not None:
            session.expunge(row)
        return row


def incident(app: Any, name: str) -> Incident:
    with app.extensions["autofix"].database.session() as session:
        found = session.scalars(select(Incident).where(Incident.target == name)).one()
        session.expunge(found)
        return found


def test_stops_dockerd_forgot_are_never_undone_and_a_seen_crash_is_restarted(
        pg_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        tmp_path: Any) -> None:
    app = app_factory(pg_url, docker_host=private_dockerd.url,
                      playbooks=write_playbooks(tmp_path))
    follower = follower_for(app, "test:1")
    seen_stop = run_container(docker_client)
    crash = run_container(docker_client, command=["sh", "-c", "sleep 2; exit 3"])
    unseen_stop = run_container(docker_client)
    made = [seen_stop, crash, unseen_stop]
    try:
        seen_stop.stop(timeout=5)  # `docker stop` while the follower runs
        wait_for(lambda: (crash.reload() or True) and crash.status == "exited", 20, "the crash")
        wait_for(lambda: getattr(record(app, crash), "cause", None) == "crash", 10,
                 "the follower recorded the crash")
        wait_for(lambda: getattr(record(app, seen_stop), "cause", None) == "operator", 10,
                 "the follower recorded the stop")
        follower.stop()  # no follower runs while this one is stopped
        unseen_stop.stop(timeout=5)
        roll_the_buffer(docker_client)
        for container in made:  # dockerd no longer holds their start: it cannot tell
            events = container_events(docker_client.api, container.id, None)
            assert "start" not in [e["action"] for e in events], events
        second = follower_for(app, "test:2")  # a new window, after every stop
        try:
            with app.extensions["autofix"].database.session() as session:
                assert [f.windows for f in session.scalars(select(EventsFollower))] == [2]
            before = {c.name: started_at(c) for c in made}
            for container in made:
                fire_container(app.test_client(), container.name)
            drain(app)
        finally:
            second.stop()
        for container, reason, said in ((seen_stop, "operator_stop", "signal 15"),
                                        (unseen_stop, "state_unknown", "only since")):
            container.reload()
            assert container.status == "exited", f"{reason}: never started again"
            assert started_at(container) == before[container.name]
            [skip] = actions(app, container.name)
            assert (skip.action, skip.outcome, skip.reason) == ("guard", "skipped", reason)
            assert said in (skip.error or ""), skip.error
            found = incident(app, container.name)
            assert found.status == "escalated", reason
            assert (found.escalation_reason or "").startswith(reason), found.escalation_reason
        first = actions(app, crash.name)[0]
        assert (first.action, first.outcome) == ("restart", "succeeded"), "a seen crash"
        assert started_at(crash) != before[crash.name]
        assert evidence_rows(app, crash.name)[0].classification == "crashed"
        assert evidence_rows(app, seen_stop.name)[0].classification == "stopped_by_operator"
        assert evidence_rows(app, unseen_stop.name)[0].classification is None
    finally:
        for container in made:
            container.remove(force=True)


def test_a_paused_container_is_never_unpaused_or_restarted(
        pg_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        tmp_path: Any) -> None:
    app = app_factory(pg_url, docker_host=private_dockerd.url,
                      playbooks=write_playbooks(tmp_path))
    container = run_container(docker_client)
    try:
        container.pause()  # `docker pause`: frozen on purpose
        before = started_at(container)
        fire_container(app.test_client(), container.name)
        drain(app)
        container.reload()
        assert container.status == "paused" and started_at(container) == before
        [skip] = actions(app, container.name)
        assert (skip.outcome, skip.reason) == ("skipped", "target_paused")
        assert "paused it at" in (skip.error or ""), skip.error  # dockerd's events say so
        found = incident(app, container.name)
        assert found.status == "escalated"
        assert (found.escalation_reason or "").startswith("target_paused")
    finally:
        container.remove(force=True)


def test_a_broken_stream_resumes_its_window_while_dockerd_still_holds_the_gap(
        sqlite_url: str, app_factory: Any, private_dockerd: Any, docker_client: Any,
        tmp_path: Any) -> None:
    """An idle events stream is cut (the socket proxy's 120 s timeout): the follower
    reconnects from its last event, and the window goes on only because dockerd's buffer
    still reaches back that far; a crash whose start was seen before the cut is a crash."""
    app = app_factory(sqlite_url, docker_host=private_dockerd.url,
                      playbooks=write_playbooks(tmp_path))
    follower = follower_for(app, "test:3")
    crash = run_container(docker_client, command=["sh", "-c", "sleep 3; exit 3"])
    try:
        wait_for(lambda: getattr(record(app, crash), "cause", None) == "running", 10,
                 "the follower saw the start")
        follower.following.clear()
        follower.reconnect()
        assert follower.following.wait(20), "reconnected"
        wait_for(lambda: getattr(record(app, crash), "cause", None) == "crash", 20,
                 "the crash, recorded in the same window")
        assert follower.windows == 1
    finally:
        follower.stop()
        crash.remove(force=True)
