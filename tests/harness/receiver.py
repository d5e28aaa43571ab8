"""`autofix serve` as a real process (gunicorn, N workers) on a free loopback port."""

from __future__ import annotations

import os
import signal
import ssl
import sys
import tempfile
from pathlib import Path

from .procs import LOOPBACK, ManagedProcess, free_port, receiver_up, require_binary, wait_for


class Receiver:
    def __init__(self, database_url: str, root: Path, workers: int = 1,
                 env: dict[str, str] | None = None, port: int | None = None,
                 hostname: str | None = None) -> None:
        self.root = root
        self.hostname = hostname
        self.port = port or free_port()
        cert = (env or {}).get("AUTOFIX_TLS_CERT_FILE")
        # TLS (a self-signed certificate for 127.0.0.1): clients trust that certificate.
        self.tls = ssl.create_default_context(cafile=cert) if cert else None
        self.url = f"{'https' if cert else 'http'}://{LOOPBACK}:{self.port}"
        self.workers = workers
        root.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "AUTOFIX_DATABASE_URL": database_url,
            "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics"),
            "AUTOFIX_RUNNER_POLL_S": "0.1",
            **(env or {}),
        }
        self.log_path = root / "receiver.log"
        self.process: ManagedProcess | None = None

    def start(self, timeout: float = 60) -> Receiver:
        argv = [sys.executable, "-m", "receiver.ops.cli", "serve", "--bind",
                f"{LOOPBACK}:{self.port}", "--workers", str(self.workers)]
        if self.hostname is not None:
            # A host of its own: a private UTS namespace (the network stays shared, so it
            # still listens on loopback). unshare execs in place: the pid stays the master's.
            argv = [require_binary("unshare"), "--uts", "sh", "-c",
                    'hostname "$0" && exec "$@"', self.hostname, *argv]
        self.process = ManagedProcess(argv, self.log_path, env=self.env).start()
        try:
            wait_for(lambda: self._alive() and receiver_up(self.url, context=self.tls), timeout,
                     "autofix serve")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.process.log_tail()}") from None
        return self

    def _alive(self) -> bool:
        if self.process is None or not self.process.alive():
            tail = self.process.log_tail() if self.process else ""
            raise RuntimeError(f"autofix serve exited:\n{tail}")
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=40)

    def kill(self) -> None:
        """SIGKILL the whole process group: master and workers die mid-whatever."""
        if self.process is not None and self.process.proc is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.proc.wait(10)
            self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_receiver(database_url: str, workers: int = 1, env: dict[str, str] | None = None,
                   root: Path | None = None, hostname: str | None = None) -> Receiver:
    """`hostname`: run it as another host (its own UTS namespace, `unshare` needs root)."""
    root = root or Path(tempfile.mkdtemp(prefix="autofix-receiver-"))
    return Receiver(database_url, root, workers, env, hostname=hostname).start()
