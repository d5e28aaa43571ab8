"""Rules, Prometheus and Alertmanager configs: linted by their own tools, and every alert
is unit-tested with promtool and carries the labels/annotations the receiver relies on."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.harness.procs import require_binary

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "rules" / "alert_rules.yml"
SELF_RULES = REPO / "rules" / "autofix_self.yml"  # autofix's own alerts and Watchdog
RULE_TESTS = sorted((REPO / "rules" / "tests").glob("*.yml"))
PROMETHEUS_YML = REPO / "prometheus" / "prometheus.yml"
ALERTMANAGER_YML = REPO / "alertmanager" / "alertmanager.yml"
RUNBOOKS = REPO / "docs" / "runbooks.md"


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def alert_rules(*paths: Path) -> list[dict]:
    groups = [g for path in paths or (RULES, SELF_RULES)
              for g in yaml.safe_load(path.read_text())["groups"]]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules() -> None:
    run([require_binary("promtool"), "check", "rules", str(RULES), str(SELF_RULES)])


def test_self_alerts_and_watchdog_live_apart_from_the_remediation_rules() -> None:
    """Copying rules/alert_rules.yml must not bring Watchdog or autofix's own alerts along
    (issue 27): they come from rules/autofix_self.yml, listed on purpose."""
    remediation = {r["alert"] for r in alert_rules(RULES)}
    own = {r["alert"] for r in alert_rules(SELF_RULES)}
    assert "Watchdog" in own and "AutofixReceiverDown" in own and "TargetDown" in remediation
    assert not any(name.startswith("Autofix") or name == "Watchdog" for name in remediation)
    assert all(name.startswith("Autofix") or name == "Watchdog" for name in own)
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert config["rule_files"] == ["../rules/alert_rules.yml", "../rules/autofix_self.yml"]
    tests = {p.name: yaml.safe_load(p.read_text())["rule_files"] for p in RULE_TESTS}
    assert tests["autofix_test.yml"] == ["../autofix_self.yml"]


def test_promtool_test_rules() -> None:
    assert RULE_TESTS, "no promtool tests in rules/tests/"
    run([require_binary("promtool"), "test", "rules", *map(str, RULE_TESTS)])


def test_promtool_check_config() -> None:
    run([require_binary("promtool"), "check", "config", str(PROMETHEUS_YML)])


def test_amtool_check_config() -> None:
    run([require_binary("amtool"), "check-config", str(ALERTMANAGER_YML)])


def _tested_firing_alerts() -> dict[str, list[dict]]:
    """alertname -> the exp_alerts lists of its promtool test cases."""
    cases: dict[str, list[dict]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(case)
    return cases


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_has_promtool_tests_for_both_sides_of_for(rule: dict) -> None:
    cases = _tested_firing_alerts().get(rule["alert"], [])
    firing = [c for c in cases if c.get("exp_alerts")]
    assert firing, f"{rule['alert']}: no promtool case where it fires"
    if rule.get("for"):
        quiet = [c for c in cases if not c.get("exp_alerts")]
        assert quiet, f"{rule['alert']}: no promtool case asserting it does not fire before for:"
    for case in firing:
        for alert in case["exp_alerts"]:
            labels, annotations = alert["exp_labels"], alert["exp_annotations"]
            assert {"severity", "container"} <= set(labels), (rule["alert"], labels)
            assert {"summary", "description", "runbook_url"} <= set(annotations)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_labels_and_annotations(rule: dict) -> None:
    name = rule["alert"]
    labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
    assert labels.get("severity") in {"critical", "warning", "info", "none"}, name
    assert {"summary", "description", "runbook_url"} <= set(annotations), name
    anchor = name.lower()
    # Relative: Alertmanager templates and pagers join it to a base URL (docs/deploy.md).
    assert annotations["runbook_url"] == f"runbooks.md#{anchor}", name
    assert f"\n## {name}\n" in RUNBOOKS.read_text(), f"docs/runbooks.md has no section {name}"
    if name.startswith("Autofix"):
        assert labels.get("component") == "autofix", name
    else:
        assert labels.get("component") != "autofix", name


def test_alertmanager_routes_autofix_alerts_to_notify_only() -> None:
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    route = config["route"]
    assert route["group_by"] == ["alertname", "host", "container"]
    by_matcher = {tuple(r["matchers"]): r["receiver"] for r in route["routes"]}
    assert by_matcher[('component="autofix"',)] == "autofix-notify"
    assert by_matcher[('alertname="Watchdog"',)] == "null"
    inhibit = config["inhibit_rules"][0]
    assert inhibit["equal"] == ["host", "container"]
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            assert hook["send_resolved"] is True
            assert hook["http_config"]["authorization"]["credentials_file"]
