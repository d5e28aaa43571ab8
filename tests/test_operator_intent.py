"""Operator intent without Docker: the decision table, what each event does to a record,
what is known from the record, the coverage and dockerd's buffer, and the follower's
election and coverage windows in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, select

from receiver.intent import (
    TABLE,
    ContainerFacts,
    Coverage,
    Known,
    Record,
    decide,
    store,
    what_is_known,
)
from receiver.intent.events import SeenEvent, apply_event, parse_event
from receiver.store.engine import Database
from receiver.store.migrate import alembic_config
from receiver.store.models import EventsFollower, TargetTransition

T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
W1 = T0 - timedelta(minutes=10)  # a window that began before everything below
NOW = T0 + timedelta(minutes=7)


def facts(status: str, buffer: list[dict[str, Any]] | None = None, **kw: Any) -> ContainerFacts:
    values: dict[str, Any] = {"started_at": T0, "finished_at": T0 + timedelta(minutes=1)}
    values.update(kw)
    return ContainerFacts("daemon-1", "c" * 64, "web", status, buffer=buffer or [], **values)


def seen(action: str, at: datetime, exit_code: int | None = None,
         signal: str | None = None) -> SeenEvent:
    return SeenEvent("c" * 64, "web", action, at, exit_code, signal, {"autofix.enable": "true"})


def replay(*events: tuple[SeenEvent, datetime]) -> dict[str, Any] | None:
    record: dict[str, Any] | None = None
    for event, window in events:
        record = apply_event(record, event, window)
    return record


def as_record(values: dict[str, Any] | None) -> Record | None:
    return None if values is None else Record(values["action"], values["cause"],
                                              values["detail"], values["at"],
                                              values["started_at"], values["died_at"])


def nano(at: datetime) -> int:
    return int(at.timestamp() * 1e9)


# ---- the decision table --------------------------------------------------------------

@pytest.mark.parametrize(("status", "cause", "act", "reason", "escalate"), [
    ("running", "unknown", True, None, False),
    ("restarting", "unknown", False, "already_recovered", False),
    ("paused", "operator", False, "target_paused", True),
    ("paused", "unknown", False, "target_paused", True),
    ("exited", "oom", True, None, False),
    ("exited", "crash", True, None, False),
    ("dead", "crash", True, None, False),
    ("exited", "operator", False, "operator_stop", True),
    ("exited", "unknown", False, "state_unknown", True),
    ("dead", "unknown", False, "state_unknown", True),
    ("created", "unknown", False, "state_unknown", True),
    ("removing", "unknown", False, "state_unknown", True),
])
def test_the_decision_table(status: str, cause: str, act: bool, reason: str | None,
                            escalate: bool) -> None:
    verdict = decide(facts(status), Known(cause, "what Docker said", "test"))  # type: ignore[arg-type]
    assert (verdict.act, verdict.reason, verdict.escalate) == (act, reason, escalate)
    if not act:
        assert "what Docker said" in verdict.message or reason == "already_recovered"


def test_every_stopped_or_paused_row_that_acts_needs_a_crash_seen() -> None:
    acting = {(rule.state, rule.known) for rule in TABLE if rule.verdict == "act"}
    assert acting == {("running", "any"), ("stopped", "oom"), ("stopped", "crash")}


def test_the_documented_table_is_the_code_table() -> None:
    from pathlib import Path
    doc = (Path(__file__).parent.parent / "docs" / "operator-intent.md").read_text()
    for rule in TABLE:
        row = f"| {rule.state} | {rule.known} | {rule.verdict} | {rule.reason or '—'} |"
        assert row in doc, row


# ---- what one event does to a record -------------------------------------------------

def test_a_die_after_a_start_seen_in_the_same_window_is_a_crash() -> None:
    record = replay((seen("start", T0), W1), (seen("die", T0 + timedelta(seconds=5), 3), W1))
    assert record is not None and record["cause"] == "crash" and record["exit_code"] == 3


def test_docker_stop_is_an_operator_whatever_the_order_of_its_events() -> None:
    record = replay((seen("start", T0), W1),
                    (seen("kill", T0 + timedelta(seconds=5), signal="15"), W1),
                    (seen("die", T0 + timedelta(seconds=6), 0), W1),
                    (seen("stop", T0 + timedelta(seconds=6)), W1))
    assert record is not None and record["cause"] == "operator"
    assert "kill" in record["detail"] and "signal 15" in record["detail"]


def test_a_die_whose_start_was_seen_in_another_window_is_unknown() -> None:
    w2 = T0 + timedelta(seconds=3)  # the stream broke and reconnected in between
    record = replay((seen("start", T0), W1), (seen("die", T0 + timedelta(seconds=5), 1), w2))
    assert record is not None and record["cause"] == "unknown"


def test_a_request_seen_before_a_gap_is_not_carried_over_it() -> None:
    w2 = T0 + timedelta(seconds=30)  # in the gap it may have been started and crashed
    record = replay((seen("start", T0), W1), (seen("kill", T0 + timedelta(seconds=5)), W1),
                    (seen("die", T0 + timedelta(minutes=1), 1), w2))
    assert record is not None and record["cause"] == "unknown"
    record = replay((seen("start", T0), W1), (seen("kill", w2, signal="15"), w2),
                    (seen("die", w2, 0), w2))  # the request in this window still counts
    assert record is not None and record["cause"] == "operator"


def test_a_die_without_its_start_is_unknown_and_oom_stays_oom() -> None:
    assert replay((seen("die", T0, 1), W1))["cause"] == "unknown"  # type: ignore[index]
    record = replay((seen("start", T0), W1), (seen("oom", T0 + timedelta(seconds=1)), W1),
                    (seen("die", T0 + timedelta(seconds=1), 137), W1))
    assert record is not None and record["cause"] == "oom"


def test_pause_and_destroy() -> None:
    record = replay((seen("start", T0), W1), (seen("pause", T0 + timedelta(seconds=1)), W1))
    assert record is not None and (record["action"], record["cause"]) == ("pause", "paused")
    assert apply_event(record, seen("destroy", T0 + timedelta(seconds=2)), W1) is None


def test_parse_event_reads_dockers_message() -> None:
    raw = {"Type": "container", "Action": "die", "timeNano": nano(T0),
           "Actor": {"ID": "abc", "Attributes": {"name": "web", "exitCode": "3",
                                                 "autofix.enable": "true"}}}
    event = parse_event(raw)
    assert event is not None and (event.action, event.exit_code, event.at) == ("die", 3, T0)
    assert parse_event({**raw, "Action": "exec_start: sh"}) is None
    assert parse_event({**raw, "Type": "network"}) is None


# ---- what is known -------------------------------------------------------------------

def stopped_at(record: dict[str, Any] | None) -> ContainerFacts:
    assert record is not None
    return facts("exited", finished_at=record["died_at"])


def test_the_followers_record_of_this_stop_tells_operator_and_crash() -> None:
    stop = replay((seen("start", T0), W1),
                  (seen("kill", T0 + timedelta(seconds=5), signal="15"), W1),
                  (seen("die", T0 + timedelta(seconds=6), 0), W1))
    live = Coverage(W1, NOW, True)
    known = what_is_known(stopped_at(stop), as_record(stop), live, NOW)
    assert (known.cause, known.source) == ("operator", "follower")
    crash = replay((seen("start", T0), W1), (seen("die", T0 + timedelta(seconds=6), 3), W1))
    assert what_is_known(stopped_at(crash), as_record(crash), live, NOW).cause == "crash"


def test_a_record_of_an_earlier_stop_says_nothing_about_this_one() -> None:
    crash = replay((seen("start", T0), W1), (seen("die", T0 + timedelta(seconds=6), 3), W1))
    later = facts("exited", finished_at=T0 + timedelta(minutes=5))  # missed in a gap
    known = what_is_known(later, as_record(crash), Coverage(NOW, NOW, True), NOW)
    assert known.cause == "unknown" and "only since" in known.detail


def test_nothing_known_when_the_buffer_rolled_over_and_no_follower_saw_it() -> None:
    known = what_is_known(facts("exited"), None, None, NOW)
    assert known.cause == "unknown" and "no events follower" in known.detail
    dead = Coverage(W1, T0 - timedelta(minutes=1), False)
    assert "stopped following" in what_is_known(facts("exited"), None, dead, NOW).detail


def test_dockerds_buffer_proves_a_crash_only_while_it_holds_the_start() -> None:
    start = {"action": "start", "time_nano": nano(T0)}
    die = {"action": "die", "time_nano": nano(T0 + timedelta(minutes=1)), "exit_code": "3"}
    kill = {"action": "kill", "time_nano": nano(T0 + timedelta(seconds=59)), "signal": "15"}
    assert what_is_known(facts("exited", [start, die]), None, None, NOW).cause == "crash"
    assert what_is_known(facts("exited", [die]), None, None, NOW).cause == "unknown"
    assert what_is_known(facts("exited", [kill, die]), None, None, NOW).cause == "operator"
    assert what_is_known(facts("exited", [start, kill, die]), None, None, NOW).cause == "operator"


def test_an_operator_seen_anywhere_wins_over_a_crash_seen_elsewhere() -> None:
    crash = replay((seen("start", T0), W1), (seen("die", T0 + timedelta(minutes=1), 3), W1))
    kill = {"action": "kill", "time_nano": nano(T0 + timedelta(seconds=59)), "signal": "9"}
    known = what_is_known(stopped_at(crash), as_record(crash), Coverage(W1, NOW, True), NOW)
    assert known.cause == "crash"
    both = what_is_known(facts("exited", [kill], finished_at=T0 + timedelta(minutes=1)),
                         as_record(crash), Coverage(W1, NOW, True), NOW)
    assert both.cause == "operator"


def test_oom_killed_in_inspect_is_known_without_events() -> None:
    assert what_is_known(facts("exited", oom_killed=True), None, None, NOW).cause == "oom"


# ---- the follower's lease and coverage in the database --------------------------------

def test_one_follower_holds_the_lease_until_it_expires(db_url: str) -> None:
    database = Database(db_url)
    try:
        with database.session() as s:
            assert store.claim_lease(s, "d1", "host:1", T0, 15)
        with database.session() as s:
            assert not store.claim_lease(s, "d1", "host:2", T0 + timedelta(seconds=5), 15)
            assert store.claim_lease(s, "d1", "host:1", T0 + timedelta(seconds=5), 15)
            assert store.claim_lease(s, "d2", "host:2", T0, 15)  # another daemon
        with database.session() as s:  # host:1 died: its lease runs out
            assert store.claim_lease(s, "d1", "host:2", T0 + timedelta(seconds=21), 15)
            assert not store.renew_lease(s, "d1", "host:1", T0 + timedelta(seconds=21), 15, None)
    finally:
        database.dispose()


def test_a_reconnect_starts_a_new_window_and_records_need_their_window(db_url: str) -> None:
    database = Database(db_url)
    try:
        with database.session() as s:
            assert store.claim_lease(s, "d1", "h:1", T0, 15)
            assert store.start_window(s, "d1", "h:1", W1)
            store.record_event(s, "d1", seen("start", T0), W1)
        w2 = T0 + timedelta(seconds=30)
        with database.session() as s:  # the stream broke, the follower reconnected
            store.end_window(s, "d1", "h:1", w2)
            assert store.claim_lease(s, "d1", "h:1", w2, 15)
            assert store.start_window(s, "d1", "h:1", w2)
            store.record_event(s, "d1", seen("die", T0 + timedelta(minutes=1), 3), w2)
            store.record_event(s, "d1", seen("start", T0 - timedelta(minutes=1)), w2)  # stale
        with database.session() as s:
            row = s.scalars(select(TargetTransition)).one()
            assert (row.action, row.cause, row.exit_code) == ("die", "unknown", 3)
            follower = s.get(EventsFollower, "d1")
            assert follower is not None and follower.windows == 2
            record, coverage = store.load(s, "d1", "c" * 64, w2 + timedelta(seconds=1))
            assert coverage is not None and coverage.covered_since == w2 and coverage.live
            assert record is not None and record.cause == "unknown"
            store.record_event(s, "d1", seen("destroy", T0 + timedelta(minutes=2)), w2)
        with database.session() as s:
            assert s.scalars(select(TargetTransition)).all() == []
    finally:
        database.dispose()


def test_migration_0010_adds_and_removes_the_tables(db_url: str) -> None:
    database = Database(db_url)
    try:
        tables = {"events_followers", "target_transitions"}
        assert tables <= set(inspect(database.engine).get_table_names())
        command.downgrade(alembic_config(db_url), "0009")
        assert not tables & set(inspect(database.engine).get_table_names())
        command.upgrade(alembic_config(db_url), "head")
        assert tables <= set(inspect(database.engine).get_table_names())
    finally:
        database.dispose()


class _Buffer:
    """A client whose dockerd buffer holds events at these times (ns), oldest first."""

    def __init__(self, *times: int) -> None:
        self.api = self
        self.times = times

    def events(self, **_: Any) -> Any:
        class Stream(list):  # type: ignore[type-arg]
            def close(self) -> None:
                pass
        return Stream({"timeNano": t} for t in self.times)


def test_a_gap_is_bridged_only_while_dockerds_buffer_reaches_back_to_it() -> None:
    from receiver.runtime.intent_follower import _buffer_reaches
    assert _buffer_reaches(_Buffer(100, 200, 300), 150)  # nothing after 150 was forgotten
    assert _buffer_reaches(_Buffer(150, 300), 150)
    assert not _buffer_reaches(_Buffer(200, 300), 150)  # rolled over past the gap
    assert not _buffer_reaches(_Buffer(), 150)  # a restarted daemon
