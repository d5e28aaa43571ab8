"""Matchers, templating and the playbooks file: pure logic, including hostile labels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.actions.builtin import build_registry
from receiver.config.settings import DEFAULT_PLAYBOOKS
from receiver.domain.errors import ConfigError
from receiver.executor.docker_executor import is_valid_container_name
from receiver.playbooks.config import (
    MAX_DURATION_S,
    load_playbooks,
    parse_duration,
    parse_playbooks,
)
from receiver.playbooks.ingest import resolve_target
from receiver.playbooks.matchers import parse_matcher
from receiver.playbooks.templating import TemplateRenderer

PARAMS = build_registry().params_models()


@pytest.mark.parametrize(("text", "labels", "expected"), [
    ('alertname="TargetDown"', {"alertname": "TargetDown"}, True),
    ('alertname="TargetDown"', {"alertname": "TargetDownX"}, False),
    ('severity=~"critical|page"', {"severity": "page"}, True),
    ('severity=~"critical|page"', {"severity": "pager"}, False),  # anchored like Alertmanager
    ('env!="prod"', {}, True),  # a missing label equals ""
    ('env!~"prod|stage"', {"env": "stage"}, False),
    ('team=""', {}, True),
    ("team=ops", {"team": "ops"}, True),
    ('msg="say \\"hi\\""', {"msg": 'say "hi"'}, True),
    # Alertmanager unescapes only \\, \" and \n: a regex's \d or \. keeps its backslash, so
    # a maintenance window over shop-\d+ holds shop-1 (it once held only "shop-ddd").
    (r'container=~"shop-\d+"', {"container": "shop-1"}, True),
    (r'container=~"shop-\d+"', {"container": "shop-ddd"}, False),
    (r'db=~"shop\.db"', {"db": "shopXdb"}, False),
    (r'path="a\\b"', {"path": "a\\b"}, True),
    (r'msg="l1\nl2"', {"msg": "l1\nl2"}, True),
])
def test_matchers_follow_alertmanager_semantics(text, labels, expected) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize("text", ['alertname=="x"', "=x", 'a=~"("', "a b", 'a="x" junk'])
def test_bad_matchers_are_rejected_with_a_reason(text) -> None:
    with pytest.raises(ValueError):
        parse_matcher(text)


def test_durations() -> None:
    assert parse_duration("1h30m") == 5400 and parse_duration(90) == 90
    assert parse_duration("250ms") == 0.25 and parse_duration("1500ms") == 1.5
    assert parse_duration("1w") == 7 * 86400 and parse_duration("0") == 0
    # Issue #29: what Prometheus refuses is refused (units out of order, repeated, fractions).
    for bad in ("soon", "-1s", True, "5 m", "1s1h", "5m5m", "1.5h", "", "ms", "1ms1s", "1M"):
        with pytest.raises(ValueError):
            parse_duration(bad)


_UNITS = (("y", 365 * 86400), ("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60),
          ("s", 1), ("ms", 0.001))


@given(st.lists(st.tuples(st.sampled_from(range(len(_UNITS))), st.integers(0, 999)),
                min_size=1, max_size=7))
def test_durations_follow_prometheus_grammar(parts: list[tuple[int, int]]) -> None:
    """Units largest first and each once parse to their sum; any other order is refused."""
    text = "".join(f"{number}{_UNITS[unit][0]}" for unit, number in parts)
    units = [unit for unit, _ in parts]
    expected = sum(number * _UNITS[unit][1] for unit, number in parts)
    if units == sorted(set(units)) and expected <= MAX_DURATION_S:
        assert parse_duration(text) == pytest.approx(expected)
    else:
        with pytest.raises(ValueError):
            parse_duration(text)


def test_shipped_playbooks_cover_the_shipped_alerts() -> None:
    shipped = load_playbooks(DEFAULT_PLAYBOOKS, PARAMS)
    expected = {"TargetDown": "restart-on-target-down",
                "HighErrorRate": "restart-on-high-error-rate",
                "HighLatencyP95": "restart-on-high-latency",
                "HighCPU": "restart-on-resource-pressure",
                "MemoryGrowth": "restart-on-resource-pressure",
                "SomethingElse": "notify-unmatched"}
    for alertname, playbook in expected.items():
        labels = {"alertname": alertname, "container": "web"}
        assert shipped.first_match(labels, "firing").name == playbook
    own = {"alertname": "AutofixBreakerOpen", "component": "autofix"}
    assert shipped.first_match(own, "firing").name == "notify-autofix-self"
    assert shipped.first_match({"alertname": "TargetDown"}, "resolved") is None


@pytest.mark.parametrize("value", [
    "{{ 7*7 }}", "{% for x in range(10**9) %}{% endfor %}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}", "$(reboot)", "web; rm -rf /",
    "../../var/run/docker.sock", "web\nother",
])
def test_label_values_are_data_never_templates(value) -> None:
    renderer = TemplateRenderer()
    target, _ = resolve_target("{{ labels.container }}", {"container": value}, {}, renderer)
    assert target == value.strip()  # inserted literally, never evaluated
    assert not is_valid_container_name(target or "")


def test_sandbox_blocks_unsafe_templates_in_the_playbook_itself() -> None:
    renderer = TemplateRenderer()
    with pytest.raises(ValueError):
        renderer.render("{{ labels.__class__.__mro__ }}", {"labels": {}})
    target, error = resolve_target("{{ labels.container }}", {}, {}, renderer)
    assert target is None and "container" in (error or "")


def test_duplicate_names_and_unknown_fields_are_config_errors() -> None:
    text = ("playbooks:\n"
            "  - {name: a, matchers: ['x=\"y\"'], actions: [notify: {}]}\n"
            "  - {name: a, matchers: ['x=\"y\"'], actions: [notify: {}], colour: red}\n")
    with pytest.raises(ConfigError) as error:
        parse_playbooks(text, PARAMS)
    assert any("colour" in line and ":3:" in line for line in error.value.details["errors"])


@given(st.text(alphabet=st.sampled_from('ab\\"\n.d+'), max_size=12))
def test_a_matcher_printed_parses_back_to_itself(value: str) -> None:
    from receiver.playbooks.matchers import Matcher

    matcher = Matcher("label", "=", value)
    assert parse_matcher(str(matcher)) == matcher
