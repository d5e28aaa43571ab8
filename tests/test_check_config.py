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

from receiver.ops.cli import main
from receiver.playbooks.rules_check import template_refs

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "check_config_corpus"
RULES = ["--rules", "rules/alert_rules.yml", "--rules", "rules/autofix_self.yml",
         "--prometheus-config", "prometheus/prometheus.yml"]
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
    code, lines = check(case, capsys, "--no-rules")
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"{case}:4:5: invalid YAML") and "line 3, column 15" in lines[0]


def test_without_rules_the_label_check_is_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = check(CORPUS / "12-target-typo.yml", capsys, "--no-rules")
    assert code == 0, lines


def test_the_rules_are_found_beside_the_playbooks_by_default() -> None:
    done = subprocess.run([sys.executable, "-m", "receiver.ops.cli", "check-config",
                           "receiver/playbooks.yml"], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "checked against" in done.stdout and "rules/alert_rules.yml" in done.stdout
    assert "rules/autofix_self.yml" in done.stdout and "prometheus/prometheus.yml" in done.stdout
    typo = subprocess.run([sys.executable, "-m", "receiver.ops.cli", "check-config",
                           str(CORPUS / "12-target-typo.yml")], capture_output=True, text=True,
                          cwd=CORPUS, timeout=60)
    # tests/check_config_corpus/ has no rules/ beside it, one level up or in the working
    # directory: said, not skipped
    assert typo.returncode == 2, typo.stderr
    assert "no Prometheus rules found" in typo.stderr and "--no-rules" in typo.stderr


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


# --- the timing contract (receiver/playbooks/timing_check.py, docs/detection-budget.md) ---

def _prometheus_yml(tmp_path: Path, global_interval: str = "15s",
                    strip: tuple[str, ...] = ("containers",)) -> Path:
    """The shipped prometheus.yml with a global scrape_interval and the jobs in `strip`
    losing their own intervals, as the issue's SRE copied the containers job."""
    import yaml

    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": global_interval, "evaluation_interval": "15s"}
    for job in config["scrape_configs"]:
        if job["job_name"] in strip:
            job.pop("scrape_interval", None)
            job.pop("scrape_timeout", None)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


SHIPPED = REPO / "receiver" / "playbooks.yml"
SHIPPED_RULES = ["--rules", "rules/alert_rules.yml", "--rules", "rules/autofix_self.yml"]


def test_a_15s_global_interval_fails_on_target_down_naming_job_and_both_numbers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _prometheus_yml(tmp_path)
    code, lines = check(SHIPPED, capsys, *SHIPPED_RULES, "--prometheus-config", str(config))
    errors = [line for line in lines if not line.startswith("warning:")
              and not line.endswith("errors")]
    assert code == 1, lines
    [error] = errors
    assert "TargetDown" in error and "ONE failed scrape of job containers" in error
    assert "for: 4s" in error and "scrape_interval 15s" in error
    assert "scrape_timeout 10s" in error and "Fix: set the rule's for: to at least 25s" in error


def test_the_shipped_configs_pass_the_timing_contract(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = check(SHIPPED, capsys, *RULES)
    assert code == 0, lines
    assert [line for line in lines if "skipped" not in line] == []


@pytest.mark.parametrize("swarm_enabled", [False, True])
def test_the_disabled_swarm_playbook_only_warns(
        swarm_enabled: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    if swarm_enabled:
        monkeypatch.setenv("AUTOFIX_SWARM_ENABLED", "true")
    config = _prometheus_yml(tmp_path, strip=("swarm-tasks",))
    code, lines = check(SHIPPED, capsys, *SHIPPED_RULES, "--prometheus-config", str(config))
    about = [line for line in lines if "SwarmTaskDown" in line]
    assert about and all("ONE failed scrape of job swarm-tasks" in line for line in about)
    if swarm_enabled:
        assert code == 1 and not any(line.startswith("warning:") for line in about), lines
    else:
        assert code == 0 and all(line.startswith("warning:") for line in about), lines


def test_a_job_the_prometheus_config_does_not_scrape_is_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    config = yaml.safe_load(_prometheus_yml(tmp_path, "2s", strip=()).read_text())
    config["scrape_configs"] = [j for j in config["scrape_configs"]
                                if j["job_name"] != "swarm-tasks"]
    path = tmp_path / "no-swarm.yml"
    path.write_text(yaml.safe_dump(config))
    code, lines = check(SHIPPED, capsys, *SHIPPED_RULES, "--prometheus-config", str(path))
    assert code == 0, lines
    assert any(line.startswith("warning:") and 'job="swarm-tasks"' in line
               and "can never fire" in line for line in lines), lines


@pytest.mark.parametrize(("expr", "for_s", "group_s", "scrape", "errors"), [
    # up == 0: a failed scrape is visible for < interval + timeout; for: rounded up to
    # whole evaluations must reach it.
    ('up{job="a"} == 0', 4, 2, (2, 1.5), 0),    # the shipped TargetDown: 4 >= 3.5
    ('up{job="a"} == 0', 4, 2, (2, 2), 0),      # 4 >= 4: exactly on the boundary
    ('up{job="a"} == 0', 4, 2, (3, 1.5), 1),    # 4 < 4.5
    ('up{job="a"} == 0', 3, 2, (2, 1.5), 0),    # for 3s at 2s evaluations holds 4s
    ('up{job="a"} == 0', 0, 2, (2, 1.5), 1),    # no for: fires at the first evaluation
    ('up{job="a"} == 0', 30, 15, (15, 10), 0),  # a 15s setup: for 30s >= 25s
    ('up{job="a"} == 0', 15, 15, (15, 10), 1),  # 15s < 25s
    ('absent(x{job="a"})', 4, 2, (15, 10), 1),  # a failed scrape marks x stale
    ('x{job="a"} unless y{job="a"}', 4, 2, (15, 10), 1),
    ('min_over_time(up{job="a"}[10s]) == 0', 20, 5, (5, 4), 1),  # 20 < 5 + 4 + 10
    ('min_over_time(up{job="a"}[15s]) == 0', 25, 5, (5, 4), 0),  # 25 >= 5 + 4 + 15
    # Not failure-sensitive: a failed scrape makes the series missing, not true.
    ('rate(x{job="a"}[1m]) > 1', 0, 15, (15, 10), 0),
    # Range windows: 3 scrape intervals, so one failed scrape leaves 2 samples.
    ('rate(x{job="a"}[30s]) > 1', 60, 15, (15, 10), 1),
    ('rate(x{job="a"}[45s]) > 1', 60, 15, (15, 10), 0),
    ('deriv(x{job="a"}[2m]) > 1', 60, 15, (60, 10), 1),
    ('up{job="a"} == 0 # job="up" in a comment and "up" in a string: {x="up"}', 4, 2,
     (2, 1.5), 0),
])
def test_the_timing_contract_on_both_sides_of_its_boundary(
        expr: str, for_s: float, group_s: float, scrape: tuple[float, float],
        errors: int) -> None:
    from receiver.playbooks.timing_check import JobTiming, PrometheusTiming, timing_problems

    timing = PrometheusTiming("p.yml", 60.0, {"a": JobTiming(*scrape), "b": JobTiming(60, 10)})
    problems = timing_problems("R", "r.yml:1", expr, for_s, group_s, timing)
    assert [p.severity for p in problems] == ["error"] * errors, problems


def test_an_unpinned_selector_is_checked_against_every_job() -> None:
    from receiver.playbooks.timing_check import JobTiming, PrometheusTiming, timing_problems

    timing = PrometheusTiming("p.yml", 5.0, {"fast": JobTiming(2, 1.5),
                                             "slow": JobTiming(15, 10)})
    [problem] = timing_problems("R", "r.yml:1", "up == 0", 4, None, timing)
    assert "job slow" in problem.message and "evaluation_interval" in problem.message


def test_prometheus_inheritance_of_intervals(tmp_path: Path) -> None:
    from receiver.playbooks.timing_check import JobTiming, load_prometheus_timing

    config = {"global": {"scrape_interval": "5s"},
              "scrape_configs": [{"job_name": "a"}, {"job_name": "b", "scrape_interval": "1m"},
                                 {"job_name": "c", "scrape_interval": "2s"}]}
    timing = load_prometheus_timing(tmp_path / "p.yml", config)
    # Global timeout: the default 10s, capped at the global interval; a job's inherited
    # timeout is capped at its own interval.
    assert timing.jobs == {"a": JobTiming(5, 5), "b": JobTiming(60, 5), "c": JobTiming(2, 2)}
    assert timing.evaluation_interval_s == 60
    assert load_prometheus_timing(tmp_path / "p.yml", {}).jobs == {}


def test_a_playbook_drafted_elsewhere_is_checked_against_the_checkout_it_is_run_from(
        tmp_path: Path) -> None:
    """`autofix check-config /tmp/new.yml` from a checkout's top finds ./rules (the layout
    the README's examples are checked in)."""
    draft = tmp_path / "new.yml"
    draft.write_text(SHIPPED.read_text())
    done = subprocess.run([sys.executable, "-m", "receiver.ops.cli", "check-config", str(draft)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{REPO}/rules/alert_rules.yml" in done.stdout


def test_no_rules_found_is_an_error_unless_no_rules(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "playbooks.yml"
    path.write_text(SHIPPED.read_text())
    code = main(["check-config", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "no Prometheus rules found" in err and "--no-rules" in err
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "alert_rules.yml").write_text(
        (REPO / "rules" / "alert_rules.yml").read_text())
    code = main(["check-config", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "no prometheus.yml found" in err
    assert main(["check-config", str(path), "--no-rules"]) == 0


def test_the_host_layout_of_the_guide_is_found_by_default(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """/etc/autofix/playbooks.yml → /etc/prometheus/autofix_rules.yml, its self-alerts
    file and prometheus.yml (docs/deploy.md)."""
    etc = tmp_path / "etc"
    (etc / "autofix").mkdir(parents=True)
    (etc / "prometheus").mkdir()
    (etc / "autofix" / "playbooks.yml").write_text(SHIPPED.read_text())
    for source, name in (("alert_rules.yml", "autofix_rules.yml"),
                         ("autofix_self.yml", "autofix_self_rules.yml")):
        (etc / "prometheus" / name).write_text((REPO / "rules" / source).read_text())
    _prometheus_yml(etc / "prometheus")
    code = main(["check-config", str(etc / "autofix" / "playbooks.yml")])
    captured = capsys.readouterr()
    assert code == 1 and "TargetDown" in captured.err, captured.err
    config = etc / "prometheus" / "prometheus.yml"
    config.write_text((REPO / "prometheus" / "prometheus.yml").read_text())
    assert main(["check-config", str(etc / "autofix" / "playbooks.yml")]) == 0
    out = capsys.readouterr().out
    assert "autofix_rules.yml" in out and "autofix_self_rules.yml" in out
    assert str(config) in out


def test_the_guides_example_jobs_pass_at_a_15s_global_interval(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/examples/' two scrape jobs in a Prometheus scraping every 15s: the contract
    holds (they keep their own intervals); only the disabled Swarm playbook warns (its
    job is not in the guide)."""
    import yaml

    examples = REPO / "docs" / "examples"
    jobs = [job for name in ("prometheus-containers-job.yml", "prometheus-autofix-job.yml")
            for job in yaml.safe_load((examples / name).read_text())]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "15s",
                                                 "evaluation_interval": "15s"},
                                      "scrape_configs": jobs}))
    code, lines = check(SHIPPED, capsys, *SHIPPED_RULES, "--prometheus-config", str(config))
    assert code == 0, lines
    assert lines and all(line.startswith("warning:") and "swarm" in line for line in lines)
    for job in jobs:  # without its own intervals, the containers job is refused
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "15s"},
                                      "scrape_configs": jobs}))
    code, lines = check(SHIPPED, capsys, *SHIPPED_RULES, "--prometheus-config", str(config))
    assert code == 1 and any("TargetDown" in line for line in lines), lines
