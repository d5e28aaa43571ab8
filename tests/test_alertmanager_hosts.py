"""The shipped alertmanager.yml in a fleet (#32), on a real Alertmanager 0.25: the same
container name on two Docker hosts is two groups, and a TargetDown on one host never
inhibits the other host's symptoms; with one host (no `host` label) it inhibits as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.harness import overrides
from tests.harness.alertmanager import am_alert, start_alertmanager
from tests.harness.procs import LOOPBACK, free_port, wait_for


def _alert(alertname: str, container: str, host: str | None) -> dict[str, Any]:
    body = am_alert(container, alertname=alertname,
                    starts=datetime.now(UTC) - timedelta(seconds=5))
    if host is not None:
        body["labels"]["host"] = host
    return body


def _key(alert: dict[str, Any]) -> tuple[str, str, str]:
    labels = alert["labels"]
    return labels["alertname"], labels.get("host", ""), labels["container"]


def test_hosts_are_grouped_apart_and_inhibit_only_their_own(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    # Nothing listens there: delivery fails, grouping and inhibition are what is checked.
    config = overrides.alertmanager_config(
        f"http://{LOOPBACK}:{free_port()}/webhook/alertmanager", token)
    manager = start_alertmanager(config, root=tmp_path / "am")
    try:
        manager.push([_alert("TargetDown", "app", "a"), _alert("HighErrorRate", "app", "a"),
                      _alert("TargetDown", "app", "b"), _alert("HighErrorRate", "app", "b"),
                      _alert("HighErrorRate", "web", "b"),
                      # One host, no host label: inhibited as before.
                      _alert("TargetDown", "solo", None), _alert("HighErrorRate", "solo", None)])

        def states() -> dict[tuple[str, str, str], list[str]]:
            return {_key(a): a["status"]["inhibitedBy"] for a in manager.alerts()}

        # Inhibition is marked when a group is flushed (group_wait): wait for the first.
        wait_for(lambda: len(states()) == 7 and states()[("HighErrorRate", "", "solo")], 30,
                 "the single-host symptom inhibited")
        inhibited = {key for key, by in states().items() if by}
        assert inhibited == {("HighErrorRate", "a", "app"), ("HighErrorRate", "b", "app"),
                             ("HighErrorRate", "", "solo")}

        # b's TargetDown gone: a's still inhibits a's symptom, b's symptom goes out.
        manager.push([{**_alert("TargetDown", "app", "b"),
                       "endsAt": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}])
        wait_for(lambda: not states().get(("HighErrorRate", "b", "app"), ["?"]), 30,
                 "b's symptom no longer inhibited")
        assert states()[("HighErrorRate", "a", "app")]

        groups = manager._request("GET", "/api/v2/alerts/groups")
        assert groups
        for group in groups:  # never two hosts in one group
            assert len({a["labels"].get("host", "") for a in group["alerts"]}) == 1, group
            assert len({a["labels"]["container"] for a in group["alerts"]}) == 1, group
    finally:
        manager.stop()
