"""The ONLY differences between the shipped configs and what the live tests and demo run.

Allowed: addresses (docker host, receiver, Alertmanager, Prometheus), secrets (token
files) and time intervals. Every duration that gates detection or remediation (scrape
and evaluation intervals, `for:`, group_wait/group_interval/repeat_interval, playbook
cooldowns and breaker periods) is multiplied by TIME_SCALE, so the whole loop runs the
shipped logic ten times faster. Thresholds, expressions, matchers, labels, routes and
actions are never touched; tests/test_overrides.py proves it by diffing every file.
See docs/detection-budget.md for the budget each set of intervals gives.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SHIPPED_PROMETHEUS = REPO / "prometheus" / "prometheus.yml"
SHIPPED_RULES = REPO / "rules" / "alert_rules.yml"
SHIPPED_SELF_RULES = REPO / "rules" / "autofix_self.yml"  # autofix's own alerts, Watchdog
SHIPPED_ALERTMANAGER = REPO / "alertmanager" / "alertmanager.yml"
SHIPPED_PLAYBOOKS = REPO / "receiver" / "playbooks.yml"
FLEET_JOBS = REPO / "docs" / "examples" / "prometheus-fleet.yml"  # one job per Docker host

TIME_SCALE = 0.1
SCRAPE_INTERVAL = "1s"  # shipped 5s; the floor where a 1 s scrape still has room to time out
SCRAPE_TIMEOUT = "800ms"

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str | int | float) -> float:
    if isinstance(duration, int | float):
        return float(duration)
    return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(duration))


def scaled(duration: str | int | float, fast: bool = True, floor_s: float = 0.5) -> Any:
    """The duration times TIME_SCALE, as milliseconds Prometheus and Alertmanager accept.

    With fast=False the shipped value is kept: the benchmark's "shipped intervals" run."""
    if not fast:
        return duration
    value = max(seconds(duration) * TIME_SCALE, floor_s)
    return f"{round(value * 1000)}ms"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def prometheus_config(docker_url: str, receiver: str, alertmanager: str,
                      prometheus: str, fast: bool = True, swarm_url: str | None = None
                      ) -> dict[str, Any]:
    """Shipped prometheus.yml with addresses replaced and (fast) 1 s intervals.

    The `swarm-tasks` job asks `swarm_url` (a Swarm node's daemon) when given, else
    `docker_url` like every other docker_sd job."""
    config = copy.deepcopy(load(SHIPPED_PROMETHEUS))
    if fast:
        config["global"].update(scrape_interval=SCRAPE_INTERVAL, scrape_timeout=SCRAPE_TIMEOUT,
                                evaluation_interval=SCRAPE_INTERVAL)
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager]
    for job in config["scrape_configs"]:
        if fast and "scrape_interval" in job:  # a job's own (faster) interval: 1 s too
            job.update(scrape_interval=SCRAPE_INTERVAL, scrape_timeout=SCRAPE_TIMEOUT)
        for sd in job.get("docker_sd_configs", []):
            sd["host"] = swarm_url if swarm_url and job["job_name"] == "swarm-tasks" \
                else docker_url
            if fast:
                sd["refresh_interval"] = SCRAPE_INTERVAL
        for static in job.get("static_configs", []):
            static["targets"] = [{"autofix": receiver, "alertmanager": alertmanager,
                                  "prometheus": prometheus}[job["job_name"]]]
    return config


def fleet_prometheus_config(hosts: dict[str, dict[str, Any]], receiver: str, alertmanager: str,
                            prometheus: str, fast: bool = True) -> dict[str, Any]:
    """prometheus_config with its `containers` job replaced by docs/examples/
    prometheus-fleet.yml's per-host jobs, as the guide says to add a host: the example's
    jobs in order (the last one copied for more hosts), each with the host's name,
    docker_sd address and TLS files (`sd_url`, `ca`, `cert`, `key`) substituted; Prometheus
    shares the hosts' loopback, so host_networking_host is 127.0.0.1. The relabelling is
    the example's, untouched."""
    first = next(iter(hosts.values()))["sd_url"]
    config = prometheus_config(first, receiver, alertmanager, prometheus, fast)
    shipped = {job["job_name"]: job for job in config["scrape_configs"]}
    examples = load(FLEET_JOBS)
    jobs = []
    for index, (name, host) in enumerate(hosts.items()):
        job = copy.deepcopy(examples[min(index, len(examples) - 1)])
        job["job_name"] = f"containers-{name}"
        [sd] = job["docker_sd_configs"]
        sd.update(host=host["sd_url"], host_networking_host="127.0.0.1")
        sd["tls_config"] = {"ca_file": str(host["ca"]), "cert_file": str(host["cert"]),
                            "key_file": str(host["key"])}
        if fast:
            job.update(scrape_interval=SCRAPE_INTERVAL, scrape_timeout=SCRAPE_TIMEOUT)
            sd["refresh_interval"] = SCRAPE_INTERVAL
        jobs.append(job)
    config["scrape_configs"] = jobs + [job for name, job in shipped.items()
                                       if name != "containers"]
    return config


def rules(fast: bool = True) -> dict[str, Any]:
    """Shipped alert rules (both files' groups) with every `for:` scaled (and a group's
    own interval 1 s)."""
    config = copy.deepcopy(load(SHIPPED_RULES))
    config["groups"] += copy.deepcopy(load(SHIPPED_SELF_RULES))["groups"]
    for group in config["groups"]:
        if fast and "interval" in group:
            group["interval"] = SCRAPE_INTERVAL
        for rule in group["rules"]:
            if "for" in rule:
                # At least 2 test evaluations: `for: 4s` x 0.1 would fire on one slow scrape.
                rule["for"] = scaled(rule["for"], fast, floor_s=2 * seconds(SCRAPE_INTERVAL))
    return config


def alertmanager_config(receiver_url: str, token_file: Path, fast: bool = True
                        ) -> dict[str, Any]:
    """Shipped alertmanager.yml: webhook address and token file replaced, timers scaled."""
    config = copy.deepcopy(load(SHIPPED_ALERTMANAGER))

    def scale_route(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                route[key] = scaled(route[key], fast)
        for child in route.get("routes", []):
            scale_route(child)

    scale_route(config["route"])
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = receiver_url
            hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return config


_PLAYBOOK_DURATIONS = ("cooldown", "window", "open_for", "open_for_max", "reset_after")


def playbooks(fast: bool = True) -> str:
    """Shipped playbooks with cooldowns and breaker periods scaled."""
    config = copy.deepcopy(load(SHIPPED_PLAYBOOKS))
    for playbook in config["playbooks"]:
        if "cooldown" in playbook:
            playbook["cooldown"] = scaled(playbook["cooldown"], fast)
        breaker = playbook.get("circuit_breaker", {})
        for key in _PLAYBOOK_DURATIONS:
            if key in breaker:
                breaker[key] = scaled(breaker[key], fast)
    return yaml.safe_dump(config, sort_keys=False)


def differences(shipped: Any, test: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every leaf that differs: what tests/test_overrides.py checks is allowed."""
    if isinstance(shipped, dict) and isinstance(test, dict):
        keys = set(shipped) | set(test)
        return [p for k in sorted(keys, key=str)
                for p in differences(shipped.get(k), test.get(k), (*path, k))]
    if isinstance(shipped, list) and isinstance(test, list) and len(shipped) == len(test):
        return [p for i, (a, b) in enumerate(zip(shipped, test, strict=True))
                for p in differences(a, b, (*path, i))]
    return [] if shipped == test else [path]
