"""POST /webhook/alertmanager on SQLite and PostgreSQL: dedup, resolution, every error case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask.testing import FlaskClient
from sqlalchemy import select

from receiver.store.models import Incident, Notification, Run
from tests.conftest import webhook_headers
from tests.payloads import alert, notification

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def post(client: FlaskClient, body: object, **kwargs: object):
    headers = kwargs.pop("headers", webhook_headers())
    return client.post("/webhook/alertmanager", json=body, headers=headers, **kwargs)


def incidents(client: FlaskClient) -> list[Incident]:
    database = client.application.extensions["autofix"].database
    with database.session() as session:
        return list(session.scalars(select(Incident).order_by(Incident.id)))


def test_first_notification_opens_one_incident_and_queues_one_run(client: FlaskClient) -> None:
    response = post(client, notification([alert({"container": "web-1"})]))
    assert response.status_code == 200, response.json
    assert response.json["new"] == 1 and response.json["runs_queued"] == 1
    [incident] = incidents(client)
    assert (incident.status, incident.notification_count) == ("open", 1)
    assert incident.target == "web-1" and incident.playbook == "restart-on-target-down"
    assert incident.labels["container"] == "web-1"
    assert incident.starts_at == T0


def test_repeats_only_bump_the_count(client: FlaskClient) -> None:
    body = notification([alert({"container": "web-1"})])
    for _ in range(3):
        assert post(client, body).status_code == 200
    [incident] = incidents(client)
    assert incident.notification_count == 3
    with client.application.extensions["autofix"].database.session() as session:
        assert len(list(session.scalars(select(Run)))) == 1
        assert len(list(session.scalars(select(Notification)))) == 3


def test_resolution_closes_the_incident_with_time_to_resolve(client: FlaskClient) -> None:
    post(client, notification([alert({"container": "web-1"})]))
    ends = T0 + timedelta(seconds=42)
    resolved = notification([alert({"container": "web-1"}, status="resolved", ends_at=ends)])
    response = post(client, resolved)
    assert response.json["resolved"] == 1 and response.json["runs_queued"] == 0
    [incident] = incidents(client)
    assert incident.status == "resolved" and incident.resolved_at is not None
    assert incident.time_to_resolve_s == 42.0 and not incident.resolved_unseen
    again = post(client, resolved)  # a re-sent resolution changes nothing but the count
    assert again.json["resolved"] == 0 and again.json["duplicates"] == 1
    assert incidents(client)[0].resolved_at == incident.resolved_at


def test_resolution_of_an_unseen_occurrence_is_recorded(client: FlaskClient) -> None:
    body = notification([alert({"container": "db"}, status="resolved",
                               ends_at=T0 + timedelta(minutes=1))])
    assert post(client, body).json["resolved"] == 1
    [incident] = incidents(client)
    assert incident.status == "resolved" and incident.resolved_unseen


def test_same_fingerprint_new_starts_at_is_a_new_occurrence(client: FlaskClient) -> None:
    post(client, notification([alert({"container": "web-1"})]))
    later = alert({"container": "web-1"}, starts_at=T0 + timedelta(hours=1))
    assert post(client, notification([later])).json["new"] == 1
    assert [i.starts_at for i in incidents(client)] == [T0, T0 + timedelta(hours=1)]


def test_mixed_group_handles_each_alert_on_its_own(client: FlaskClient) -> None:
    post(client, notification([alert({"container": "a"}), alert({"container": "b"})]))
    body = notification([alert({"container": "a"}, status="resolved", ends_at=T0),
                         alert({"container": "b"}), alert({"container": "c"})])
    result = post(client, body).json
    assert (result["new"], result["duplicates"], result["resolved"]) == (1, 1, 1)
    assert {i.container: i.status for i in incidents(client)} == {
        "a": "resolved", "b": "open", "c": "open"}


def test_unknown_fields_are_ignored_and_truncation_recorded(client: FlaskClient) -> None:
    body = notification([alert({"container": "web-1"})], truncated=7)
    body["notification_reason"] = "new"
    body["alerts"][0]["somethingNew"] = {"x": 1}
    response = post(client, body)
    assert response.status_code == 200 and response.json["truncated_alerts"] == 7
    with client.application.extensions["autofix"].database.session() as session:
        [row] = session.scalars(select(Notification))
        assert row.truncated_alerts == 7 and row.payload["notification_reason"] == "new"


def test_basic_auth_with_the_token_as_password_is_accepted(client: FlaskClient) -> None:
    import base64

    from tests.conftest import WEBHOOK_TOKEN

    creds = base64.b64encode(f"alertmanager:{WEBHOOK_TOKEN}".encode()).decode()
    response = post(client, notification([alert({"container": "w"})]),
                    headers={"Authorization": f"Basic {creds}"})
    assert response.status_code == 200


def test_401_without_valid_credentials(client: FlaskClient) -> None:
    body = notification([alert({"container": "w"})])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic !!"}):
        response = post(client, body, headers=headers)
        assert response.status_code == 401
        assert response.json["error"] == "unauthorized"
    assert incidents(client) == []


def test_415_for_a_wrong_content_type_and_400_for_malformed_json(client: FlaskClient) -> None:
    cases = [("text/plain", b'{"version": "4"}', 415, "unsupported_media_type",
              "Content-Type must be application/json"),
             ("application/json", b"{not json", 400, "bad_request", "body is not JSON"),
             ("application/json", b'{"a": "\xff\xfe"}', 400, "bad_request", "not UTF-8"),
             ("application/json", b'{"a": NaN}', 400, "bad_request", "body is not JSON")]
    for content_type, data, status, code, message in cases:
        response = client.post("/webhook/alertmanager", data=data, headers={
            **webhook_headers(), "Content-Type": content_type})
        assert response.status_code == status, data
        assert response.json["error"] == code and message in response.json["message"]


def test_400_names_the_offending_field(client: FlaskClient) -> None:
    body = notification([alert({"container": "w"})])
    body["alerts"][0]["startsAt"] = "yesterday"
    response = post(client, body)
    assert response.status_code == 400
    assert "alerts.0.startsAt" in response.json["message"]
    body = notification([alert({"container": "w"})])
    body["version"] = "3"
    assert "version" in post(client, body).json["message"]


def test_413_over_the_size_limit(db_url: str, app_factory) -> None:
    small = app_factory(db_url, max_body_bytes=2048).test_client()
    body = notification([alert({"container": f"w{i}"}) for i in range(20)])
    response = post(small, body)
    assert response.status_code == 413
    assert "limit" in response.json["message"]


def test_no_stack_trace_on_deeply_nested_json(client: FlaskClient) -> None:
    data = b'{"version": "4", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = client.post("/webhook/alertmanager", data=data, headers={
        **webhook_headers(), "Content-Type": "application/json"})
    assert response.status_code == 400
    assert "Traceback" not in response.get_data(as_text=True)
