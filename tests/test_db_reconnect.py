"""Connections PostgreSQL dropped (a restart, a failover, an idle timeout) on a real server.

The pool pings a connection only after it sat idle (receiver/store/engine.py), and the
webhook's write runs again once on a connection found dead mid-use (Database.transact).
"""

from __future__ import annotations

from datetime import UTC, datetime

from receiver.store import engine
from tests.conftest import api_headers, webhook_headers
from tests.harness.db import query
from tests.payloads import alert, notification


def drop_connections(url: str) -> int:
    """pg_terminate_backend on every other session of this database, as a restart does."""
    return sum(ok for (ok,) in query(url, (
        "select pg_terminate_backend(pid) from pg_stat_activity "
        "where datname = current_database() and pid <> pg_backend_pid()")))


def fire(client, container: str) -> int:
    body = notification([alert({"container": container}, starts_at=datetime.now(UTC))])
    return client.post("/webhook/alertmanager", json=body,
                       headers=webhook_headers()).status_code


def test_a_dropped_connection_is_replaced_without_an_error(pg_url, app_factory,
                                                           monkeypatch) -> None:
    app = app_factory(pg_url)
    client = app.test_client()
    errors = app.extensions["autofix"].metrics.registry
    assert fire(client, "before") == 200
    assert client.get("/api/v1/incidents", headers=api_headers()).status_code == 200

    # In use again at once (no idle ping, however slow this machine is today): the
    # webhook's write finds the connection dead and runs again, once, on a new one.
    monkeypatch.setattr(engine, "PING_AFTER_IDLE_S", 1e9)
    assert drop_connections(pg_url) >= 1
    assert fire(client, "right-after") == 200
    assert errors.get_sample_value("autofix_database_errors_total",
                                   {"operation": "ingest"}) == 1
    monkeypatch.undo()

    # Idle past the ping threshold (lowered to 0 rather than slept past): the ping finds
    # it dead, so a read that is not retried still succeeds.
    assert drop_connections(pg_url) >= 1
    monkeypatch.setattr(engine, "PING_AFTER_IDLE_S", 0.0)
    assert client.get("/api/v1/incidents", headers=api_headers()).status_code == 200
    assert fire(client, "after-idle") == 200
    assert sorted(c for (c,) in query(pg_url, "select container from incidents")) == [
        "after-idle", "before", "right-after"]
    assert query(pg_url, "select count(*) from notifications") == [(3,)]  # one per POST
