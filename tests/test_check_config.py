"""check-config catches everything, all at once, with file:line:column.

tests/check_config_corpus/NN-name.yml are broken playbook files; NN-name.expected holds the
errors check-config must report for each, in order, one per line as
`line:column: path: start of the message`. The README's own YAML blocks must pass.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.cli import main
from receiver.playbooks.rules_check import template_refs

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "check_config_corpus"
RULES = ["--rules", "rules/alert_rules.yml", "--prometheus-config", "prometheus/prometheus.yml"]
CASES = sorted(CORPUS.glob("*.yml"))


@pytest.fixture(autouse=True)
def _no_autofix_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.chdir(REPO)  # messages name the rules file as given: rules/alert_rules.yml
    for name in [n for n in os.environ if n.startswith("AUTOFIX_")]:
        monkeypatch.delenv(name)


def check(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
    code = main(["check-config", str(path), *extra])
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()]


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 20
    assert all(case.with_suffix(".expected").is_file() for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_each_broken_file_reports_every_expected_error_at_once(
        case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = [line for line in case.with_suffix(".expected").read_text().splitlines()
                if line.strip()]
    code, lines = check(case, capsys, *RULES)
    assert code == 1
    errors = [line for line in lines if not re.fullmatch(rf"{re.escape(str(case))}: \d+ errors",
                                                          line)]
    assert len(errors) == len(expected), "\n".join(lines)
    for want, got in zip(expected, errors, strict=True):
        position, _, message = want.partition(": ")
        assert got.startswith(f"{case}:{position}: "), (want, got)
        assert message in got, (want, got)
    assert not any("<unicode string>" in line for line in lines)


def test_a_yaml_error_is_reported_once_with_the_real_file_name(
        capsys: pytest.CaptureFixture[str]) -> None:
    case = CORPUS / "01-yaml-syntax.yml"
    code, lines = check(case, capsys)
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"{case}:4:5: invalid YAML") and "line 3, column 15" in lines[0]


def test_without_rules_the_label_check_is_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = check(CORPUS / "12-target-typo.yml", capsys, "--no-rules")
    assert code == 0, lines


def test_the_rules_are_found_beside_the_playbooks_by_default() -> None:
    done = subprocess.run([sys.executable, "-m", "receiver.cli", "check-config",
                           "receiver/playbooks.yml"], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "checked against" in done.stdout and "rules/alert_rules.yml" in done.stdout
    typo = subprocess.run([sys.executable, "-m", "receiver.cli", "check-config",
                           str(CORPUS / "12-target-typo.yml")], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    # tests/check_config_corpus/ has no rules/ beside it or one level up: nothing to check
    assert typo.returncode == 0, typo.stderr


def test_every_yaml_block_of_the_readme_passes(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    playbook_blocks = [b for b in blocks if "playbooks:" in b]
    assert playbook_blocks
    for index, block in enumerate(playbook_blocks):
        path = tmp_path / f"readme-{index}.yml"
        path.write_text(block)
        code, lines = check(path, capsys, *RULES)
        assert code == 0, "\n".join(lines)


def test_on_is_a_string_key_and_yaml_12_booleans() -> None:
    from receiver.actions.builtin import build_registry
    from receiver.playbooks.config import parse_playbooks

    parsed = parse_playbooks("playbooks:\n  - name: a\n    matchers: ['a=\"b\"']\n"
                             "    on: resolved\n    dry_run: true\n    actions: [notify]\n",
                             build_registry().params_models())
    assert parsed.playbooks[0].on == "resolved" and parsed.playbooks[0].dry_run is True


def test_template_refs_tolerate_get_default_and_defined() -> None:
    assert template_refs("{{ labels.get('container') or labels.alertname }}") == [
        ("labels", "alertname")]
    assert template_refs("{{ labels.x | default('y') }}{% if labels.z is defined %}"
                         "{{ labels.z }}{% endif %}") == [("labels", "z")]
    assert template_refs("{{ labels['a'] }} {{ annotations.summary }}") == [
        ("labels", "a"), ("annotations", "summary")]


@pytest.mark.parametrize(("expr", "labels"), [
    ("sum by (container, service) (rate(x[1m])) > 0.2", {"container", "service"}),
    ("(\n  sum by (a) (x)\n  / sum by (a) (y)\n) > 0.2 and sum by (a) (y) > 1", {"a"}),
    ("sum(rate(x[1m])) by (a, b) > 1", {"a", "b"}),
    ("histogram_quantile(0.95, sum by (a, le) (rate(x_bucket[1m]))) > 0.5", {"a"}),
    ("count(up) == 0", set()),
    ("vector(1)", set()),
    ("up == 0", None),  # the metric's own labels: unknown without scraping
    ("topk(3, x)", None),
    ("sum without (a) (x)", None),
    ("x or sum by (a) (y)", None),
])
def test_labels_an_aggregated_alert_keeps(expr: str, labels: set[str] | None) -> None:
    from receiver.playbooks.rules_check import result_labels

    assert result_labels(expr) == labels


@pytest.mark.parametrize(("expr", "jobs"), [
    ('up{job="swarm-tasks"} == 0', {"swarm-tasks"}),
    ('rate(x{job="a", route!~"/m"}[1m]) > 1 and y{job = "b"} > 2', {"a", "b"}),
    ('up{job=~"swarm-.*"} == 0', None),  # a regex may match any job
    ('up{job="a"} == 0 or up', None),
    ('up{job="a"} * on (instance) group_right node_info', None),
    ("up == 0", None),
])
def test_jobs_an_expression_pins(expr: str, jobs: set[str] | None) -> None:
    from receiver.playbooks.rules_check import selected_jobs

    assert selected_jobs(expr) == jobs


SWARM_PLAYBOOK = """playbooks:
  - name: swarm
    matchers: ['alertname="{alert}"']
    target: "{{{{ labels.service }}}} {{{{ labels.{label} }}}}"
    actions: [notify]
"""


@pytest.mark.parametrize("label", ["task", "node", "container"])
def test_swarm_task_down_carries_the_swarm_tasks_job_labels(
        label: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "playbooks.yml"
    path.write_text(SWARM_PLAYBOOK.format(alert="SwarmTaskDown", label=label))
    assert check(path, capsys, *RULES) == (0, [])
    # TargetDown pins job="containers", whose targets have no task or node.
    path.write_text(SWARM_PLAYBOOK.format(alert="TargetDown", label=label))
    code, errors = check(path, capsys, *RULES)
    assert (code != 0) == bool(errors) == (label != "container"), errors
    assert all(f"labels.{label} is not carried by alert(s) TargetDown" in e for e in errors)
