"""Harnesses that need root (`make compose-test`, `make stack-test`) run from a test as
`python -m tests.harness.<module>`, and the secrets' group ids both deployments share."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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


@dataclass(frozen=True)
class HarnessSpec:
    """One `python -m module` harness run (it needs root), failing with its PASS/FAIL
    summary."""
    module: str
    title: str
    tools: tuple[str, ...]
    timeout_s: float
    args: tuple[str, ...] = ()

    def start(self) -> HarnessRun:
        require_root(self.title)
        for tool in self.tools:
            require_binary(tool)
        return HarnessRun(self)


class HarnessRun:
    """A harness running in the background (each in its own namespace and dockerd, so
    several can run at once); check() waits for it and fails with its PASS/FAIL summary."""

    def __init__(self, spec: HarnessSpec) -> None:
        self.spec = spec
        self.deadline = time.monotonic() + spec.timeout_s
        # Files, not pipes: nobody reads them until check(). Closed by stop().
        self.out: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.err: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", spec.module, *spec.args], cwd=REPO,
                                     stdout=self.out, stderr=self.err, text=True)

    def wait(self, until: float) -> None:
        """Until it ends, its time is up (check() then kills it and fails) or `until`."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=max(0.0, min(until, self.deadline) - time.monotonic()))

    def check(self) -> None:
        try:
            returncode = self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()   # SIGTERM first: the harness removes its stack and dockerd
            raise
        self.out.seek(0)
        self.err.seek(0)
        stdout, stderr = self.out.read(), self.err.read()
        report = stdout[stdout.find(f"== {self.spec.title} =="):]
        assert returncode == 0, (report or stdout[-6000:]) + stderr[-3000:]

    def stop(self) -> None:
        """SIGTERM if it still runs (out of time, an interrupted session): the harness tears
        its stack down (up to 180 s, compose_stack.outer); then closes its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=200)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        self.err.close()


# The stack harnesses' e2e runs (tests/test_compose.py, tests/test_swarm_stack.py), by the
# key their tests' `stack_harness` mark names; given the session's `docker save` of images.
STACK_HARNESSES = {
    "compose docker compose": lambda images: HarnessSpec(
        "tests.harness.compose_stack", "make compose-test", ("dockerd", "haproxy", "unshare"),
        840, ("--compose", "docker compose", "--images", str(images))),
    "compose docker-compose": lambda images: HarnessSpec(
        "tests.harness.compose_stack", "make compose-test", ("dockerd", "haproxy", "unshare"),
        840, ("--compose", "docker-compose", "--images", str(images))),
    "swarm stack": lambda images: HarnessSpec(
        "tests.harness.swarm_stack", "make stack-test",
        ("dockerd", "docker", "haproxy", "unshare"), 1440, ("--images", str(images))),
}


class StackHarnesses:
    """The session's stack harness runs: each takes 3-4 minutes, nearly all of it waiting
    (image loads, health checks, alert intervals) in its own namespace and dockerd, so the
    ones the session selected start together. check(key) waits for that one, then for the
    others to end too (checked later, in their own tests): none of them loads the host
    while other tests run, some of which need its CPU (test_e2e.py's CPU spike)."""

    def __init__(self, images: Path, keys: list[str]) -> None:
        self.images = images
        self.runs: dict[str, HarnessRun] = {}
        for key in keys:
            # If it cannot start, check(key) tries again and skips or fails in its test.
            with contextlib.suppress(pytest.skip.Exception, pytest.fail.Exception):
                self.runs[key] = STACK_HARNESSES[key](images).start()

    def check(self, key: str) -> None:
        run = self.runs.pop(key, None) or STACK_HARNESSES[key](self.images).start()
        try:
            run.check()
        finally:
            run.stop()
            for other in self.runs.values():
                other.wait(until=run.deadline)   # within this test's own time

    def stop(self) -> None:
        for run in self.runs.values():
            run.stop()
        self.runs.clear()
