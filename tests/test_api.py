"""The /api/v1 routes, probes, OpenAPI document and config reload, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

from receiver.api.auth import OPEN_ROUTES
from receiver.api.openapi import UNDOCUMENTED_ENDPOINTS, build_document
from tests.conftest import api_headers, webhook_headers
from tests.harness.memory_executor import MemoryExecutor
from tests.payloads import alert, notification


def seed(client: FlaskClient) -> None:
    t0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    alerts = [alert({"container": f"web-{i}"}, starts_at=t0 + timedelta(minutes=i))
              for i in range(5)]
    alerts.append(alert({"container": "db", "alertname": "HighCPU"}, starts_at=t0))
    client.post("/webhook/alertmanager", json=notification(alerts), headers=webhook_headers())
    resolved = alert({"container": "web-0"}, status="resolved", starts_at=t0,
                     ends_at=t0 + timedelta(minutes=3))
    client.post("/webhook/alertmanager", json=notification([resolved]),
                headers=webhook_headers())


def get(client: FlaskClient, url: str):
    return client.get(url, headers=api_headers())


def test_probes_need_no_token(db_url: str, app_factory) -> None:
    client = app_factory(db_url, executor=MemoryExecutor()).test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_readyz_is_503_when_the_database_is_unreachable(app_factory, tmp_path) -> None:
    app = app_factory(f"sqlite:///{tmp_path}/missing-dir/x.db")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and response.json["database"] == "unreachable"


def test_incidents_filter_and_paginate(client: FlaskClient) -> None:
    seed(client)
    everything = get(client, "/api/v1/incidents").json
    assert everything["total"] == 6
    assert get(client, "/api/v1/incidents?status=resolved").json["total"] == 1
    assert get(client, "/api/v1/incidents?alertname=HighCPU").json["items"][0]["container"] == "db"
    assert get(client, "/api/v1/incidents?target=web-3").json["total"] == 1
    page = get(client, "/api/v1/incidents?limit=2&offset=2").json
    assert [i["id"] for i in page["items"]] == [i["id"] for i in everything["items"][2:4]]
    since = get(client, "/api/v1/incidents?since=2000-01-01T00:00:00Z").json
    assert since["total"] == 6
    assert get(client, "/api/v1/incidents?since=2999-01-01T00:00:00Z").json["total"] == 0
    assert everything["total_exact"] and page["total_exact"]


def test_a_page_counts_only_up_to_a_bound_past_its_offset(client: FlaskClient,
                                                           monkeypatch) -> None:
    """An exact count(*) reads every match (ten million rows, bench/scale.py): `total` is
    counted up to offset + PAGE_COUNT_CAP, and says when it stopped there. next_offset
    still walks every page to the last one."""
    import receiver.api.queries

    seed(client)
    monkeypatch.setattr(receiver.api.queries, "PAGE_COUNT_CAP", 3)
    walked: list[tuple[int, bool, int | None]] = []
    offset: int | None = 0
    while offset is not None:
        page = get(client, f"/api/v1/incidents?limit=2&offset={offset}").json
        walked.append((page["total"], page["total_exact"], page["next_offset"]))
        offset = page["next_offset"]
    # 6 incidents: at offset 0 counted to 3, at 2 to 5, at 4 all 6.
    assert walked == [(3, False, 2), (5, False, 4), (6, True, None)]
    filtered = get(client, "/api/v1/incidents?status=resolved").json
    assert (filtered["total"], filtered["total_exact"]) == (1, True)


def test_bad_filters_are_400_naming_the_field(client: FlaskClient) -> None:
    for query, field in (("status=broken", "status"), ("limit=0", "limit"),
                         ("since=yesterday", "since"), ("bogus=1", "bogus")):
        response = get(client, f"/api/v1/incidents?{query}")
        assert response.status_code == 400, query
        assert field in response.json["message"]


def test_show_incident_with_runs_and_actions(client: FlaskClient) -> None:
    seed(client)
    first = get(client, "/api/v1/incidents?target=web-1").json["items"][0]
    detail = get(client, f"/api/v1/incidents/{first['id']}").json
    assert detail["runs"][0]["playbook"] == "restart-on-target-down"
    assert detail["actions"] == []  # no worker ran in this test
    missing = get(client, "/api/v1/incidents/999999")
    assert missing.status_code == 404 and "999999" in missing.json["message"]
    assert get(client, "/api/v1/actions").json == {
        "items": [], "total": 0, "total_exact": True, "limit": 50, "offset": 0,
        "next_offset": None}


def test_every_route_but_the_probes_requires_a_token(app: Flask) -> None:
    """Auth is the default (one before_request hook): every registered route, including
    any added later, answers 401 without a token unless it is in the open list."""
    assert {"/healthz", "/readyz", "/metrics"} == OPEN_ROUTES
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule in OPEN_ROUTES:
            continue
        url = re.sub(r"<(?:\w+:)?(\w+)>", "1", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(url, method=method, json={})
            assert response.status_code == 401, (method, rule.rule)
            assert response.json["error"] == "unauthorized"
            checked += 1
    assert checked >= 11


def test_openapi_document_matches_the_real_routes(app: Flask) -> None:
    """Derived from app.url_map: every registered route but the static files is documented
    with its method, and every documented operation is a registered route."""
    assert {"static"} == UNDOCUMENTED_ENDPOINTS
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules() if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    document = build_document(app)
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served == documented
    fetched = app.test_client().get("/api/v1/openapi.json", headers=api_headers()).json
    assert fetched == document


def test_unknown_route_and_method_answer_json(client: FlaskClient) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json["error"] == "not_found"
    wrong = client.get("/webhook/alertmanager")
    assert wrong.status_code == 405 and "Traceback" not in wrong.get_data(as_text=True)


def test_reload_keeps_the_old_config_when_the_file_is_bad(db_url, app_factory, tmp_path) -> None:
    path = tmp_path / "playbooks.yml"
    path.write_text("playbooks:\n  - name: one\n    matchers: ['alertname=\"A\"']\n"
                    "    actions: [notify: {}]\n")
    app = app_factory(db_url, playbooks=path)
    client = app.test_client()
    path.write_text("playbooks:\n  - name: two\n    matchers: ['alertname=\"A\"']\n"
                    "    actions: [restart: {timeout_s: -1}]\n")
    bad = client.post("/-/reload", headers=api_headers())
    assert bad.status_code == 400
    assert any(":4:" in line and "timeout_s" in line for line in bad.json["errors"])
    assert [p["name"] for p in get(client, "/api/v1/playbooks").json["items"]] == ["one"]
    path.write_text(path.read_text().replace("-1", "5"))
    good = client.post("/-/reload", headers=api_headers())
    assert good.status_code == 200 and good.json["playbooks"] == 1
    assert [p["name"] for p in get(client, "/api/v1/playbooks").json["items"]] == ["two"]


def test_reload_reaches_every_worker_through_the_database(db_url, app_factory, tmp_path) -> None:
    path = tmp_path / "playbooks.yml"
    path.write_text("playbooks:\n  - name: one\n    matchers: ['a=\"b\"']\n"
                    "    actions: [notify: {}]\n")
    worker_a = app_factory(db_url, playbooks=path)
    worker_b = app_factory(db_url, playbooks=path)
    worker_b.extensions["autofix"].config._refresh_s = 0  # check the DB on every call
    path.write_text(path.read_text().replace("one", "uno"))
    assert worker_a.test_client().post("/-/reload", headers=api_headers()).status_code == 200
    names = [p["name"] for p in get(worker_b.test_client(), "/api/v1/playbooks").json["items"]]
    assert names == ["uno"]


def test_breakers_list_and_reset_is_audited(client: FlaskClient) -> None:
    from receiver.store.models import AuditEntry, Breaker

    database = client.application.extensions["autofix"].database
    with database.session() as session:
        session.add(Breaker(target="web-1", state="open", reopen_count=2,
                            opened_at=datetime.now(UTC),
                            open_until=datetime.now(UTC) + timedelta(minutes=5)))
    listed = get(client, "/api/v1/breakers").json["items"]
    assert listed[0]["target"] == "web-1" and listed[0]["state"] == "open"
    no_reason = client.post("/api/v1/breakers/web-1/reset", json={"actor": "ana"},
                            headers=api_headers())
    assert no_reason.status_code == 400 and "reason" in no_reason.json["message"]
    reset = client.post("/api/v1/breakers/web-1/reset",
                        json={"actor": "ana", "reason": "fixed the config"},
                        headers=api_headers())
    assert reset.status_code == 200 and reset.json["state"] == "closed"
    assert reset.json["actor"] == "ana"
    assert get(client, "/api/v1/breakers").json["items"][0]["state"] == "closed"
    with database.session() as session:
        [entry] = session.query(AuditEntry).all()
        assert (entry.actor, entry.verb, entry.subject, entry.reason) == (
            "ana", "breaker_reset", "web-1", "fixed the config")
    missing = client.post("/api/v1/breakers/nope/reset", json={"actor": "a", "reason": "r"},
                          headers=api_headers())
    assert missing.status_code == 404


def test_nul_in_the_url_is_a_400_not_a_500(client: FlaskClient) -> None:
    for url in ("/api/v1/actions?target=a%00b", "/api/v1/incidents?alertname=%00",
                "/api/v1/breakers/a%00b/reset"):
        response = client.open(url, method="POST" if url.endswith("reset") else "GET",
                               headers=api_headers(), json={"actor": "a", "reason": "r"})
        assert response.status_code == 400, (url, response.json)
        assert "NUL" in response.json["message"]


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_openapi_document_is_valid_and_describes_every_response(app: Flask) -> None:
    from openapi_spec_validator import validate

    document = build_document(app)
    validate(document)  # OpenAPI 3.1
    schemas = document["components"]["schemas"]
    refs = _refs(document)
    assert refs and all(ref.startswith("#/components/schemas/") for ref in refs)
    assert all(ref.rsplit("/", 1)[1] in schemas for ref in refs)
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status, response in responses.items():
                assert response["content"], (method, path, status)
                if status >= "400" and path != "/readyz":
                    assert response["content"]["application/json"]["schema"] == error_ref
            if path not in OPEN_ROUTES:
                assert "401" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= set(responses), (method, path)


def test_actions_show_detail_as_its_own_field(client: FlaskClient) -> None:
    from receiver.store.models import Action

    seed(client)
    incident = get(client, "/api/v1/incidents?target=web-1").json["items"][0]
    detail = get(client, f"/api/v1/incidents/{incident['id']}").json
    database = client.application.extensions["autofix"].database
    with database.session() as session:
        session.add(Action(run_id=detail["runs"][0]["id"], incident_id=incident["id"],
                           playbook="p", action="restart", target="web-1",
                           params={"timeout_s": 5.0, "detail": {"restarted": True}},
                           outcome="succeeded", duration_s=1.5, trigger="alert", step=0))
    [listed] = get(client, "/api/v1/actions").json["items"]
    assert listed["params"] == {"timeout_s": 5.0} and listed["detail"] == {"restarted": True}
    [shown] = get(client, f"/api/v1/incidents/{incident['id']}").json["actions"]
    assert shown["params"] == {"timeout_s": 5.0} and shown["detail"] == {"restarted": True}
    assert detail["runs"][0]["actor"] == detail["runs"][0]["requested_by"]


def test_playbook_durations_are_floats(client: FlaskClient) -> None:
    [playbook, *_] = get(client, "/api/v1/playbooks").json["items"]
    assert isinstance(playbook["cooldown_s"], float)
    breaker = playbook["circuit_breaker"]
    assert {key for key in breaker if key.endswith("_s")} >= {"open_s", "window_s"}
    assert all(isinstance(value, float) for key, value in breaker.items()
               if key.endswith("_s")), breaker


def test_audit_log_filters_and_paginates(client: FlaskClient) -> None:
    from receiver.store.models import AuditEntry

    database = client.application.extensions["autofix"].database
    t0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    with database.session() as session:
        for i in range(5):
            session.add(AuditEntry(at=t0 + timedelta(minutes=i), actor=f"ana_{i % 2} (1.2.3.4)",
                                   verb="breaker_reset" if i < 3 else "reload",
                                   subject=f"web-{i}", reason="r"))
    everything = get(client, "/api/v1/audit").json
    assert everything["total"] == 5 and everything["items"][0]["subject"] == "web-4"
    assert get(client, "/api/v1/audit?verb=reload").json["total"] == 2
    assert get(client, "/api/v1/audit?actor=ana_1").json["total"] == 2
    assert get(client, "/api/v1/audit?actor=ana%25").json["total"] == 0  # no wildcards
    assert get(client, "/api/v1/audit?since=2026-11-29T09:03:00Z").json["total"] == 2
    page = get(client, "/api/v1/audit?limit=2&offset=2").json
    assert [i["subject"] for i in page["items"]] == ["web-2", "web-1"]
    assert page["next_offset"] == 4
    for query in ("limit=0", "limit=501", "offset=-1", "bogus=1", "since=x"):
        assert get(client, f"/api/v1/audit?{query}").status_code == 400, query


def test_runs_filter_and_paginate(client: FlaskClient) -> None:
    seed(client)
    everything = get(client, "/api/v1/runs").json
    assert everything["total"] == 6 and everything["next_offset"] is None
    assert {run["status"] for run in everything["items"]} == {"queued"}
    ids = [run["id"] for run in everything["items"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert get(client, "/api/v1/runs?status=queued").json["total"] == 6
    assert get(client, "/api/v1/runs?status=awaiting_approval").json["total"] == 0
    assert get(client, "/api/v1/runs?target=web-3").json["items"][0]["target"] == "web-3"
    assert get(client, "/api/v1/runs?playbook=restart-on-target-down").json["total"] == 5
    assert get(client, "/api/v1/runs?playbook=nope").json["total"] == 0
    page = get(client, "/api/v1/runs?limit=2&offset=2").json
    assert [r["id"] for r in page["items"]] == ids[2:4] and page["next_offset"] == 4


def test_bad_run_filters_are_400_naming_the_field(client: FlaskClient) -> None:
    for query, field in (("status=waiting", "status"), ("limit=501", "limit"),
                         ("since=soon", "since"), ("state=queued", "state")):
        response = get(client, f"/api/v1/runs?{query}")
        assert response.status_code == 400, query
        assert response.json["error"] == "bad_request" and field in response.json["message"]
