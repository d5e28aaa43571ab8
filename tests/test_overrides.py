"""Live tests and the demo run the shipped configs: only addresses, secrets, intervals differ."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.harness import overrides

INTERVAL_KEYS = {"scrape_interval", "scrape_timeout", "evaluation_interval", "refresh_interval",
                 "for", "group_wait", "group_interval", "repeat_interval", "cooldown",
                 "window", "open_for", "open_for_max", "reset_after"}
ADDRESS_KEYS = {"host", "targets", "url", "credentials_file"}


def changed_keys(shipped, test) -> set[str]:
    return {str(path[-2] if isinstance(path[-1], int) else path[-1])
            for path in overrides.differences(shipped, test)}


def test_prometheus_differs_only_in_addresses_and_intervals() -> None:
    test = overrides.prometheus_config("unix:///d.sock", "127.0.0.1:1", "127.0.0.1:2",
                                       "127.0.0.1:3", swarm_url="unix:///swarm.sock")
    assert changed_keys(overrides.load(overrides.SHIPPED_PROMETHEUS), test) <= (
        INTERVAL_KEYS | ADDRESS_KEYS)
    hosts = {job["job_name"]: sd["host"] for job in test["scrape_configs"]
             for sd in job.get("docker_sd_configs", [])}
    assert hosts == {"containers": "unix:///d.sock", "swarm-tasks": "unix:///swarm.sock"}


def test_rules_differ_only_in_for_and_group_intervals() -> None:
    shipped = overrides.load(overrides.SHIPPED_RULES)
    # Both shipped files' groups: the remediation rules, then autofix's own and Watchdog.
    shipped["groups"] += overrides.load(overrides.SHIPPED_SELF_RULES)["groups"]
    assert changed_keys(shipped, overrides.rules()) == {"for", "interval"}
    assert overrides.rules(fast=False) == shipped


def test_alertmanager_differs_only_in_addresses_secrets_and_timers() -> None:
    test = overrides.alertmanager_config("http://127.0.0.1:9/webhook", Path("/tmp/token"))
    assert changed_keys(overrides.load(overrides.SHIPPED_ALERTMANAGER), test) <= (
        INTERVAL_KEYS | ADDRESS_KEYS)


def test_playbooks_differ_only_in_cooldowns_and_breaker_periods() -> None:
    shipped = overrides.load(overrides.SHIPPED_PLAYBOOKS)
    assert changed_keys(shipped, yaml.safe_load(overrides.playbooks())) <= INTERVAL_KEYS
    assert yaml.safe_load(overrides.playbooks(fast=False)) == shipped
