"""The processes a benchmark needs: PostgreSQL, autofix serve, alerta-server (own venv).

Everything started here is stopped by `Stack.close()`, which `bench.run` always calls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, http_ok, receiver_up, wait_for

__all__ = ["ALERTA_VERSION_SPEC", "Stack", "alerta_venv"]

ROOT = Path(__file__).resolve().parent.parent
ALERTA_VENV = ROOT / "bench" / ".alerta-venv"
ALERTA_VERSION_SPEC = "alerta-server==9.1.0"
WEBHOOK_TOKEN = "bench-webhook-token-7f3a"
API_TOKEN = "bench-api-token-1c9d"

# Bench alerts match no playbook, so the ack benchmark measures ingest (parse, dedup upsert,
# audit row, commit), not runs executing in the background.
NO_ACTION_PLAYBOOKS = """
playbooks:
  - name: restart-on-target-down
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    actions:
      - restart: {timeout_s: 10}
"""


def alerta_venv() -> tuple[Path | None, str]:
    """(python of alerta's own virtualenv, version) or (None, why it could not be made)."""
    python = ALERTA_VENV / "bin" / "python"
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(ALERTA_VENV)],
                              capture_output=True, text=True)
        if made.returncode != 0:
            return None, f"python -m venv failed: {made.stderr.strip()[-500:]}"
    probe = subprocess.run([str(python), "-c", "import alerta, gunicorn, psycopg2"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             ALERTA_VERSION_SPEC, "gunicorn==27.0.1", "psycopg2-binary"],
            capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return None, f"pip install {ALERTA_VERSION_SPEC} failed: {done.stderr.strip()[-800:]}"
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('alerta-server'))"],
        capture_output=True, text=True).stdout.strip()
    return python, version


class Server:
    def __init__(self, name: str, url: str, webhook: str, headers: dict[str, str],
                 process: ManagedProcess, workers: int) -> None:
        self.name = name
        self.url = url
        self.webhook = webhook
        self.headers = headers
        self.process = process
        self.workers = workers

    def pids(self) -> list[int]:
        """The master and its worker processes (for profilers)."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True,
                             text=True).stdout.split()
        return [self.process.pid, *map(int, out)]

    def all_pids(self, timeout_s: float = 30.0) -> list[int]:
        """pids() once every worker has forked: ready means one worker answers, and on a
        busy machine the others may still be booting."""
        deadline = time.monotonic() + timeout_s
        while len(pids := self.pids()) < self.workers + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        if len(pids) < self.workers + 1:
            raise RuntimeError(f"{self.name}: {len(pids) - 1} of {self.workers} workers "
                               f"after {timeout_s:.0f} s")
        return pids

    def stop(self) -> None:
        self.process.stop(timeout=40)


class Stack:
    """Owns every process a benchmark starts."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="autofix-bench-"))
        self.postgres: Any = None
        self.servers: list[Server] = []
        self.dockerd: Any = None

    # -- PostgreSQL ---------------------------------------------------------------------
    def start_postgres(self) -> Any:
        from tests.harness.postgres import start_postgres

        if self.postgres is None:
            self.postgres = start_postgres()
        return self.postgres

    def postgres_version(self) -> str:
        import psycopg2

        conn = psycopg2.connect(self.postgres.admin_dsn("postgres"))
        try:
            with conn.cursor() as cur:
                cur.execute("show server_version")
                return str(cur.fetchone()[0])
        finally:
            conn.close()

    # -- autofix -------------------------------------------------------------------------
    def start_autofix(self, name: str, database_url: str, workers: int,
                      env: dict[str, str] | None = None, playbooks: str = NO_ACTION_PLAYBOOKS,
                      source: Path | None = None) -> Server:
        """`source`: another checkout's tree to serve (e.g. an older commit, side by side
        with this one); the schema is this checkout's."""
        from receiver.store.migrate import upgrade

        upgrade(database_url)
        root = self.workdir / name
        root.mkdir(parents=True, exist_ok=True)
        playbook_path = root / "playbooks.yml"
        playbook_path.write_text(playbooks)
        port = free_port()
        full_env = {
            **os.environ,
            "AUTOFIX_DATABASE_URL": database_url,
            "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "AUTOFIX_API_TOKEN": API_TOKEN,
            "AUTOFIX_PLAYBOOKS": str(playbook_path),
            "AUTOFIX_DOCKER_HOST": "unix:///nonexistent-bench.sock",
            "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics"),
            **({"PYTHONPATH": str(source)} if source is not None else {}),
            **(env or {}),
        }
        argv = [sys.executable, "-m", "receiver.ops.cli", "serve", "--bind", f"{LOOPBACK}:{port}",
                "--workers", str(workers)]
        process = ManagedProcess(argv, root / "receiver.log", env=full_env,
                                 cwd=source or ROOT).start()
        url = f"http://{LOOPBACK}:{port}"
        server = Server(name, url, "/webhook/alertmanager",
                        {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}, process, workers)
        self.servers.append(server)
        try:
            wait_for(lambda: process.alive() and receiver_up(url), 60, name)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{process.log_tail()}") from None
        return server

    # -- alerta --------------------------------------------------------------------------
    def start_alerta(self, python: Path, database_url: str, workers: int) -> Server:
        root = self.workdir / "alerta"
        root.mkdir(parents=True, exist_ok=True)
        conf = root / "alertad.conf"
        # Settings from alerta/settings.py; the webhook needs DEFAULT_ENVIRONMENT to be in
        # ALLOWED_ENVIRONMENTS. Plugins off, no auth, no audit.
        conf.write_text(textwrap.dedent(f"""
            DEBUG = False
            SECRET_KEY = 'bench-secret'
            AUTH_REQUIRED = False
            DATABASE_URL = {database_url!r}
            PLUGINS = []
            LOG_LEVEL = 'WARNING'
            ALLOWED_ENVIRONMENTS = ['Production', 'Development']
            DEFAULT_ENVIRONMENT = 'Production'
            AUDIT_TRAIL = []
        """))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AUTOFIX_", "VIRTUAL_ENV", "PYTHON"))}
        env["ALERTA_SVR_CONF_FILE"] = str(conf)
        env["SENTRY_DSN"] = ""
        # Create alerta's schema once, before several workers race to do it.
        init = subprocess.run([str(python), "-c", "from alerta.app import create_app; "
                               "create_app()"], env=env, capture_output=True, text=True,
                              timeout=120, cwd=root)
        if init.returncode != 0:
            raise RuntimeError(f"alerta create_app failed: {init.stderr[-1500:]}")
        port = free_port()
        gunicorn = python.parent / "gunicorn"
        # Same worker model as `autofix serve`: gthread, 8 threads, keep-alive 5 s.
        argv = [str(gunicorn), "--bind", f"{LOOPBACK}:{port}", "--workers", str(workers),
                "--worker-class", "gthread", "--threads", "8", "--keep-alive", "5",
                "--timeout", "120", "--log-level", "warning", "alerta.app:create_app()"]
        process = ManagedProcess(argv, root / "alerta.log", env=env, cwd=root).start()
        url = f"http://{LOOPBACK}:{port}"
        server = Server("alerta", url, "/webhooks/prometheus", {}, process, workers)
        self.servers.append(server)
        try:
            wait_for(lambda: process.alive() and http_ok(f"{url}/management/healthcheck"),
                     60, "alerta")
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{process.log_tail()}") from None
        return server

    # -- dockerd -------------------------------------------------------------------------
    def start_dockerd(self) -> Any:
        from tests.harness.dockerd import start_dockerd

        if self.dockerd is None:
            self.dockerd = start_dockerd(self.workdir / "dockerd")
        return self.dockerd

    def close(self) -> None:
        for server in reversed(self.servers):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the rest
                print(f"stopping {server.name}: {exc!r}", file=sys.stderr)
        self.servers.clear()
        if self.dockerd is not None:
            try:
                self.dockerd.remove_all_containers()
            except Exception as exc:
                print(f"removing containers: {exc!r}", file=sys.stderr)
            self.dockerd.stop()
            self.dockerd = None
        if self.postgres is not None:
            self.postgres.discard()
            self.postgres = None

