"""A real Prometheus for tests, on a free loopback port with its own storage dir.

    prom = start_prometheus(tmp_path, config, [RULES])   # config: YAML text or dict
    prom.query('up{job="containers"}'); prom.alerts(); prom.stop()

`rule_files` replaces whatever the config lists (absolute paths, so the config can be
written anywhere).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.harness.procs import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    http_ok,
    require_binary,
    wait_for,
)

__all__ = ["Prometheus", "load_shipped_config", "start_prometheus"]

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "prometheus" / "prometheus.yml"
START_TIMEOUT_S = 30.0


def load_shipped_config() -> dict[str, Any]:
    """The shipped prometheus.yml as a dict, for tests to override addresses/intervals."""
    return yaml.safe_load(SHIPPED_CONFIG.read_text())


@dataclass
class Prometheus:
    port: int
    proc: ManagedProcess
    config_path: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} failed: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (each item has `metric` and `value`)."""
        return list(self._get("/api/v1/query", {"query": expr})["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing), each with labels, annotations and state."""
        return list(self._get("/api/v1/alerts")["alerts"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/targets")["activeTargets"])

    def reload(self) -> None:
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        self.proc.stop()


def start_prometheus(workdir: Path, config_yaml: str | dict[str, Any],
                     rule_files: list[Path], port: int | None = None) -> Prometheus:
    binary = require_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(config_yaml) if isinstance(config_yaml, str) else dict(config_yaml)
    config["rule_files"] = [str(Path(p).resolve()) for p in rule_files]
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = port or free_port()
    proc = ManagedProcess([
        binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}", "--web.enable-lifecycle",
        "--log.level=warn",
    ], workdir / "prometheus.log").start()
    prom = Prometheus(port=port, proc=proc, config_path=config_path)
    try:
        wait_for(lambda: http_ok(f"{prom.url}/-/ready"), START_TIMEOUT_S, "prometheus")
    except TimeoutError as exc:
        tail = proc.log_tail()
        proc.stop()
        raise TimeoutError(f"{exc}\n--- prometheus log ---\n{tail}") from None
    return prom
