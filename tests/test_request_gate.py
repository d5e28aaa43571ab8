"""The serve worker's early refusal (receiver/api/gate.py) agrees with the app's own auth
hook: on every operation of the OpenAPI document, with every kind of credential, the gate
refuses from the headers exactly what the app refuses with 401/403, so no request the app
would serve is cut off, and none it would refuse gets its body read. And the worker's own
reading of a request head and a chunked body (receiver/serving/serve_worker.py)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from werkzeug.datastructures import Headers

from receiver.api.gate import SCOPES_KEPT, UNAUTHENTICATED_BODY_BYTES, Scopes, body_limit
from receiver.api.openapi import build_document
from receiver.domain.errors import AutofixError, BadRequest
from receiver.serving.serve_worker import _Chunked, _framing, _parse_head
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN

READ_TOKEN = "read-test-token-4d7a"
SLACK_SECRET = "slack-signing-secret-gate-0123456"
PATH_VALUES = {"incident_id": "1", "name": "restart-on-down", "target": "web", "run_id": "1",
               "evidence_id": "1", "maintenance_id": "1"}
CREDENTIALS = {"none": None, "wrong": "wrong-token-0123456789", "read": READ_TOKEN,
               "operator": API_TOKEN, "webhook": WEBHOOK_TOKEN}


def _gate(app: Any, method: str, path: str, headers: dict[str, str],
          length: int | None = 2) -> int | None:
    try:
        body_limit(app, method, path, Headers(headers), length)
    except AutofixError as error:
        return error.status
    return None


def _decision(app: Any, method: str, path: str, headers: dict[str, str],
              length: int | None, scopes: Scopes | None = None) -> int | str:
    """The limit, or the refusal's status."""
    try:
        return body_limit(app, method, path, Headers(headers), length, scopes)
    except AutofixError as error:
        return f"refused {error.status}"


def test_the_gate_refuses_exactly_what_the_auth_hook_refuses(sqlite_url, app_factory) -> None:
    app = app_factory(sqlite_url, read_token=READ_TOKEN, slack_signing_secret=SLACK_SECRET)
    client = app.test_client()
    checked = 0
    for template, item in build_document(app)["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], template)
        for method in item:
            for name, token in CREDENTIALS.items():
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                early = _gate(app, method.upper(), path, headers)
                status = client.open(path, method=method.upper(), json={},
                                     headers=headers).status_code
                if early is not None:
                    assert early == status, (method, path, name, early, status)
                else:
                    assert status not in (401, 403), (method, path, name, status)
                checked += 1
    assert checked >= 5 * 20


def test_limits_follow_the_route(sqlite_url, app_factory) -> None:
    app = app_factory(sqlite_url, slack_signing_secret=SLACK_SECRET)
    webhook = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    limit = app.extensions["autofix"].settings.max_body_bytes
    assert body_limit(app, "POST", "/webhook/alertmanager", Headers(webhook), None) == limit
    assert _gate(app, "POST", "/webhook/alertmanager", webhook, limit + 1) == 413
    # No open route takes a body, nor does an unknown path: small, whoever asks.
    assert body_limit(app, "GET", "/healthz", Headers(), None) == UNAUTHENTICATED_BODY_BYTES
    assert _gate(app, "POST", "/nowhere?x=1", {}, UNAUTHENTICATED_BODY_BYTES + 1) == 413
    # Percent-encoded and absolute-form targets route like the app routes them.
    assert _gate(app, "POST", "/api/v1/%70ause", {}) == 401
    assert _gate(app, "POST", "http://x/api/v1/pause", {}) == 401
    assert _gate(app, "GET", "http://[x/healthz", {}) is None  # routes nowhere: the app's 404


@pytest.mark.parametrize(("stamp_offset_s", "signature", "length", "status"), [
    (0, "v0=abc", 100, None),
    (-6 * 60, "v0=abc", 100, 401),   # stale
    (6 * 60, "v0=abc", 100, 401),    # from the future
    (0, None, 100, 401),             # unsigned
    (0, "v0=abc", 64 * 1024 + 1, 413),
])
def test_slack_is_decided_on_its_headers(sqlite_url, app_factory, stamp_offset_s, signature,
                                         length, status) -> None:
    app = app_factory(sqlite_url, slack_signing_secret=SLACK_SECRET)
    headers = {"X-Slack-Request-Timestamp": str(int(time.time()) + stamp_offset_s)}
    if signature:
        headers["X-Slack-Signature"] = signature
    assert _gate(app, "POST", "/slack/interactions", headers, length) == status


def test_slack_without_a_signing_secret_is_refused_at_once(sqlite_url, app_factory) -> None:
    app = app_factory(sqlite_url)
    headers = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=a"}
    assert _gate(app, "POST", "/slack/interactions", headers) == 401


@pytest.mark.parametrize("head", [
    b"GET /healthz HTTP/1.1\r\nX: a\nb",           # bare LF
    b"GET /healthz HTTP/1.1\r\n X: folded",         # obs-fold
    b"GET /healthz HTTP/1.1\r\nX : space",          # space before the colon
    b"GET  /healthz HTTP/1.1",                        # two spaces
    b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1",
    b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked",
    b"POST / HTTP/1.1\r\nContent-Length: -1",
])
def test_an_ambiguous_head_is_a_400(head) -> None:
    with pytest.raises(BadRequest):
        _framing(_parse_head(head)[2])


def test_a_chunked_body_is_framed_across_reads() -> None:
    wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT"
    chunked, buffer = _Chunked(0), bytearray()
    for index in range(len(wire)):
        buffer += wire[index:index + 1]
        chunked.advance(buffer)
        assert chunked.done == (len(buffer) >= len(wire) - 4), index
    assert chunked.size == 11 and chunked.position == len(wire) - 4
    with pytest.raises(BadRequest):
        _Chunked(0).advance(bytearray(b"zz\r\n"))
    with pytest.raises(BadRequest):
        _Chunked(0).advance(bytearray(b"2\r\nabXY"))


def test_the_workers_routing_memo_decides_as_routing_each_time(sqlite_url,
                                                                app_factory) -> None:
    app = app_factory(sqlite_url, read_token=READ_TOKEN, slack_signing_secret=SLACK_SECRET)
    scopes: Scopes = {}
    targets = []
    for template, item in build_document(app)["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], template)
        targets += [(method.upper(), target) for method in item
                    for target in (path, path + "?limit=1", "/nowhere" + path)]
    for _ in range(2):  # the second time from the memo
        for method, target in targets:
            for token in CREDENTIALS.values():
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                assert (_decision(app, method, target, headers, 10**6, scopes)
                        == _decision(app, method, target, headers, 10**6)), (method, target)
    assert 0 < len(scopes) <= SCOPES_KEPT
    for i in range(SCOPES_KEPT + 5):  # new targets never grow it past its bound
        _decision(app, "GET", f"/api/v1/incidents/{i}", {}, None, scopes)
    assert len(scopes) <= SCOPES_KEPT


def test_a_header_is_read_as_werkzeug_reads_it() -> None:
    from receiver.serving.serve_worker import _header

    headers = Headers([("Expect", "100-continue"), ("expect", "other"), ("X", "")])
    for name in ("Expect", "EXPECT", "x", "User-Agent"):
        assert _header(headers, name, "-") == headers.get(name, "-")


def test_the_heartbeat_and_parent_check_run_at_most_twice_a_second(monkeypatch) -> None:
    import os

    from receiver.serving import serve_worker

    beats: list[float] = []
    clock = [1000.0]
    monkeypatch.setattr(serve_worker.time, "monotonic", lambda: clock[0])
    worker = serve_worker.WholeRequestWorker.__new__(serve_worker.WholeRequestWorker)
    worker._notified = worker._parent_checked = float("-inf")
    worker.tmp = type("Tmp", (), {"notify": lambda self: beats.append(clock[0])})()
    worker.ppid = os.getppid()
    for step in (0.0, 0.1, 0.2, 0.5, 0.6, 1.2):
        clock[0] = 1000.0 + step
        worker.notify()
        assert worker.is_parent_alive()
    assert beats == [1000.0, 1000.5, 1001.2]
    worker.ppid = -1  # the master died: seen at the next check
    worker.log = type("Log", (), {"info": lambda *args: None})()
    clock[0] += serve_worker._HEARTBEAT_S
    assert not worker.is_parent_alive()


def test_a_kept_alive_connection_times_out_after_keepalive_as_gunicorns() -> None:
    import socket as socket_module

    from receiver.serving.serve_worker import _Conn

    cfg = type("Cfg", (), {"keepalive": 7})()
    left, right = socket_module.socketpair()
    with left, right:
        conn = _Conn(cfg, left, ("127.0.0.1", 1), ("127.0.0.1", 2))
        for keepalive_s in (None, 7.0):  # gunicorn's own, then the worker's copy of it
            conn.keepalive_s = keepalive_s
            before = time.monotonic()
            conn.set_timeout()
            assert before + 7 <= conn.timeout <= time.monotonic() + 7
