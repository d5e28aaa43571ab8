"""docs/deploy.md, run as code: the guide cannot drift from what works.

Every fenced block preceded by `<!-- test: NAME -->` is extracted and run (shell blocks) or
written where its first-line comment says (files), in the guide's order, against real
components: a fresh virtualenv with the package installed from this checkout and from a
wheel, `autofix db upgrade` on SQLite and on a fresh PostgreSQL cluster, the systemd unit
checked by `systemd-analyze verify` and its ExecStartPre/ExecStart run with its
EnvironmentFile (systemd cannot run here), the Alertmanager snippet merged into an existing
configuration, checked by `amtool check-config` and loaded by a real Alertmanager 0.25,
the Prometheus job and rules loaded by a real Prometheus 2.42 discovering containers on a
private dockerd, the opt-in `docker run`, and silences made with amtool. The loop is real:
Prometheus fires TargetDown for the opted-in container, Alertmanager routes it through
the guide's child route (and, with `continue: true`, to the existing receiver too), and
the receiver started the unit's way restarts the container.

The existing Prometheus scrapes every 15 s (global), as the issue's SRE's did: the guide's
jobs keep their own intervals, `check-config` (found /etc/prometheus by itself) refuses the
containers job without them, one failed scrape of an answering app restarts nothing, the
same app hung for good (SIGSTOP: connections accepted, never answered) is restarted, the
Watchdog reaches only the dead-man's switch, and AutofixReceiverDown pages when the
receiver stops. The configuration snippets are docs/examples/ files shown verbatim.

What differs from a real host, all in `Host.rewrites` (one pass, longest match first):

* paths: /opt/autofix, /etc/autofix, /etc/alertmanager, /etc/prometheus, /var/lib/autofix,
  /run/autofix and /tmp/autofix-dist live under a temporary directory; the checkout
  /usr/local/src/autofix is this repository;
* ports: 8080, 9090, 9093 and 5432 are free ports of the components started here; the
  Docker socket is the private dockerd's; the app's scrape port is a free port;
* `sudo` is dropped (the tests run as root; there is no `autofix` user), `sudo -u postgres
  psql` connects to the test cluster as its superuser, `systemctl` is a shell function
  that records its arguments (asserted below);
* the private dockerd has no bridge network: `docker run -d` gets `--network host`, and
  the image `registry.example.com/shop/web:1.4` is the local busybox image running a loop
  that serves nothing (so its scrape fails and TargetDown fires);
* pip: the blocks run pip as written, with `PIP_NO_DEPS=1` and this test's virtualenv on
  PYTHONPATH for the dependencies (the package itself, its migrations and default
  playbooks come from the fresh install, which the tests assert). A full dependency
  install would only test the package index.

Blocks without the marker (useradd, chgrp, `systemctl enable`, `journalctl`) are not run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import busybox
from tests.harness.alertmanager import Alertmanager
from tests.harness.dockerd import Dockerd
from tests.harness.postgres import SUPERUSER, Postgres, start_postgres
from tests.harness.procs import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    require_binary,
    wait_for,
)
from tests.harness.prometheus import Prometheus, start_prometheus

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "deploy.md"
MARK = re.compile(r"^<!-- test: ([\w-]+) -->\n```(\w*)[^\n]*\n(.*?)^```$", re.M | re.S)

# Every marked block, and what runs it. A block added to the guide must be added here.
BLOCKS = {
    "install": "shell: the virtualenv from a checkout",
    "install-wheel": "shell: a wheel, then the same virtualenv",
    "layout": "shell: /etc/autofix, tokens, the playbooks copied out of site-packages",
    "env": "file /etc/autofix/autofix.env",
    "unit": "file /etc/systemd/system/autofix.service, verified and run",
    "ready": "shell: /readyz of the receiver started the unit's way",
    "postgres": "shell: roles and database on a fresh cluster",
    "env-postgres": "the AUTOFIX_DATABASE_URL line, replacing the SQLite one",
    "upgrade": "shell: pip upgrade and autofix db upgrade with the env file",
    "prometheus-job": "YAML merged into an existing prometheus.yml (global 15s)",
    "prometheus-autofix-job": "YAML merged too: the receiver's own job, for its self-alerts",
    "prometheus-rules": "shell: both rule files copied, promtool and check-config checks",
    "alertmanager": "YAML merged into an existing alertmanager.yml",
    "alertmanager-token": "shell: token installed, amtool check-config",
    "alertmanager-routes": "shell: amtool config routes test shows autofix and the pager",
    "opt-in": "shell: the container recreated with its labels",
    "incidents": "shell: the actions API shows the restart",
    "silence": "shell: amtool silence add / query",
    "unsilence": "shell: amtool silence expire",
}
APP = "shop-web"
STEADY_APP = "shop-api"  # serves /metrics: one failed scrape of it must restart nothing
# `<!-- example: docs/examples/FILE -->` before a fenced block: that block is FILE verbatim.
EXAMPLE = re.compile(r"^<!-- example: (\S+) -->\n(?:<!-- test: [\w-]+ -->\n)?```[^\n]*\n"
                     r"(.*?)^```$", re.M | re.S)
MUTATING_PLAYBOOK_ALERT = "HighCPU"  # a second alert name, grouped apart from TargetDown


@dataclass(frozen=True)
class Block:
    name: str
    lang: str
    text: str

    @property
    def path(self) -> str | None:
        """A file block's destination: its first line is `# /absolute/path`."""
        first = self.text.splitlines()[0] if self.text else ""
        match = re.fullmatch(r"# (/\S+)", first.strip())
        return match.group(1) if match else None


def guide_blocks() -> dict[str, Block]:
    text = GUIDE.read_text()
    blocks: dict[str, Block] = {}
    for match in MARK.finditer(text):
        name, lang, body = match.groups()
        assert name not in blocks, f"two blocks are marked {name}"
        blocks[name] = Block(name, lang, body)
    markers = re.findall(r"<!-- test: ([\w-]+) -->", text)
    assert sorted(markers) == sorted(blocks), "a marker is not directly before a fenced block"
    return blocks


def parse_environment_file(text: str) -> dict[str, str]:
    """systemd's EnvironmentFile= for the subset the guide may use: KEY=value lines,
    comments starting with # or ;, whitespace around the value dropped, one level of
    surrounding single or double quotes removed."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()), raw
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        assert "\\" not in value and "$" not in value, f"keep {key} simple: {raw}"
        env[key.strip()] = value
    return env


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def systemd_expand(command: str, env: dict[str, str]) -> list[str]:
    """ExecStart=: ${VAR} becomes one word from the environment, then shell-like split."""
    argv = shlex.split(command)
    return [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word) for word in argv]


# --- an HTTP sink standing in for the existing pager receiver -----------------------------

class Sink:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, path: str) -> list[dict[str, Any]]:
        return [a for p, body in self.received if p == path for a in body["alerts"]]

    def stop(self) -> None:
        self.server.shutdown()


# --- the host the guide is followed on ----------------------------------------------------

@dataclass
class Host:
    root: Path
    dockerd: Dockerd
    ports: dict[str, int]
    app_port: int
    pg_port: int = 0
    deadman_url: str = ""  # where the guide's dead-man's switch URL goes (the sink)
    systemctl_log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.systemctl_log = self.root / "systemctl.log"

    @property
    def rewrites(self) -> dict[str, str]:
        r = self.root
        image = (f"{busybox.TAG} sh -c 'trap \"exit 0\" TERM; "
                 "while :; do sleep 0.1; done'")
        table = {
            "sudo -u postgres psql": f"psql -h {LOOPBACK} -p {self.pg_port} -U {SUPERUSER} "
                                     "-d postgres",
            "sudo -u autofix ": "",
            "sudo ": "",
            "/usr/local/src/autofix": str(REPO),
            "/tmp/autofix-dist": str(r / "dist"),
            "docker run -d ": "docker run -d --network host ",
            "registry.example.com/shop/web:1.4": image,
            "autofix.scrape.port=8000": f"autofix.scrape.port={self.app_port}",
            "unix:///var/run/docker.sock": self.dockerd.url,
            f"{LOOPBACK}:8080": f"{LOOPBACK}:{self.ports['receiver']}",
            f"{LOOPBACK}:9090": f"{LOOPBACK}:{self.ports['prometheus']}",
            f"{LOOPBACK}:9093": f"{LOOPBACK}:{self.ports['alertmanager']}",
            f"{LOOPBACK}:5432": f"{LOOPBACK}:{self.pg_port}",
        }
        if self.deadman_url:
            table["https://deadman.example.com"] = self.deadman_url
        for path in ("/opt/autofix", "/etc/autofix", "/etc/alertmanager", "/etc/prometheus",
                     "/var/lib/autofix", "/run/autofix"):
            table[path] = str(r / path.lstrip("/"))
        try:
            import grp

            grp.getgrnam("prometheus")
        except KeyError:  # Debian's Alertmanager user is absent: keep root's group
            table["-g prometheus "] = ""
        return table

    def rewrite(self, text: str) -> str:
        table = self.rewrites
        pattern = re.compile("|".join(re.escape(k) for k in sorted(table, key=len,
                                                                      reverse=True)))
        return pattern.sub(lambda m: table[m.group(0)], text)

    def path(self, guide_path: str) -> Path:
        if Path(guide_path).is_relative_to(self.root):  # already rewritten (a written file)
            return Path(guide_path)
        rewritten = self.rewrite(guide_path)
        if rewritten == guide_path:  # e.g. /etc/systemd/system/...: under the root too
            return self.root / guide_path.lstrip("/")
        return Path(rewritten)

    @property
    def deps_path(self) -> str:
        return sysconfig.get_paths()["purelib"]  # this test's virtualenv: the dependencies

    def base_env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root / "home"),
            "USER": "guide-test",
            "LANG": "C.UTF-8",
            "PYTHONPATH": self.deps_path,
            "PIP_NO_DEPS": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "DOCKER_HOST": self.dockerd.url,
            **{k: v for k, v in os.environ.items() if k.startswith("PIP_")
               and k != "PIP_NO_DEPS"},
        }

    def sh(self, block: Block, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        assert block.lang == "sh", block.name
        script = self.rewrite(block.text)
        prelude = ('systemctl() { printf "%s\\n" "$*" >> "$GUIDE_SYSTEMCTL_LOG"; }\n')
        env = {**self.base_env(), "GUIDE_SYSTEMCTL_LOG": str(self.systemctl_log)}
        (self.root / "home").mkdir(exist_ok=True)
        scratch = self.root / "cwd"  # not the state directory: nothing may land here
        scratch.mkdir(exist_ok=True)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", prelude + script], env=env,
                              cwd=scratch, capture_output=True, text=True, timeout=timeout,
                              check=False)
        assert done.returncode == 0, (
            f"block {block.name} failed ({done.returncode})\n--- script ---\n{script}\n"
            f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}")
        return done

    def write(self, block: Block, text: str | None = None) -> Path:
        assert block.path, f"block {block.name} needs '# /path' as its first line"
        target = self.path(block.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.rewrite(text if text is not None else block.text))
        return target

    def systemctl_calls(self) -> list[str]:
        if not self.systemctl_log.exists():
            return []
        return self.systemctl_log.read_text().splitlines()

    def venv_python(self) -> Path:
        return self.path("/opt/autofix") / "bin" / "python"


@dataclass
class Service:
    """The unit's ExecStart, run the way systemd would (directories, environment, cwd)."""

    host: Host
    unit: dict[str, dict[str, list[str]]]
    process: ManagedProcess | None = None

    def environment(self) -> dict[str, str]:
        service = self.unit["Service"]
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8", "PYTHONPATH": self.host.deps_path}
        for assignment in service.get("Environment", []):
            for word in shlex.split(assignment):
                key, _, value = word.partition("=")
                env[key] = value
        for path in service.get("EnvironmentFile", []):
            env.update(parse_environment_file(self.host.path(path).read_text()))
        return env

    def start(self) -> Service:
        service = self.unit["Service"]
        for name in service.get("StateDirectory", []):
            self.host.path(f"/var/lib/{name}").mkdir(parents=True, exist_ok=True)
        for name in service.get("RuntimeDirectory", []):
            runtime = self.host.path(f"/run/{name}")
            shutil.rmtree(runtime, ignore_errors=True)  # systemd creates it empty
            runtime.mkdir(parents=True)
        [cwd] = service["WorkingDirectory"]
        env = self.environment()
        for command in service.get("ExecStartPre", []):
            done = subprocess.run(systemd_expand(command, env), env=env, cwd=self.host.path(cwd),
                                  capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
        [command] = service["ExecStart"]
        self.process = ManagedProcess(systemd_expand(command, env),
                                      self.host.root / "autofix-serve.log", env=env,
                                      cwd=self.host.path(cwd)).start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=60)


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def blocks() -> dict[str, Block]:
    return guide_blocks()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, dockerd: Dockerd) -> Iterator[Host]:
    for binary in ("amtool", "promtool", "psql", "docker", "curl"):
        require_binary(binary)
    busybox.ensure_busybox_image(dockerd.client())
    ports = {name: free_port() for name in ("receiver", "prometheus", "alertmanager")}
    machine = Host(tmp_path_factory.mktemp("deploy-guide"), dockerd, ports, free_port())
    yield machine
    subprocess.run(["docker", "rm", "-f", APP], env=machine.base_env(), capture_output=True,
                   check=False, timeout=60)


@pytest.fixture(scope="module")
def guide_postgres(host: Host) -> Iterator[Postgres]:
    """A cluster of its own: the guide creates cluster-wide roles (autofix, ...)."""
    server = start_postgres()
    host.pg_port = server.port
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.stop()


# --- the guide, in its order --------------------------------------------------------------

def test_every_marked_block_is_run_by_this_file(blocks: dict[str, Block]) -> None:
    assert set(blocks) == set(BLOCKS)
    assert blocks["env"].path == "/etc/autofix/autofix.env"
    assert blocks["unit"].path == "/etc/systemd/system/autofix.service"


def test_the_guides_snippets_are_the_example_files_verbatim() -> None:
    """docs/examples/ holds each configuration snippet of the guide as a file to copy; the
    guide shows it verbatim (and the marked ones are run below as they are)."""
    text = GUIDE.read_text()
    shown = {name: body for name, body in EXAMPLE.findall(text)}
    assert len(re.findall(r"<!-- example: ", text)) == len(shown)
    files = {f"docs/examples/{p.name}" for p in (REPO / "docs" / "examples").iterdir()}
    assert set(shown) == files
    for name, body in shown.items():
        assert (REPO / name).read_text() == body, f"{name} differs from its block in the guide"


def test_the_host_docker_proxy_example_is_valid_haproxy(tmp_path: Path) -> None:
    haproxy = require_binary("haproxy")
    config = (REPO / "docs" / "examples" / "prometheus-docker-proxy.cfg").read_text()
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    done = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    shipped = (REPO / "socket-proxy" / "prometheus.cfg").read_text()

    def rules(text: str) -> list[str]:
        """The allow-list; not the `.if` block, which only a TLS listener has."""
        kept, in_block = [], False
        for line in text.splitlines():
            in_block = (in_block or line.startswith(".if ")) and not line.startswith(".endif")
            if not in_block and line.strip().startswith(("acl ", "http-request ")):
                kept.append(" ".join(line.split()))
        return kept

    # The same rules, in the same order, as the proxy compose runs and tests/test_socket_proxy.py
    # sends every allowed and refused call through.
    assert rules(config) and rules(config) == rules(shipped), "drifted from the compose proxy"


def test_install_from_a_checkout_and_from_a_wheel(host: Host,
                                                  blocks: dict[str, Block]) -> None:
    done = host.sh(blocks["install"])
    assert "check-config" in done.stdout  # autofix --help
    host.sh(blocks["install-wheel"])
    assert list((host.root / "dist").glob("autofix-*.whl"))
    # The installed copy, not this checkout: migrations and playbooks are package data.
    probe = subprocess.run(
        [str(host.venv_python()), "-c",
         "import receiver, receiver.config.settings as s; print(receiver.__file__); "
         "print(s.DEFAULT_PLAYBOOKS.is_file())"],
        env=host.base_env(), cwd=host.root, capture_output=True, text=True, timeout=60,
        check=True)  # not cwd=REPO: `python -c` would import the checkout
    location, playbooks_present = probe.stdout.split()
    assert location.startswith(str(host.path("/opt/autofix"))), location
    assert playbooks_present == "True"


def test_layout_copies_the_playbooks_out_of_site_packages(host: Host,
                                                          blocks: dict[str, Block]) -> None:
    done = host.sh(blocks["layout"])
    assert "OK" in done.stdout
    etc = host.path("/etc/autofix")
    for token in ("webhook_token", "api_token"):
        value = (etc / token).read_text()
        assert re.fullmatch(r"[0-9a-f]{64}", value), token
        assert (etc / token).stat().st_mode & 0o077 == 0, f"{token} is readable by others"
    shipped = (REPO / "receiver" / "playbooks.yml").read_text()
    assert (etc / "playbooks.yml").read_text() == shipped


def test_env_file_reads_the_same_for_systemd_and_sh(host: Host,
                                                    blocks: dict[str, Block]) -> None:
    path = host.write(blocks["env"])
    systemd = parse_environment_file(path.read_text())
    sourced = subprocess.run(
        ["sh", "-c", f'set -a; . "{path}"; exec "{sys.executable}" -c '
                     '"import json, os; print(json.dumps(dict(os.environ)))"'],
        env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, check=True,
        timeout=30)
    shell = json.loads(sourced.stdout)
    assert {k: shell.get(k) for k in systemd} == systemd
    url = systemd["AUTOFIX_DATABASE_URL"]
    assert url.startswith("sqlite:////"), "an absolute SQLite path"
    assert json.loads(systemd["AUTOFIX_PROTECTED_CONTAINERS"])  # a JSON list today


def test_unit_verifies_and_db_upgrade_uses_the_state_directory(
        host: Host, blocks: dict[str, Block]) -> None:
    unit_path = host.write(blocks["unit"])
    if shutil.which("systemd-analyze"):
        done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit_path)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    unit = parse_unit(unit_path.read_text())
    service = unit["Service"]
    env = Service(host, unit).environment()
    assert service["WorkingDirectory"] == [str(host.path("/var/lib/autofix"))]
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith(str(host.path("/run/autofix")))
    assert service["RuntimeDirectory"] == ["autofix"] and service["StateDirectory"] == ["autofix"]
    # The upgrade block as the first schema creation, on SQLite. The state directory is
    # made by the guide's (unrun) `install -d -o autofix ... /var/lib/autofix`.
    host.path("/var/lib/autofix").mkdir(parents=True, exist_ok=True)
    done = host.sh(blocks["upgrade"])
    assert "database at head" in done.stdout
    assert host.path("/var/lib/autofix/autofix.db").is_file()
    assert not list((host.root / "cwd").iterdir()), "nothing lands in the current directory"
    assert host.systemctl_calls() == ["restart autofix"]


def test_postgresql_setup_and_upgrade(host: Host, guide_postgres: Postgres,
                                      blocks: dict[str, Block]) -> None:
    import psycopg2

    host.sh(blocks["postgres"])
    [line] = [ln for ln in blocks["env-postgres"].text.splitlines() if ln.strip()]
    assert line.startswith("AUTOFIX_DATABASE_URL=")
    sqlite_env = blocks["env"].text
    postgres_env = re.sub(r"^AUTOFIX_DATABASE_URL=.*$", line, sqlite_env, count=1, flags=re.M)
    assert postgres_env != sqlite_env
    host.write(blocks["env"], postgres_env)
    done = host.sh(blocks["upgrade"])
    assert "database at head" in done.stdout
    # The guide ran docs/postgres-roles.sql as the superuser: nothing left to say.
    assert "superuser" not in done.stderr, done.stderr
    dsn = f"host={LOOPBACK} port={guide_postgres.port} dbname=autofix"
    conn = psycopg2.connect(f"{dsn} user=autofix")
    with conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        assert cur.fetchone()
        cur.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'incidents'")
        assert cur.fetchone() == ("autofix",)
    conn.close()
    reader = psycopg2.connect(f"{dsn} user=grafana_reader")
    try:
        with reader.cursor() as cur:
            cur.execute("SELECT count(*) FROM incidents")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("SELECT count(*) FROM runs")
    finally:
        reader.close()


@pytest.fixture(scope="module")
def alertmanager(host: Host, sink: Sink, blocks: dict[str, Block]) -> Iterator[Alertmanager]:
    """An existing configuration (a pager, a ticket route), the guide's snippet merged in
    the way the guide says: its route first under route.routes, its receiver appended."""
    existing: dict[str, Any] = {
        "route": {"receiver": "team-pager", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "2s", "repeat_interval": "1h",
                  "routes": [{"receiver": "tickets", "matchers": ['severity="info"']}]},
        "receivers": [{"name": "team-pager", "webhook_configs": [{"url": f"{sink.url}/pager"}]},
                      {"name": "tickets", "webhook_configs": [{"url": f"{sink.url}/tickets"}]}],
    }
    host.deadman_url = f"{sink.url}/deadman"
    snippet = yaml.safe_load(host.rewrite(blocks["alertmanager"].text))
    assert set(snippet) == {"route", "receivers"} and set(snippet["route"]) == {"routes"}
    watchdog, own, first, last = snippet["route"]["routes"]
    assert watchdog["matchers"] == ['alertname="Watchdog"'] and "continue" not in watchdog
    assert own["matchers"] == ['component="autofix"'] and "continue" not in own
    assert first["receiver"] == "autofix" and first["continue"] is True
    assert last == {"receiver": existing["route"]["receiver"]}  # the fallback, made explicit
    receivers = {r["name"]: r for r in snippet["receivers"]}
    assert set(receivers) == {"autofix", watchdog["receiver"]}
    [webhook] = receivers["autofix"]["webhook_configs"]
    assert webhook["send_resolved"] is True
    assert "credentials_file" in webhook["http_config"]["authorization"]
    existing["route"]["routes"] = [watchdog, own, first, *existing["route"]["routes"], last]
    existing["receivers"].extend(snippet["receivers"])
    config = host.path("/etc/alertmanager/alertmanager.yml")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(existing, sort_keys=False))
    done = host.sh(blocks["alertmanager-token"])
    assert "SUCCESS" in done.stdout + done.stderr
    token = Path(webhook["http_config"]["authorization"]["credentials_file"])
    assert token.read_text() == host.path("/etc/autofix/webhook_token").read_text()
    assert host.systemctl_calls()[-1] == "reload prometheus-alertmanager"
    routes = host.sh(blocks["alertmanager-routes"]).stdout.strip()
    assert routes == "autofix,team-pager", routes
    ticket = subprocess.run(  # the existing routes are untouched
        ["amtool", "config", "routes", "test", f"--config.file={config}", "container=x",
         "severity=info"], capture_output=True, text=True, check=True, timeout=60)
    assert ticket.stdout.strip() == "autofix,tickets"
    for labels, expected in ((["alertname=Watchdog", "container=prometheus"], "deadmans-switch"),
                             (["alertname=AutofixReceiverDown", "component=autofix",
                               "container=autofix"], "team-pager")):
        apart = subprocess.run(["amtool", "config", "routes", "test", f"--config.file={config}",
                                *labels], capture_output=True, text=True, check=True, timeout=60)
        assert apart.stdout.strip() == expected, (labels, apart.stdout)
    manager = Alertmanager(host.root / "am-run", yaml.safe_load(config.read_text()))
    manager.port = host.ports["alertmanager"]
    manager.url = f"http://{LOOPBACK}:{manager.port}"
    manager.process.argv = [a if not a.startswith("--web.listen-address=") else
                            f"--web.listen-address={LOOPBACK}:{manager.port}"
                            for a in manager.process.argv]
    manager.start()
    yield manager
    manager.stop()


@pytest.fixture(scope="module")
def prometheus(host: Host, blocks: dict[str, Block]) -> Iterator[Prometheus]:
    """An existing prometheus.yml with a 15 s global interval (the issue's SRE) and its own
    job, the guide's two jobs appended and its rule files listed the way the guide says."""
    existing: dict[str, Any] = {
        "global": {"scrape_interval": "15s", "scrape_timeout": "10s",
                   "evaluation_interval": "15s"},
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [f"{LOOPBACK}:{host.ports['alertmanager']}"]}]}]},
        "rule_files": ["autofix_rules.yml", "autofix_self_rules.yml"],
        "scrape_configs": [{"job_name": "prometheus", "static_configs": [
            {"targets": [f"{LOOPBACK}:{host.ports['prometheus']}"]}]}],
    }
    [job] = yaml.safe_load(host.rewrite(blocks["prometheus-job"].text))
    [own_job] = yaml.safe_load(host.rewrite(blocks["prometheus-autofix-job"].text))
    assert own_job["job_name"] == "autofix"
    assert set(own_job["static_configs"][0]["labels"]) == {"container", "service"}
    existing["scrape_configs"] += [job, own_job]
    config = host.path("/etc/prometheus/prometheus.yml")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(existing, sort_keys=False))
    done = host.sh(blocks["prometheus-rules"])
    assert "SUCCESS" in done.stdout + done.stderr
    # check-config found the rules and prometheus.yml in /etc/prometheus by itself; the
    # disabled Swarm playbook only warns.
    assert "autofix_rules.yml" in done.stdout and "prometheus.yml" in done.stdout
    assert "force-update-swarm-task-down" in done.stderr
    # The copy of the job, without its intervals: refused, naming the rule, the
    # job and both numbers.
    careless = host.root / "careless-prometheus.yml"
    stripped = {k: v for k, v in job.items() if k not in ("scrape_interval", "scrape_timeout")}
    careless.write_text(yaml.safe_dump({**existing, "scrape_configs": [
        stripped, own_job]}, sort_keys=False))
    refused = subprocess.run(
        [str(host.path("/opt/autofix") / "bin" / "autofix"), "check-config",
         str(host.path("/etc/autofix/playbooks.yml")), "--prometheus-config", str(careless)],
        env=host.base_env(), capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "TargetDown" in refused.stderr and "job containers" in refused.stderr
    assert "for: 4s" in refused.stderr and "scrape_interval 15s" in refused.stderr
    rules = [host.path("/etc/prometheus/autofix_rules.yml"),
             host.path("/etc/prometheus/autofix_self_rules.yml")]
    server = start_prometheus(host.root / "prom-run", config.read_text(), rules,
                              port=host.ports["prometheus"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(host: Host, blocks: dict[str, Block], alertmanager: Alertmanager,
            prometheus: Prometheus) -> Iterator[Service]:
    """autofix serve, started the unit's way (now with the PostgreSQL env file)."""
    unit = parse_unit(host.path("/etc/systemd/system/autofix.service").read_text())
    running = Service(host, unit).start()

    def ready() -> bool:
        assert running.process is not None and running.process.alive(), \
            running.process.log_tail() if running.process else ""
        done = subprocess.run(["bash", "-c", host.rewrite(blocks["ready"].text)],
                              capture_output=True, text=True, timeout=10, check=False)
        return done.returncode == 0

    wait_for(ready, 120, "autofix serve, started from the unit")
    yield running
    running.stop()


def _api(host: Host, path: str) -> Any:
    token = host.path("/etc/autofix/api_token").read_text().strip()
    request = urllib.request.Request(f"http://{LOOPBACK}:{host.ports['receiver']}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _actions(host: Host) -> list[dict[str, Any]]:
    return list(_api(host, f"/api/v1/actions?target={APP}&limit=100")["items"])


def _push(alertmanager: Alertmanager, alertname: str, ends: bool = False) -> None:
    now = datetime.now(UTC)
    alert: dict[str, Any] = {"labels": {"alertname": alertname, "container": APP,
                                        "severity": "warning"},
                             "startsAt": now.isoformat()}
    if ends:
        alert["endsAt"] = now.isoformat()
    alertmanager.push([alert])


def test_a_container_without_the_label_is_refused_and_opting_in_needs_a_recreate(
        host: Host, blocks: dict[str, Block], service: Service, alertmanager: Alertmanager,
        prometheus: Prometheus, sink: Sink) -> None:
    env = host.base_env()
    # An existing container, created before anyone thought of autofix: no labels.
    subprocess.run(["docker", "rm", "-f", APP], env=env, capture_output=True, check=False)
    subprocess.run(["docker", "run", "-d", "--network", "host", "--name", APP, busybox.TAG,
                    *busybox.FAST_STOP], env=env, capture_output=True, check=True, timeout=60)
    _push(alertmanager, MUTATING_PLAYBOOK_ALERT)
    wait_for(lambda: any(a["reason"] == "target_not_allowed" for a in _actions(host)), 60,
             "autofix refusing the unlabelled container")
    _push(alertmanager, MUTATING_PLAYBOOK_ALERT, ends=True)
    # continue: true - the existing route tree got it too.
    assert any(a["labels"]["container"] == APP for a in sink.alerts("/pager"))
    # The guide's recreate: now labelled, discovered by Prometheus with container=<name>.
    before = _docker_id(env)
    host.sh(blocks["opt-in"])
    assert _docker_id(env) != before
    labels = json.loads(subprocess.run(
        ["docker", "inspect", "--format", "{{json .Config.Labels}}", APP], env=env,
        capture_output=True, text=True, check=True).stdout)
    assert labels.get("autofix.enable") == "true"
    wait_for(lambda: any(t["labels"].get("container") == APP for t in prometheus.targets()),
             60, "the guide's scrape job discovering the container")
    # No compose or autofix.service label: service falls back to the container name.
    assert {t["labels"].get("service") for t in prometheus.targets()
            if t["labels"].get("container") == APP} == {APP}
    started = _started_at(env)
    # The app serves no metrics: TargetDown fires (for: 15s), routed to autofix, restart.
    wait_for(lambda: any(a["action"] == "restart" and a["outcome"] == "succeeded"
                         for a in _actions(host)), 120, "TargetDown -> restart")
    assert _started_at(env) > started
    done = host.sh(blocks["incidents"])
    shown = json.loads(done.stdout)["items"]
    assert {(a["action"], a["outcome"]) for a in shown} >= {("restart", "succeeded")}
    assert any(a["labels"].get("alertname") == "TargetDown" for a in sink.alerts("/pager"))


@pytest.fixture(scope="module")
def steady_app(host: Host, prometheus: Prometheus) -> Iterator[str]:
    """An opted-in app that answers its scrapes (busybox httpd serving /metrics), found by
    the guide's job: the one a failed scrape and then a real hang are made of."""
    env = host.base_env()
    port = free_port()
    subprocess.run(["docker", "rm", "-f", STEADY_APP], env=env, capture_output=True,
                   check=False, timeout=60)
    serve = (f"busybox mkdir -p /tmp/www && echo 'steady 1' > /tmp/www/metrics && "
             f"exec busybox httpd -f -p {LOOPBACK}:{port} -h /tmp/www")
    subprocess.run(["docker", "run", "-d", "--network", "host", "--name", STEADY_APP,
                    "--label", "autofix.enable=true", "--label", "autofix.scrape=true",
                    "--label", f"autofix.scrape.port={port}", busybox.TAG, "sh", "-c", serve],
                   env=env, capture_output=True, check=True, timeout=60)
    wait_for(lambda: any(r["value"][1] == "1" for r in prometheus.query(_up(STEADY_APP))), 60,
             "the steady app scraped")
    yield STEADY_APP
    subprocess.run(["docker", "rm", "-f", STEADY_APP], env=env, capture_output=True,
                   check=False, timeout=60)


def _up(container: str) -> str:
    return f'up{{job="containers", container="{container}"}}'


def _signal(host: Host, name: str, signal_name: str) -> None:
    subprocess.run(["docker", "kill", "--signal", signal_name, name], env=host.base_env(),
                   capture_output=True, check=True, timeout=30)


def test_one_failed_scrape_restarts_nothing(host: Host, service: Service,
                                           prometheus: Prometheus, steady_app: str) -> None:
    """The timing contract, live: the app stopped (SIGSTOP) for 3 s - longer than the
    1.5 s timeout, shorter than timeout + interval, so one scrape fails - fires nothing and
    is not restarted."""
    env = host.base_env()
    started = _started_at(env, steady_app)
    for _attempt in range(3):  # a 3 s stop misses a 2 s scrape slot 1 time in 4
        _signal(host, steady_app, "STOP")
        time.sleep(3.0)
        _signal(host, steady_app, "CONT")
        time.sleep(2.5)  # the next scrape, and its sample ingested
        if prometheus.query(f"count_over_time(({_up(steady_app)} == 0)[10s:500ms])"):
            break
    else:
        pytest.fail("no scrape failed while the app was stopped")
    time.sleep(6)  # past TargetDown's for: 4s, had it gone pending
    fired = prometheus.query(f'max_over_time(ALERTS{{alertname="TargetDown", '
                             f'container="{steady_app}", alertstate="firing"}}[30s])')
    assert fired == [], fired
    assert _started_at(env, steady_app) == started
    assert not list(_api(host, f"/api/v1/actions?target={steady_app}")["items"])


def test_a_real_hang_is_remediated(host: Host, service: Service, prometheus: Prometheus,
                                   steady_app: str) -> None:
    """Stopped for good, the app accepts connections and never answers: its scrapes time
    out, TargetDown fires, autofix restarts it (docker kills the stopped process) and it
    answers its scrapes again."""
    env = host.base_env()
    started = _started_at(env, steady_app)
    _signal(host, steady_app, "STOP")
    wait_for(lambda: any(a["action"] == "restart" and a["outcome"] == "succeeded" for a in
                         _api(host, f"/api/v1/actions?target={steady_app}")["items"]), 120,
             "TargetDown of the hung app -> restart")
    assert _started_at(env, steady_app) > started
    wait_for(lambda: any(r["value"][1] == "1" for r in prometheus.query(_up(steady_app))), 60,
             "the restarted app answering its scrapes")


def test_a_silence_keeps_autofix_away(host: Host, blocks: dict[str, Block], service: Service,
                                      alertmanager: Alertmanager) -> None:
    done = host.sh(blocks["silence"])
    assert APP in done.stdout
    silenced_alert = "HighLatencyP95"
    _push(alertmanager, silenced_alert)
    wait_for(lambda: any(a["labels"]["alertname"] == silenced_alert
                         and a["status"]["state"] == "suppressed"
                         for a in alertmanager.alerts()), 30, "the alert suppressed")
    time.sleep(8)  # longer than the guide route's group_wait (5s)
    incidents = _api(host, f"/api/v1/incidents?alertname={silenced_alert}")["items"]
    assert incidents == []
    host.sh(blocks["unsilence"])
    silences = alertmanager._request("GET", "/api/v2/silences")
    assert silences and all(s["status"]["state"] == "expired" for s in silences)
    _push(alertmanager, silenced_alert, ends=True)


def test_watchdog_and_receiver_down_go_apart_from_remediation(
        host: Host, service: Service, prometheus: Prometheus, sink: Sink) -> None:
    """Last: it stops the receiver. Watchdog reaches the dead-man's switch only;
    AutofixReceiverDown (the guide's `autofix` job, 5 s scrapes, for: 30s, evaluated every
    15 s) reaches the pager once the receiver stops."""
    wait_for(lambda: any(a["labels"]["alertname"] == "Watchdog" for a in sink.alerts(
        "/deadman/ping/autofix-watchdog")), 90, "Watchdog at the dead-man's switch")
    assert not any(a["labels"]["alertname"] == "Watchdog" for a in sink.alerts("/pager"))
    assert _api(host, "/api/v1/incidents?alertname=Watchdog")["items"] == []
    up = prometheus.query('up{job="autofix", container="autofix", service="autofix"}')
    assert up and up[0]["value"][1] == "1", up
    service.stop()
    wait_for(lambda: any(a["labels"]["alertname"] == "AutofixReceiverDown"
                         and a["status"] == "firing" for a in sink.alerts("/pager")), 120,
             "AutofixReceiverDown paged after the receiver stopped")


def _docker_id(env: dict[str, str]) -> str:
    return subprocess.run(["docker", "inspect", "--format", "{{.Id}}", APP], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


def _started_at(env: dict[str, str], name: str = APP) -> datetime:
    text = subprocess.run(["docker", "inspect", "--format", "{{.State.StartedAt}}", name],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", text).replace("Z", "+00:00"))

