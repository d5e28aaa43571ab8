"""lifecycle owns every stored state (issue #29): no state written as a bare string outside
it, one compare-and-set, and a table for each of the outbox, deferred-ingest and breaker
states, checked against SQLite and PostgreSQL."""

from __future__ import annotations

import ast
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from receiver.engine.breaker import BreakerSnapshot, current_state, decide
from receiver.playbooks.config import BreakerPolicy
from receiver.store.engine import Database
from receiver.store.lifecycle import (
    BREAKER_TRANSITIONS,
    INCIDENT_TRANSITIONS,
    INGEST_TRANSITIONS,
    NEW_BREAKER_STATE,
    NEW_OUTBOX_STATUS,
    NEW_RUN_STATUS,
    OUTBOX_TRANSITIONS,
    BreakerState,
    IncidentStatus,
    IngestState,
    OutboxStatus,
    RunStatus,
    compare_and_set,
    guarded_update,
    new_incident_status,
    resolved_status,
)
from receiver.store.models import Notification, Outbox

RECEIVER = Path(__file__).resolve().parent.parent / "receiver"
STATE_NAMES = frozenset({"status", "state", "ingest_state"})
# (file relative to receiver/, the name written, the literal): the word an HTTP answer
# gives, which is no state of any row.
ALLOWED: frozenset[tuple[str, str, str]] = frozenset({
    ("api/health.py", "status", "ok"), ("api/playbooks.py", "status", "reloaded"),
    ("api/webhook.py", "status", "recorded"), ("api/webhook.py", "status", "accepted")})
NOW = datetime(2026, 1, 1, tzinfo=UTC)


# ---- no bare state literal ---------------------------------------------------------------

def state_literals(source: str) -> list[tuple[int, str, str]]:
    """(line, name, literal) of every `status="x"` / `state="x"` keyword and every
    `<obj>.status = "x"` assignment (tuple targets included)."""
    found: list[tuple[int, str, str]] = []

    def literal(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return None

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg in STATE_NAMES:
            if (value := literal(node.value)) is not None:
                found.append((node.value.lineno, node.arg, value))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                pairs: list[tuple[ast.expr, ast.expr | None]] = [(target, node.value)]
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts, strict=False))
                for name, value in pairs:
                    if isinstance(name, ast.Attribute) and name.attr in STATE_NAMES \
                            and value is not None and (text := literal(value)) is not None:
                        found.append((name.lineno, name.attr, text))
    return sorted(found)


def test_the_scan_finds_each_kind_of_bare_state() -> None:
    source = """
Outbox(status="pending")
update(Outbox).values(status="sent")
row.state = "closed"
row.state, row.opened_at = "open", None
row.ingest_state = "filed"
ok = Outbox(status=OutboxStatus.PENDING)
response = {"status": "ok"}
"""
    assert state_literals(source) == [(2, "status", "pending"), (3, "status", "sent"),
                                      (4, "state", "closed"), (5, "state", "open"),
                                      (6, "ingest_state", "filed")]


def test_no_state_is_written_as_a_bare_string_outside_lifecycle() -> None:
    offenders = []
    for path in sorted(RECEIVER.rglob("*.py")):
        relative = path.relative_to(RECEIVER).as_posix()
        if relative == "store/lifecycle.py" or relative.startswith("store/migrations/"):
            continue
        for line, name, value in state_literals(path.read_text()):
            if (relative, name, value) not in ALLOWED:
                offenders.append(f"receiver/{relative}:{line}: {name}={value!r}")
    assert not offenders, "states come from receiver/store/lifecycle.py:\n" + "\n".join(offenders)


# ---- the tables --------------------------------------------------------------------------

@pytest.mark.parametrize(("enum", "values"), [
    (OutboxStatus, {"pending", "sent", "failed"}),
    (IngestState, {"pending", "filed", "failed"}),
    (BreakerState, {"closed", "open", "half_open"}),
])
def test_the_stored_values_are_todays_strings(enum: type, values: set[str]) -> None:
    assert {member.value for member in enum} == values  # type: ignore[attr-defined]


@pytest.mark.parametrize(("table", "enum", "initial"), [
    (OUTBOX_TRANSITIONS, OutboxStatus, {NEW_OUTBOX_STATUS}),
    (INGEST_TRANSITIONS, IngestState, {IngestState.PENDING}),
    (BREAKER_TRANSITIONS, BreakerState, {NEW_BREAKER_STATE}),
])
def test_every_state_is_known_and_reachable(table, enum, initial) -> None:
    for transition in table.values():
        assert transition.allowed_from <= set(enum)
        assert transition.to in set(enum)
    assert {t.to for t in table.values()} | initial == set(enum)


def test_sent_and_failed_are_final_for_outbox_and_ingest() -> None:
    for table, final in ((OUTBOX_TRANSITIONS, {OutboxStatus.SENT, OutboxStatus.FAILED}),
                         (INGEST_TRANSITIONS, {IngestState.FILED, IngestState.FAILED})):
        for event, transition in table.items():
            assert not transition.allowed_from & final, event


def test_initial_states() -> None:
    assert NEW_RUN_STATUS is RunStatus.QUEUED
    assert new_incident_status(resolved=False) is IncidentStatus.OPEN
    assert new_incident_status(resolved=True) is IncidentStatus.RESOLVED
    assert BreakerSnapshot().state == NEW_BREAKER_STATE


def test_the_upserts_resolve_is_lifecycles_transition() -> None:
    from sqlalchemy import column

    sql = str(resolved_status(column("status"), column("resolved_at")).compile(
        compile_kwargs={"literal_binds": True}))
    resolve = INCIDENT_TRANSITIONS["resolve"]
    for status in IncidentStatus:
        assert (f"'{status.value}'" in sql.split("THEN")[0]) == (status in resolve.allowed_from)
    assert f"THEN '{resolve.to}' ELSE status END" in sql
    assert "resolved_at IS NULL" in sql  # resolved once: a repeat does not resolve again


POLICY = BreakerPolicy(max_actions=2, window="10m", open_for="1m", open_for_max="8m",
                       reset_after="5m")


def test_the_breaker_machine_only_moves_along_its_table() -> None:
    """Every decision, over a grid of snapshots, admissions and times: the stored state
    (aged by time alone as current_state ages it) moves only along BREAKER_TRANSITIONS."""
    allowed = {(before, t.to) for t in BREAKER_TRANSITIONS.values() for before in t.allowed_from}
    offsets = [None, -600, -300, -61, -60, -1, 0, 1, 60, 299, 300, 600]

    def at(offset: int | None) -> datetime | None:
        return None if offset is None else NOW + timedelta(seconds=offset)

    seen: set[tuple[str, str]] = set()
    for state, opened, until, admitted, reopen, recent in itertools.product(
            BreakerState, offsets, offsets, offsets, (0, 2), (0, 1, 2, 5)):
        if state != BreakerState.CLOSED and (until is None or opened is None):
            continue  # an open or half-open breaker always has both (breaker._open)
        snapshot = BreakerSnapshot(state, at(opened), at(until), reopen, at(admitted))
        aged = current_state(state, snapshot.open_until, NOW)
        assert aged == state or (state, aged) in allowed
        after = decide(snapshot, POLICY, recent, NOW).snapshot.state
        if after != aged:
            assert (aged, after) in allowed, (snapshot, recent)
            seen.add((aged, after))
    assert seen == allowed - {(BreakerState.OPEN, BreakerState.HALF_OPEN)} - {
        (before, BreakerState.CLOSED) for before in BreakerState
        if before != BreakerState.HALF_OPEN}  # those two: current_state, and an operator


# ---- one compare-and-set, on both databases ----------------------------------------------

@pytest.fixture
def database(db_url: str):
    db = Database(db_url)
    yield db
    db.dispose()


def test_an_outbox_row_is_sent_or_failed_once(database: Database) -> None:
    with database.session() as session:
        row = Outbox(incident_id=None, channel="webhook", kind="paused", details={},
                     status=NEW_OUTBOX_STATUS, attempts=1, created_at=NOW,
                     next_attempt_at=NOW, claimed_by="w1")
        session.add(row)
        session.flush()
        row_id = row.id
    with database.session() as session:
        mine = [Outbox.claimed_by == "w1"]
        assert not compare_and_set(session, Outbox, row_id, OUTBOX_TRANSITIONS["send"],
                                   where=[Outbox.claimed_by == "w2"], sent_at=NOW)
        assert compare_and_set(session, Outbox, row_id, OUTBOX_TRANSITIONS["send"],
                               where=mine, sent_at=NOW)
        assert not compare_and_set(session, Outbox, row_id, OUTBOX_TRANSITIONS["send"],
                                   where=mine, sent_at=NOW)
        assert not compare_and_set(session, Outbox, row_id, OUTBOX_TRANSITIONS["fail"],
                                   where=mine, last_error="late")
        assert not compare_and_set(session, Outbox, row_id + 1, OUTBOX_TRANSITIONS["fail"])
    with database.session() as session:
        stored = session.get(Outbox, row_id)
        assert stored is not None
        assert (stored.status, stored.last_error) == (OutboxStatus.SENT, None)


def test_a_deferred_notification_is_filed_or_failed_once(database: Database) -> None:
    with database.session() as session:
        row = Notification(received_at=NOW, group_key="g", receiver="r", status="firing",
                           alert_count=0, payload={}, ingest_state=IngestState.PENDING)
        session.add(row)
        session.flush()
        row_id = row.id
    with database.session() as session:
        filed = session.execute(
            guarded_update(Notification, row_id, INGEST_TRANSITIONS["file"],
                           column="ingest_state")
            .returning(Notification.id)).all()
        assert [r.id for r in filed] == [row_id]
        assert not compare_and_set(session, Notification, row_id, INGEST_TRANSITIONS["fail"],
                                   column="ingest_state", ingest_error="too late")
    with database.session() as session:
        assert session.execute(select(Notification.ingest_state, Notification.ingest_error)
                               ).one() == (IngestState.FILED, None)
