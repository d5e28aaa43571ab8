"""Process plumbing shared by every component: free ports, readiness waits, clean stops."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


def components_required() -> bool:
    """CI sets AUTOFIX_REQUIRE_COMPONENTS=1: a missing component is then a failure, not a skip."""
    return os.environ.get("AUTOFIX_REQUIRE_COMPONENTS", "") not in ("", "0", "false")


def require_binary(name: str) -> str:
    """Path of an executable, or skip (fail in CI) when it is not installed."""
    candidates = (f"/usr/sbin/{name}", f"/usr/lib/postgresql/15/bin/{name}")
    path = shutil.which(name) or next((p for p in candidates if os.path.exists(p)), None)
    if path is None:
        import pytest  # here, not at the top: `make demo-down` must work without pytest

        message = f"{name} is not installed (see .ci/run for the packages)"
        if components_required():
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # readiness probes fail until the thing is up
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last_error!r})")


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def receiver_up(url: str, timeout: float = 3.0, context: ssl.SSLContext | None = None) -> bool:
    """A receiver answers /readyz with its database reachable. Docker may be unreachable
    (then /readyz is 503 naming it): many tests run a receiver without a daemon."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout,
                                    context=context) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        body = error.read()
    except (urllib.error.URLError, OSError):
        return False
    try:
        return bool(json.loads(body).get("database") == "ok")
    except (ValueError, AttributeError):
        return False


class ManagedProcess:
    """A child process with its log in a file; stop() sends SIGTERM, then SIGKILL."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 (owned by the child for its lifetime)
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
