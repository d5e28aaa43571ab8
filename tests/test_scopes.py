"""Scoped tokens (#19): read-only, operator (AUTOFIX_API_TOKEN) and webhook; each route
declares its scope, and the OpenAPI document shows it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from pydantic import ValidationError

from receiver.api import operations as api_operations
from receiver.api.auth import OPEN_ROUTES, requires, scope_of
from receiver.api.openapi import build_document, routes
from receiver.config.settings import Settings
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, api_headers

READ_TOKEN = "read-test-token-4d7a"
PATH_VALUES = {"incident_id": "1", "name": "restart-on-down", "target": "web", "run_id": "1",
               "evidence_id": "1", "maintenance_id": "1"}


@pytest.fixture
def scoped_app(sqlite_url: str, app_factory: Any) -> Flask:
    app: Flask = app_factory(sqlite_url, read_token=READ_TOKEN)
    return app


def read_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {READ_TOKEN}"}


def operations(app: Flask) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, described) for path, item in build_document(app)["paths"].items()
            for method, described in item.items()]


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def test_every_mutating_route_refuses_the_read_only_token_with_403(scoped_app) -> None:
    """Enumerated from the OpenAPI document: every operation but GET changes something, and
    the read-only token gets 403 on each (the webhook and Slack, which take no API token,
    aside: 401 there)."""
    client = scoped_app.test_client()
    mutating = [(p, m, o) for p, m, o in operations(scoped_app) if m != "get"]
    assert len(mutating) >= 8
    for path, method, operation in mutating:
        response = client.open(concrete(path), method=method.upper(), json={},
                               headers=read_headers())
        if operation["x-autofix-scope"] in ("webhook", "slack"):
            assert response.status_code == 401, path
            continue
        assert operation["x-autofix-scope"] == "operator", (method, path)
        assert operation["security"] == [{"operator_token": []}]
        assert "403" in operation["responses"], path
        assert response.status_code == 403, (method, path, response.json)
        assert response.json["error"] == "forbidden"
        assert response.json["scope"] == "operator"


def test_the_read_only_token_reads_every_read_route(scoped_app) -> None:
    client = scoped_app.test_client()
    reads = [(p, o) for p, m, o in operations(scoped_app)
             if m == "get" and o["x-autofix-scope"] == "read"]
    assert len(reads) >= 7
    for path, operation in reads:
        assert operation["security"] == [{"read_token": []}, {"operator_token": []}]
        response = client.get(concrete(path), headers=read_headers())
        # A route that asks dockerd (a target's dependents) finds none here: 503, not 403.
        unreachable = response.status_code == 503 and response.json["error"] in (
            "backend_unavailable",)
        assert response.status_code in (200, 404) or unreachable, (path, response.json)
        assert client.get(concrete(path), headers=api_headers()).status_code in (
            200, 404, 503 if unreachable else 200)


def test_the_operator_token_is_still_AUTOFIX_API_TOKEN(scoped_app) -> None:
    client = scoped_app.test_client()
    body = {"actor": "ops", "reason": "drill"}
    assert client.post("/api/v1/pause", json=body, headers=api_headers()).status_code == 200
    assert client.post("/api/v1/resume", json=body, headers=api_headers()).status_code == 200
    wrong = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    assert client.post("/api/v1/pause", json=body, headers=wrong).status_code == 401
    assert client.get("/api/v1/incidents", headers=wrong).status_code == 401


def test_every_operation_shows_the_scope_its_view_enforces(scoped_app) -> None:
    """The document's scope and security come from the view's @requires, which the auth
    hook enforces (the two tests above check the tokens against them)."""
    documented = {(path, method): described for path, method, described
                  in operations(scoped_app)}
    checked = 0
    for rule in scoped_app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        enforced = scope_of(scoped_app.view_functions[rule.endpoint])
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            described = documented[(path, method.lower())]
            assert described["x-autofix-scope"] == enforced, (method, path)
            assert (described["security"] == []) == (enforced == "open"), (method, path)
            checked += 1
    assert checked == len(documented) == len(routes(scoped_app))
    assert {path for path, _, o in operations(scoped_app)
            if o["x-autofix-scope"] == "open"} == OPEN_ROUTES


def test_a_view_without_an_operation_fails_the_document(scoped_app) -> None:
    """A new route must say what it answers: the document refuses to leave it out."""
    app = Flask("bare")

    @app.get("/documented")
    @api_operations.operation("Documented", {"200": ("ok", None)})
    @requires("read")
    def documented() -> str:
        return ""

    assert [(r.path, r.method, r.scope) for r in routes(app)] == [
        ("/documented", "get", "read")]

    @app.get("/forgotten")
    @requires("read")
    def forgotten() -> str:
        return ""

    with pytest.raises(RuntimeError, match=r"forgotten .*declares no @operation"):
        build_document(app)


def test_the_read_token_can_come_from_a_file(tmp_path: Path, monkeypatch) -> None:
    secret = tmp_path / "read_token"
    secret.write_text(READ_TOKEN + "\n")
    monkeypatch.setenv("AUTOFIX_READ_TOKEN_FILE", str(secret))
    settings = Settings(webhook_token=WEBHOOK_TOKEN, api_token=API_TOKEN)
    assert settings.secret("read_token") == READ_TOKEN


@pytest.mark.parametrize(("values", "message"), [
    ({"read_token": API_TOKEN}, "AUTOFIX_API_TOKEN and AUTOFIX_READ_TOKEN must differ"),
    ({"read_token": WEBHOOK_TOKEN}, "AUTOFIX_WEBHOOK_TOKEN and AUTOFIX_READ_TOKEN must differ"),
    ({"read_token": "short"}, "at least 16 characters"),
])
def test_the_read_token_is_a_distinct_strong_secret(values, message) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(webhook_token=WEBHOOK_TOKEN, api_token=API_TOKEN, **values)
