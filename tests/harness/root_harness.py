"""Harnesses that need root (`make compose-test`, `make stack-test`) run from a test as
`python -m tests.harness.<module>`, and the secrets' group ids both deployments share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.procs import require_binary

REPO = Path(__file__).resolve().parents[2]

# Mirrors docs/compose-secrets.sh and the table at the end of docker-compose.yml.
SECRET_GIDS = {"postgres_password": "61001", "autofix_db_password": "61002",
               "autofix_database_url": "61003", "autofix_webhook_token": "61004",
               "autofix_api_token": "61005", "grafana_admin_password": "61006",
               "grafana_db_password": "61007", "target_app_fault_token": "61008"}


def require_root(title: str) -> None:
    """Skip (fail in CI) unless root."""
    if os.geteuid() != 0:
        if os.environ.get("AUTOFIX_REQUIRE_COMPONENTS") == "1":
            pytest.fail(f"{title} needs root")
        pytest.skip(f"{title} needs root")


def run_root_harness(module: str, title: str, tools: tuple[str, ...], timeout_s: float,
                     args: tuple[str, ...] = ()) -> None:
    """`python -m module` (it needs root), failing with its PASS/FAIL summary."""
    require_root(title)
    for tool in tools:
        require_binary(tool)
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                            text=True, timeout=timeout_s, check=False)
    report = result.stdout[result.stdout.find(f"== {title} =="):]
    assert result.returncode == 0, (report or result.stdout[-6000:]) + result.stderr[-3000:]
