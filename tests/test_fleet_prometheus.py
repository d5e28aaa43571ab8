"""The Prometheus side of a fleet (#32): docs/examples/prometheus-fleet.yml (one docker_sd
job per host) is valid for promtool, relabels exactly like the guide's `containers` job
plus `host`, and keeps `job="containers"` so the shipped rules and `autofix check-config`
see it as that job; every aggregation of the shipped rules keeps `host`.
The live loop through it is tests/test_e2e_fleet.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.ops.cli import main
from tests.harness.procs import require_binary

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples"
FLEET = EXAMPLES / "prometheus-fleet.yml"
CONTAINERS_JOB = EXAMPLES / "prometheus-containers-job.yml"
RULES = [REPO / "rules" / "alert_rules.yml", REPO / "rules" / "autofix_self.yml"]


def fleet_jobs() -> list[dict[str, Any]]:
    return list(yaml.safe_load(FLEET.read_text()))


def test_promtool_accepts_the_fleet_jobs_in_place_of_the_containers_job(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    config["scrape_configs"] = fleet_jobs() + [
        job for job in config["scrape_configs"] if job["job_name"] != "containers"]
    config["rule_files"] = [str(path) for path in RULES]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run([require_binary("promtool"), "check", "config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_host_job_relabels_like_the_containers_job_plus_host() -> None:
    """Written once (a YAML anchor) and compared here, so the hosts cannot drift from the
    guide's containers job (prometheus-containers-job.yml)."""
    [containers] = yaml.safe_load(CONTAINERS_JOB.read_text())
    jobs = fleet_jobs()
    assert len(jobs) >= 2
    for job in jobs:
        host = re.fullmatch(r"containers-([a-z0-9][a-z0-9_.-]{0,62})", job["job_name"])
        assert host, job["job_name"]  # a host name AUTOFIX_DOCKER_HOSTS accepts
        *shared, host_rule, job_rule = job["relabel_configs"]
        assert shared == containers["relabel_configs"], job["job_name"]
        assert host_rule == {"source_labels": ["job"], "regex": "containers-(.+)",
                             "target_label": "host"}
        assert job_rule == {"target_label": "job", "replacement": "containers"}
        assert (job["scrape_interval"], job["scrape_timeout"]) == (
            containers["scrape_interval"], containers["scrape_timeout"])
        [sd] = job["docker_sd_configs"]  # one daemon per job: the job names the host
        [shipped_sd] = containers["docker_sd_configs"]
        assert sd["host"].startswith("https://")  # tcp:// would ignore tls_config
        assert set(sd["tls_config"]) == {"ca_file", "cert_file", "key_file"}
        assert sd["host_networking_host"] in sd["host"]
        own = ("host", "tls_config", "host_networking_host")
        assert {k: v for k, v in sd.items() if k not in own} == {
            k: v for k, v in shipped_sd.items() if k not in own}


def test_every_aggregation_of_the_rules_keeps_host() -> None:
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                for clause in re.findall(r"\bby\s*\(([^)]*)\)", rule["expr"]):
                    labels = {label.strip() for label in clause.split(",")}
                    if "container" in labels and path.name == "alert_rules.yml":
                        assert "host" in labels, (rule["alert"], clause)
                assert "without" not in rule["expr"], rule["alert"]


def test_check_config_reads_the_host_jobs_as_the_containers_job(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The rules select job="containers": check-config follows the relabelled job, holds
    the host jobs to the timing contract, and knows they carry `host`."""
    jobs = fleet_jobs() + yaml.safe_load((EXAMPLES / "prometheus-autofix-job.yml").read_text())
    config = tmp_path / "prometheus.yml"
    rules = [arg for path in RULES for arg in ("--rules", str(path))]
    playbooks = str(REPO / "receiver" / "playbooks.yml")

    def check() -> tuple[int, str]:
        config.write_text(yaml.safe_dump({"global": {"scrape_interval": "15s",
                                                     "evaluation_interval": "15s"},
                                          "scrape_configs": jobs}))
        code = main(["check-config", playbooks, *rules, "--prometheus-config", str(config)])
        return code, capsys.readouterr().err

    code, err = check()
    assert code == 0, err
    assert 'job="containers"' not in err  # not "never fires there"
    jobs[1].pop("scrape_interval")  # one host's job at the global 15s: one failed scrape
    jobs[1].pop("scrape_timeout")   # would fire TargetDown, refused
    code, err = check()
    assert code == 1 and "TargetDown" in err and "job containers" in err, err


@pytest.mark.parametrize("fast", [False, True])
def test_the_live_loop_runs_the_example_jobs_with_addresses_substituted(fast: bool) -> None:
    """tests/test_e2e_fleet.py and bench/fleet_hosts.py run these jobs: per host only the
    job's name (the host's), the daemon's address, the TLS files and, fast, intervals."""
    from tests.harness import overrides

    hosts = {name: {"sd_url": f"https://127.0.0.1:{port}", "ca": "/t/ca.pem",
                    "cert": "/t/cert.pem", "key": "/t/key.pem"}
             for name, port in (("a", 1), ("b", 2), ("c", 3))}
    config = overrides.fleet_prometheus_config(hosts, "r:1", "am:1", "p:1", fast)
    jobs = [job for job in config["scrape_configs"] if job["job_name"].startswith("containers")]
    assert [job["job_name"] for job in jobs] == ["containers-a", "containers-b", "containers-c"]
    examples = fleet_jobs()
    allowed = {("job_name",), ("docker_sd_configs", 0, "host"),
               ("docker_sd_configs", 0, "host_networking_host"),
               *(("docker_sd_configs", 0, "tls_config", key)
                 for key in ("ca_file", "cert_file", "key_file"))}
    if fast:
        allowed |= {("scrape_interval",), ("scrape_timeout",),
                    ("docker_sd_configs", 0, "refresh_interval")}
    for index, job in enumerate(jobs):
        example = examples[min(index, len(examples) - 1)]  # a third host: a copied job
        assert set(overrides.differences(example, job)) <= allowed, job["job_name"]
    assert not any(job["job_name"] == "containers" for job in config["scrape_configs"])
