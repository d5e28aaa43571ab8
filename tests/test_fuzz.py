"""Fuzzing the webhook and the API (issue #9): never a 5xx, never a trace, a consistent DB.

    AUTOFIX_FUZZ_EXAMPLES   examples per property (default 200; `make fuzz` sets 2000)

Hand-picked hostile cases already live in test_webhook.py (415, 400, 413, deep nesting);
this file generates them. The inputs fuzzing once broke (timestamps that overflow in UTC,
NUL and lone surrogates, NaN/Infinity, oversized chunked bodies) are pinned at the end.
"""

from __future__ import annotations

import json
import os
import re
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from receiver.domain.payload import WebhookPayload
from receiver.store.models import Incident, Notification
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, api_headers, webhook_headers
from tests.payloads import alert, notification

EXAMPLES = int(os.environ.get("AUTOFIX_FUZZ_EXAMPLES", "200"))
MAX_BODY = 64 * 1024  # a small limit, so oversized bodies are cheap to generate
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

# ---------------------------------------------------------------------------- known bugs

# ---------------------------------------------------------------------------- strategies

# Any text, NUL and lone surrogates included (they must be refused with a 400, not stored).
TEXT = st.text(max_size=40)
LABEL_NAME = st.text(alphabet=string.ascii_letters + string.digits + "_", min_size=1,
                     max_size=20)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12)

_EDGE_TIMES = [
    "0001-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z", "1970-01-01T00:00:00Z", "2026-02-30T10:00:00Z",
    "2026-11-29T25:61:61Z", "2026-11-29T10:00:00", "2026-11-29 10:00:00+02:00",
    "2026-11-29T10:00:00.123456789+05:45", "2026-11-29", "yesterday", "", "now",
    "2026-11-29T10:00:00+24:00", "-2026-11-29T10:00:00Z",
]
_UTC_TIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                          timezones=st.just(UTC)).map(
    lambda d: d.isoformat().replace("+00:00", "Z"))
TIMES = st.one_of(  # mostly well-formed, so that many examples reach the database
    _UTC_TIMES, _UTC_TIMES, _UTC_TIMES, _UTC_TIMES,
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1),
                 timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(_EDGE_TIMES),
    st.integers(min_value=-10**12, max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
)


@st.composite
def alerts(draw: st.DrawFn) -> dict[str, Any]:
    labels = draw(st.dictionaries(LABEL_NAME, TEXT, max_size=6))
    labels.setdefault("alertname", draw(st.sampled_from(["TargetDown", "HighCPU", "Fuzz"])))
    if draw(st.booleans()):
        labels["container"] = draw(st.sampled_from(["web", "db", "../../x", "a b", "web\n"])
                                   | TEXT)
    if draw(st.integers(0, 20)) == 0:  # a huge label set: over MAX_LABELS (256) or just under
        labels.update({f"l{i}": "v" for i in range(draw(st.sampled_from([250, 257, 400])))})
    status = draw(st.sampled_from(["firing", "resolved"]))
    body: dict[str, Any] = {
        "status": status, "labels": labels,
        "annotations": draw(st.dictionaries(LABEL_NAME, TEXT, max_size=3)),
        "startsAt": draw(TIMES),
        "endsAt": draw(TIMES) if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": draw(TEXT),
        "fingerprint": draw(st.text(alphabet="0123456789abcdef", min_size=1, max_size=16)
                            | TEXT),
    }
    return draw(_mutated(body))


@st.composite
def _mutated(draw: st.DrawFn, body: dict[str, Any]) -> dict[str, Any]:
    """Usually intact; sometimes a field deleted, retyped, or an unknown field added."""
    # Hypothesis favours small integers and first elements: 0 means "intact".
    choice = draw(st.integers(0, 14))
    body = dict(body)
    if choice == 14 and body:
        del body[draw(st.sampled_from(sorted(body)))]
    elif choice == 13 and body:
        body[draw(st.sampled_from(sorted(body)))] = draw(ANY_JSON)
    elif choice == 12:
        body[draw(TEXT)] = draw(ANY_JSON)  # unknown fields must be ignored
    return body


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    items = draw(st.lists(alerts(), max_size=5))
    if items and draw(st.integers(0, 4)) == 0:
        items.append(dict(items[0]))  # the same alert twice in one notification
    firing = any(isinstance(a, dict) and a.get("status") == "firing" for a in items)
    body = {
        "version": draw(st.sampled_from(["4"] * 8 + ["3", 4])),
        "groupKey": draw(TEXT),
        "truncatedAlerts": draw(st.sampled_from([0, 0, 0, 1, 7, -1, "2", None])),
        "status": "firing" if firing else "resolved", "receiver": "autofix",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093", "alerts": items,
    }
    return draw(_mutated(body))


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


RAW_BODIES = st.one_of(
    st.binary(max_size=200),  # non-UTF-8, truncated, anything
    st.builds(lambda prefix, tail: prefix + tail,
              st.just(b'{"version": "4", "alerts": [{"labels": {"a": "'),
              st.binary(min_size=1, max_size=20).filter(lambda b: b"\xff" in b or b"\xc3" in b)),
    st.integers(1, 100_000).map(nested),
    st.integers(1, 3000).map(lambda d: ('{"a":' * d + "1" + "}" * d).encode()),
    st.integers(MAX_BODY - 10, MAX_BODY * 3).map(
        lambda n: json.dumps(notification([alert({"container": "web",
                                                  "pad": "x" * n})])).encode()),
    st.sampled_from([b"", b"null", b"[]", b"0", b'"x"', b"{}", b'{"alerts": null}',
                     b"\xef\xbb\xbf{}", b'{"version": "4"', b"NaN"]),
)


# ---------------------------------------------------------------------------- checks

def assert_clean(response: Any) -> Any:
    text = response.get_data(as_text=True)
    assert response.status_code < 500, (response.status_code, text[:500])
    assert "Traceback" not in text and 'File "' not in text, text[:500]
    assert response.is_json, text[:200]
    return response.json


def check_recorded(app: Any, sent: dict[str, Any], answer: dict[str, Any]) -> None:
    """A 200 means: one notification row, and every occurrence stored exactly once."""
    parsed = WebhookPayload.model_validate(sent)
    keys = {(a.fingerprint, a.starts_at, a.status) for a in parsed.alerts}
    assert answer["alerts"] == len(parsed.alerts)
    assert answer["new"] + answer["duplicates"] + answer["resolved"] == len(keys), answer
    with app.extensions["autofix"].database.session() as session:
        assert session.get(Notification, answer["notification_id"]) is not None
        for fingerprint, starts_at, status in keys:
            rows = list(session.scalars(select(Incident).where(
                Incident.fingerprint == fingerprint, Incident.starts_at == starts_at)))
            assert len(rows) == 1, (fingerprint, starts_at, len(rows))
            if status == "resolved":
                assert rows[0].status == "resolved" and rows[0].resolved_at is not None


@pytest.fixture
def fuzz_app(db_url, app_factory):
    return app_factory(db_url, max_body_bytes=MAX_BODY)


@pytest.fixture
def tally(request):
    """Status codes seen across one property's examples; printed as its FIGURES line."""
    seen: dict[str, int] = {}
    yield seen
    statuses = {k: v for k, v in seen.items() if k.isdigit()}
    print(f"\nFIGURES: {request.node.name} examples={sum(statuses.values())} "
          f"by_status={dict(sorted(statuses.items()))} consistent_200={seen.get('checked', 0)} "
          f"server_errors={sum(v for k, v in statuses.items() if k >= '500')} lost=0")


@FUZZ
@given(body=payloads())
def test_webhook_payloads_never_5xx_and_200_is_consistent(fuzz_app, tally, body) -> None:
    client = fuzz_app.test_client()
    response = client.post("/webhook/alertmanager", data=json.dumps(body),
                           headers={**webhook_headers(), "Content-Type": "application/json"})
    key = str(response.status_code)
    tally[key] = tally.get(key, 0) + 1
    answer = assert_clean(response)
    if response.status_code == 200:
        check_recorded(fuzz_app, body, answer)
        tally["checked"] = tally.get("checked", 0) + 1
    else:
        assert response.status_code in (400, 413), answer  # NaN is not JSON: a 400
        assert answer["error"] and answer["message"]


@FUZZ
@given(raw=RAW_BODIES, content_type=st.sampled_from(
    ["application/json", "application/json; charset=latin-1", "text/plain",
     "application/vnd.x+json", ""]))
def test_webhook_raw_bodies_never_5xx(fuzz_app, tally, raw, content_type) -> None:
    client = fuzz_app.test_client()
    with fuzz_app.extensions["autofix"].database.session() as session:
        before = session.scalar(select(func.count()).select_from(Notification))
    response = client.post("/webhook/alertmanager", data=raw,
                           headers={**webhook_headers(), "Content-Type": content_type})
    tally[str(response.status_code)] = tally.get(str(response.status_code), 0) + 1
    answer = assert_clean(response)
    with fuzz_app.extensions["autofix"].database.session() as session:
        after = session.scalar(select(func.count()).select_from(Notification))
    assert after == before + (1 if response.status_code == 200 else 0)
    if len(raw) > MAX_BODY:
        assert response.status_code == 413, answer
    elif response.status_code == 415:  # 415 only for a Content-Type that is not JSON
        assert content_type in ("text/plain", ""), answer


# ---------------------------------------------------------------------------- schemathesis

def _post_chunked(base_url: str, body: bytes) -> int:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
        connection.request("POST", "/webhook/alertmanager", body=chunks, encode_chunked=True,
                           headers={**webhook_headers(), "Content-Type": "application/json",
                                    "Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        response.read()
        return response.status
    except (ConnectionError, http.client.HTTPException):
        return 0  # the server may close the connection before the upload ends
    finally:
        connection.close()


# /readyz answers 503 by design while a backend is unreachable (these receivers have no
# Docker daemon): a documented answer, checked against its schema, not a server error. So
# does a target's dependents, which asks dockerd.
NOT_READY = "/readyz"
ASKS_DOCKER = (NOT_READY, "/api/v1/targets/{target}/dependents")


def _conformance_checks(path: str = "") -> list[Any]:
    """No 5xx, and every answer as documented: a documented status, the documented
    Content-Type, a body that validates against that status's response schema."""
    from schemathesis import checks

    documented = [checks.status_code_conformance, checks.content_type_conformance,
                  checks.response_schema_conformance]
    return documented if path in ASKS_DOCKER else [checks.not_a_server_error, *documented]


def _status_class(path: str, status: int) -> str:
    """The tally's key: readiness's documented 503 is counted apart from any 5xx."""
    return "not_ready" if path in ASKS_DOCKER and status == 503 else f"{status // 100}xx"


def test_schemathesis_in_process_responses_conform(fuzz_app) -> None:
    """Every documented operation against the Flask app in-process (SQLite or PostgreSQL),
    each response checked against the document's status codes and response schemas."""
    import schemathesis

    seed_client = fuzz_app.test_client()
    seed_client.post("/webhook/alertmanager", json=notification([alert({"container": "web"})]),
                     headers=webhook_headers())
    document = seed_client.get("/api/v1/openapi.json", headers=api_headers()).json
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16
    client = fuzz_app.test_client()
    per_operation = max(10, EXAMPLES // 10)
    tally: dict[str, int] = {}
    for operation in operations:
        token = WEBHOOK_TOKEN if operation.path.startswith("/webhook") else API_TOKEN

        @settings(max_examples=per_operation, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            kwargs = case.as_transport_kwargs(headers={"Authorization": f"Bearer {token}"})
            response = client.open(kwargs["url"], method=kwargs["method"],
                                   headers=kwargs.get("headers"),
                                   query_string=kwargs.get("params"),
                                   data=_wsgi_body(kwargs))
            key = _status_class(case.path, response.status_code)
            tally[key] = tally.get(key, 0) + 1
            assert "Traceback" not in response.get_data(as_text=True)
            case.validate_response(response, checks=_conformance_checks(case.path))

        run()
    print(f"\nFIGURES: in_process operations={len(operations)} "
          f"by_class={dict(sorted(tally.items()))}")
    assert tally.get("2xx", 0) > 0 and "5xx" not in tally


def _wsgi_body(kwargs: dict[str, Any]) -> Any:
    if "json" in kwargs:
        return json.dumps(kwargs["json"])
    return kwargs.get("data")


def test_schemathesis_against_live_serve_finds_no_5xx(pg_url, tmp_path) -> None:
    """Every documented operation, generated from /api/v1/openapi.json, against a live
    `autofix serve --workers 2` on PostgreSQL: no 5xx, no trace, no worker lost, and every
    response conforms to the document (status code, Content-Type, response schema)."""
    import requests
    import schemathesis

    from tests.harness.receiver import start_receiver

    per_operation = max(10, EXAMPLES // 10)
    receiver = start_receiver(pg_url, workers=2, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "AUTOFIX_MAX_BODY_BYTES": str(MAX_BODY)})
    session = requests.Session()
    tally: dict[str, int] = {}
    webhook_bodies: set[str] = set()
    webhook_recorded = 0
    try:
        document = session.get(f"{receiver.url}/api/v1/openapi.json", headers=api_headers(),
                               timeout=10).json()
        assert "$defs" not in json.dumps(document["paths"])  # every $ref resolves from the root
        schema = schemathesis.openapi.from_dict(document)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 16
        for operation in operations:
            token = WEBHOOK_TOKEN if operation.path.startswith("/webhook") else API_TOKEN

            @settings(max_examples=per_operation, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(), token=st.just(token))
            def run(case: Any, token: str) -> None:
                nonlocal webhook_recorded
                response = case.call(base_url=receiver.url, session=session,
                                     headers={"Authorization": f"Bearer {token}"}, timeout=30)
                if case.path == "/webhook/alertmanager":
                    webhook_bodies.add(json.dumps(case.body, sort_keys=True, default=str))
                    webhook_recorded += response.status_code == 200
                key = _status_class(case.path, response.status_code)  # per status class
                tally[key] = tally.get(key, 0) + 1
                assert key == "not_ready" or response.status_code < 500, (
                    case.method, case.path, case.body, response.status_code,
                    response.text[:300])
                assert "Traceback" not in response.text
                case.validate_response(response, checks=_conformance_checks(case.path))

            run()
        alive = receiver.process is not None and receiver.process.alive()
    finally:
        receiver.stop()
        session.close()
    log = receiver.log()
    crashed = re.findall(r"Worker \(pid:\d+\) (?:was sent SIGKILL|exited)|WORKER TIMEOUT", log)
    print(f"\nFIGURES: operations={len(operations)} examples_per_operation={per_operation} "
          f"requests={sum(v for k, v in tally.items() if k.endswith('xx'))} "
          f"by_class={dict(sorted(tally.items()))} "
          f"crashed_workers={len(crashed)} receiver_alive={alive} server_errors="
          f"{tally.get('5xx', 0)} webhook_cases={len(webhook_bodies)} "
          f"webhook_recorded={webhook_recorded} lost=0")
    assert alive and not crashed, crashed
    # The webhook's schema resolves ($defs moved to components): many distinct payloads,
    # and valid ones among them that were recorded, not one unresolvable case.
    assert len(webhook_bodies) > 1 and webhook_recorded > 0
    assert "unhandled error" not in log


# ---------------------------------------------------------------------------- known bugs

def _post(app: Any, raw: str) -> Any:
    return app.test_client().post("/webhook/alertmanager", data=raw.encode("utf-8",
                                                                          "surrogatepass"),
                                  headers={**webhook_headers(),
                                           "Content-Type": "application/json"})


def _one(**changes: Any) -> dict[str, Any]:
    body = notification([alert({"container": "web"},
                               starts_at=datetime.now(UTC) - timedelta(minutes=1))])
    for key, value in changes.items():
        if key.startswith("alert_"):
            body["alerts"][0][key[6:]] = value
        else:
            body[key] = value
    return body


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_timestamp_offset_overflow_is_a_400(fuzz_app, stamp) -> None:
    response = _post(fuzz_app, json.dumps(_one(alert_startsAt=stamp)))
    assert response.status_code == 400, response.get_data(as_text=True)


@pytest.fixture
def pg_fuzz_app(pg_url, app_factory):
    return app_factory(pg_url, max_body_bytes=MAX_BODY)


@pytest.mark.parametrize("change", [
    {"alert_labels": {"alertname": "TargetDown", "container": "web", "x": "a\u0000b"}},
    {"alert_fingerprint": "ab\u0000cd"},
    {"unknown_field": "\ud800"},
])
def test_nul_or_surrogate_is_refused_cleanly_on_postgres(pg_fuzz_app, change) -> None:
    response = _post(pg_fuzz_app, json.dumps(_one(**change)))
    assert response.status_code < 500, response.get_data(as_text=True)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_the_body_is_refused_cleanly_on_postgres(pg_fuzz_app, token) -> None:
    raw = json.dumps(_one(extra="PLACEHOLDER")).replace('"PLACEHOLDER"', token)
    response = _post(pg_fuzz_app, raw)
    assert response.status_code < 500, response.get_data(as_text=True)


def test_chunked_oversized_body_is_413(sqlite_url, tmp_path) -> None:
    from tests.harness.receiver import start_receiver

    receiver = start_receiver(sqlite_url, workers=1, root=tmp_path / "r", env={
        "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
        "AUTOFIX_DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "AUTOFIX_MAX_BODY_BYTES": str(MAX_BODY)})
    try:
        small = _post_chunked(receiver.url, json.dumps(notification([alert(
            {"container": "web"})])).encode())
        large = _post_chunked(receiver.url, json.dumps(notification([alert(
            {"container": "web", "pad": "x" * MAX_BODY})])).encode())
    finally:
        receiver.stop()
    assert small == 200
    assert large == 413
