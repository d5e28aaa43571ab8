"""A real Alertmanager 0.25 on loopback, with its API wrapped for the tests."""

from __future__ import annotations

import json
import tempfile
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from .procs import LOOPBACK, ManagedProcess, free_port, http_ok, require_binary, wait_for


class Alertmanager:
    def __init__(self, root: Path, config: dict[str, Any], peers: list[str] | None = None,
                 cluster_port: int | None = None, peer_timeout: str = "2s") -> None:
        self.binary = require_binary("prometheus-alertmanager")
        self.root = root
        self.port = free_port()
        self.cluster_port = cluster_port
        self.url = f"http://{LOOPBACK}:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        argv = [self.binary, f"--config.file={self.config_path}",
                f"--storage.path={root / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}", "--log.level=debug"]
        if cluster_port is None:
            argv.append("--cluster.listen-address=")
        else:
            argv += [f"--cluster.listen-address={LOOPBACK}:{cluster_port}",
                     f"--cluster.advertise-address={LOOPBACK}:{cluster_port}",
                     f"--cluster.peer-timeout={peer_timeout}", "--cluster.gossip-interval=50ms",
                     "--cluster.pushpull-interval=1s"]
            argv += [f"--cluster.peer={peer}" for peer in peers or []]
        self.process = ManagedProcess(argv, root / "alertmanager.log")

    def start(self) -> Alertmanager:
        self.process.start()
        wait_for(lambda: http_ok(f"{self.url}/-/ready"), 30, "alertmanager")
        return self

    def stop(self) -> None:
        self.process.stop()

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def push(self, alerts: list[dict[str, Any]]) -> None:
        """POST /api/v2/alerts, the way Prometheus sends them."""
        self._request("POST", "/api/v2/alerts", alerts)

    def silence(self, matchers: list[dict[str, Any]], minutes: int = 60,
                comment: str = "test") -> str:
        import datetime as dt

        now = dt.datetime.now(dt.UTC)
        body = {"matchers": matchers, "startsAt": now.isoformat(),
                "endsAt": (now + dt.timedelta(minutes=minutes)).isoformat(),
                "createdBy": "tests", "comment": comment}
        return str(self._request("POST", "/api/v2/silences", body)["silenceID"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/api/v2/alerts"))

    def metric(self, name: str) -> float:
        """Sum of one metric's samples from /metrics (e.g. alertmanager_notifications_total)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total


def webhook_config(url: str, token: str | None, group_wait: str = "1s",
                   group_interval: str = "2s", repeat_interval: str = "1h",
                   max_alerts: int = 0, group_by: list[str] | None = None,
                   token_file: Path | None = None) -> dict[str, Any]:
    """A minimal config routing everything to the receiver's webhook."""
    http_config: dict[str, Any] = {}
    if token_file is not None:
        http_config = {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}
    elif token is not None:
        http_config = {"authorization": {"type": "Bearer", "credentials": token}}
    webhook: dict[str, Any] = {"url": url, "send_resolved": True, "max_alerts": max_alerts}
    if http_config:
        webhook["http_config"] = http_config
    return {
        "route": {"receiver": "autofix", "group_by": group_by or ["alertname", "container"],
                  "group_wait": group_wait, "group_interval": group_interval,
                  "repeat_interval": repeat_interval},
        "receivers": [{"name": "autofix", "webhook_configs": [webhook]}],
    }


def start_alertmanager(config: dict[str, Any], root: Path | None = None,
                       peers: list[str] | None = None, cluster: bool = False,
                       peer_timeout: str = "2s") -> Alertmanager:
    """`peer_timeout` "0s": every member of a cluster sends at once, none waits for the
    other's notification log (the duplicate delivery an HA pair makes under load)."""
    root = root or Path(tempfile.mkdtemp(prefix="autofix-am-"))
    return Alertmanager(root, config, peers, free_port() if cluster else None,
                        peer_timeout).start()


def am_alert(container: str, *, alertname: str = "TargetDown", starts: datetime,
             ends: datetime | None = None) -> dict[str, Any]:
    """One alert as Alertmanager's API takes it (POST /api/v2/alerts)."""
    body: dict[str, Any] = {
        "labels": {"alertname": alertname, "container": container, "severity": "critical"},
        "annotations": {"summary": f"{container} down"},
        "startsAt": starts.isoformat(), "generatorURL": "http://127.0.0.1:9090/graph",
    }
    if ends is not None:
        body["endsAt"] = ends.isoformat()
    return body
