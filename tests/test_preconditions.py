"""`require:` (issue #30): the playbook key, what counts as an answer from Prometheus, and
how label values enter an expression. The runs themselves: test_preconditions_docker.py."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from receiver.actions.builtin import build_registry
from receiver.config.settings import Settings
from receiver.domain.errors import ConfigError
from receiver.engine.preconditions import promql_string_context
from receiver.playbooks.config import parse_playbooks
from receiver.telemetry.prometheus_api import (
    PrometheusQueryError,
    PrometheusUnreachable,
    QueryResult,
    instant_query,
)
from tests.harness.procs import LOOPBACK, free_port
from tests.harness.prometheus_stub import start_prometheus_stub

PARAMS = build_registry().params_models()


def playbook_yaml(require: str) -> str:
    return ("playbooks:\n  - name: guarded\n    matchers: ['alertname=\"TargetDown\"']\n"
            f"    require: {require}\n    actions: [restart]\n")


def test_require_is_a_list_of_promql_strings_kept_as_written() -> None:
    parsed = parse_playbooks(playbook_yaml(
        '[\'count(up{job="web"} == 1) >= 2\', \'up{job="{{ labels.job }}"}\']'), PARAMS)
    assert parsed.playbooks[0].require == ['count(up{job="web"} == 1) >= 2',
                                           'up{job="{{ labels.job }}"}']
    assert parse_playbooks(playbook_yaml("[]"), PARAMS).playbooks[0].require == []


@pytest.mark.parametrize(("require", "message"), [
    ("['up', '  ']", "each `require:` entry must be a PromQL expression"),
    ("'up == 1'", "Input should be a valid list"),
    ("[42]", "Input should be a valid string"),
    ("['up{job=\"{{ labels.job \"}']", "invalid template"),
    ("[" + ", ".join(["up"] * 11) + "]", "at most 10 items"),
])
def test_a_bad_require_is_refused_at_load_with_its_line(require: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_playbooks(playbook_yaml(require), PARAMS, source="pb.yml")
    [error] = refused.value.details["errors"]
    assert error.startswith("pb.yml:4:") and "playbooks.0.require" in error, error
    assert message in error, error


def test_the_timeout_is_a_setting_of_five_seconds_by_default() -> None:
    assert Settings.model_fields["precondition_timeout_s"].default == 5.0


def test_label_values_stay_values_inside_a_promql_string() -> None:
    context = promql_string_context({"labels": {"job": 'web"} or vector(1) or up{x="'},
                                     "annotations": {"a": "back\\slash\nline"},
                                     "status": "firing", "target": "t-1"})
    assert context == {"labels": {"job": 'web\\"} or vector(1) or up{x=\\"'},
                       "annotations": {"a": "back\\\\slash\\nline"},
                       "status": "firing", "target": "t-1"}


@pytest.mark.parametrize(("result", "nonempty"), [
    (QueryResult("vector", []), False),
    (QueryResult("matrix", []), False),
    (QueryResult("vector", [{"metric": {}, "value": [1, "2"]}]), True),
    (QueryResult("scalar", [{"metric": {}, "value": [1, "0"]}]), True),  # always a value
])
def test_what_counts_as_a_result(result: QueryResult, nonempty: bool) -> None:
    assert result.nonempty is nonempty


@pytest.fixture
def stub_prometheus() -> Iterator[str]:
    """Prometheus' ways of failing that a real one cannot be made to show on demand."""
    stub = start_prometheus_stub()
    stub.answers = {
        "bad": (400, json.dumps({"status": "error", "errorType": "bad_data",
                                 "error": "parse error at char 4"})),
        "overloaded": (503, "<html>Service Unavailable</html>"),
        "garbled": (200, '{"status": "succ'),
        "scalar": (200, json.dumps({"status": "success", "data": {
            "resultType": "scalar", "result": [1733500000.0, "0"]}})),
        "matrix": (200, json.dumps({"status": "success", "data": {
            "resultType": "matrix", "result": [{"metric": {"job": "web"},
                                                "values": [[1, "1"], [2, "1"]]}]}})),
        "nodata": (200, json.dumps({"status": "success"})),
    }
    yield stub.url
    stub.stop()


def test_an_error_answer_is_a_query_error(stub_prometheus: str) -> None:
    with pytest.raises(PrometheusQueryError, match="HTTP 400: parse error at char 4"):
        instant_query(stub_prometheus, "bad", 2)


@pytest.mark.parametrize(("expr", "message"), [
    ("overloaded", "HTTP 503 from .* is not Prometheus JSON"),
    ("garbled", "HTTP 200 from .* is not Prometheus JSON"),
    ("nodata", "no result"),
])
def test_an_answer_that_is_not_prometheus_json_is_no_answer(stub_prometheus: str, expr: str,
                                                            message: str) -> None:
    with pytest.raises(PrometheusUnreachable, match=message):
        instant_query(stub_prometheus, expr, 2)


def test_scalars_and_matrices_are_results(stub_prometheus: str) -> None:
    scalar = instant_query(stub_prometheus, "scalar", 2)
    assert scalar.nonempty and scalar.describe() == "scalar of 1, first {} = 0"
    matrix = instant_query(stub_prometheus, "matrix", 2)
    assert matrix.nonempty and matrix.result_type == "matrix"
    assert instant_query(stub_prometheus, "empty", 2).describe() == "empty vector"


def test_a_refused_connection_is_no_answer_and_never_quotes_the_query() -> None:
    url = f"http://{LOOPBACK}:{free_port()}"
    with pytest.raises(PrometheusUnreachable) as failed:
        instant_query(url, 'up{secret="hunter2"}', 2)
    assert str(failed.value).startswith(f"ConnectionError querying {url}")
    assert "hunter2" not in str(failed.value)


def test_a_silent_server_is_no_answer_within_the_timeout() -> None:
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen()  # accepts the connection, never answers
    try:
        with pytest.raises(PrometheusUnreachable, match=r"ReadTimeout .*\(timeout 0.3s\)"):
            instant_query(f"http://{LOOPBACK}:{listener.getsockname()[1]}", "up", 0.3)
    finally:
        listener.close()


def test_the_api_lists_each_playbooks_require(db_url: str, app_factory: Any,
                                              tmp_path: Any) -> None:
    from tests.conftest import api_headers

    path = tmp_path / "playbooks.yml"
    path.write_text(playbook_yaml("['count(up{job=\"web\"} == 1) >= 2']"))
    app = app_factory(db_url, playbooks=path)
    listed = app.test_client().get("/api/v1/playbooks", headers=api_headers())
    assert listed.status_code == 200, listed.json
    assert listed.json["items"][0]["require"] == ['count(up{job="web"} == 1) >= 2']
