"""`make compose-test`: docker-compose.yml deployed for real, checked, and torn down.

    python -m tests.harness.compose_stack [--compose CMD] [--keep-workdir] [--compose-file FILE]
                                          [--images TAR]

(--compose: the Compose command, `docker compose` (v2, the default) or `docker-compose`
(1.29); --compose-file: a variant of docker-compose.yml, to see that the checks catch a
defect; --images: a `docker save` of every local image, loaded instead of building them:
the test session builds them once for every harness run, see tests/conftest_stack.py.)

1. Enters a private network and mount namespace (`unshare --net --mount`): the private
   dockerd's bridges, container addresses and published ports exist only there, so
   nothing leaks onto the host's network; the only traffic this script sends is to
   127.0.0.1 inside that namespace (published ports) and through `docker exec`.
2. Starts a private dockerd (tests/harness/dockerd.py's flags, plus --ip-forward=false:
   the namespace never routes between networks, so two containers talk only if compose
   put them on a common network) and builds every image locally
   (tests/harness/local_images.py; or loads them from --images); Grafana has none and is
   not started.
3. `docker compose -f docker-compose.yml -f docker-compose.override.yml -f
   tests/harness/docker-compose.local.yml up` (or docker-compose 1.29) with secrets made by
   docs/compose-secrets.sh in a scratch project directory. Containers are found by their
   compose labels (project, service); their names follow the tool's scheme, checked.
4. Checks (each one named; any failure means exit 1): secret files and who can read them,
   the Docker API proxies endpoint by endpoint, network isolation seen from inside
   target_app, PostgreSQL roles, AUTOFIX_PROMETHEUS_URL, and the loop itself: a hang of
   target_app through its fault endpoint must end with autofix restarting the container
   and the incident resolved.
5. `compose down -v`, dockerd stopped, the namespace and scratch directory gone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
# group_add and depends_on: what docker-compose reads and `docker stack deploy` rejects.
COMPOSE_ONLY = REPO / "docker-compose.override.yml"
LOCAL = REPO / "tests/harness/docker-compose.local.yml"
PROBES = REPO / "tests/harness/compose_probes.py"
SERVICES = ["target_app", "receiver", "postgres", "prometheus", "alertmanager",
            "docker-proxy", "docker-proxy-ro"]   # every service but grafana (no local image)
# Mirrors docs/compose-secrets.sh; the check compares both with the compose file.
SECRET_GIDS = {"postgres_password": 61001, "autofix_db_password": 61002,
               "autofix_database_url": 61003, "autofix_webhook_token": 61004,
               "autofix_api_token": 61005, "grafana_admin_password": 61006,
               "grafana_db_password": 61007, "target_app_fault_token": 61008}
SERVICE_UIDS = {"receiver": "10001", "postgres": "999", "alertmanager": "65534",
                "prometheus": "65534"}
PROJECT_LINKS = ("prometheus", "rules", "alertmanager", "grafana", "socket-proxy",
                 "target_app", "receiver", "pyproject.toml", "README.md")
HEALTHY_TIMEOUT_S = 180
# The Compose command: v2 (the Docker CLI plugin) by default, `docker-compose` for 1.29.
DEFAULT_COMPOSE = "docker compose"
COMPOSE_ENV = "AUTOFIX_COMPOSE"   # how the outer process hands --compose to the inner one
LOOP_TIMEOUT_S = 240
PROBE_CONTAINER = "afc-probe"     # allowed calls act on it
VICTIM_CONTAINER = "afc-victim"   # refused destructive calls aim at it (so a proxy that
                                  # wrongly allows them does not spoil the other checks)


def log(msg: str) -> None:
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Report:
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, bool(ok), detail))
        log(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""))
        return bool(ok)

    def run(self, name: str, fn: Callable[[], tuple[bool, str]]) -> None:
        try:
            ok, detail = fn()
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.check(name, ok, detail)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(ok for _, ok, _ in self.results)


# --- outside: the namespace --------------------------------------------------------------

def compose_command() -> list[str]:
    return shlex.split(os.environ.get(COMPOSE_ENV) or DEFAULT_COMPOSE)


def compose_version(command: list[str]) -> str | None:
    """`2.26.1-4`, `1.29.2`, or None when the command does not run."""
    try:
        out = subprocess.run([*command, "version"], capture_output=True, text=True,
                             timeout=60, check=False)
    except OSError:
        return None
    found = re.search(r"version v?(\d+\.\d+\.\d+\S*?),?\s", out.stdout + " ")
    return found.group(1) if out.returncode == 0 and found else None


def container_name(project: str, service: str, version: str) -> str:
    """The name Compose gives a service's first container: 1.29 joins with `_`, v2 with `-`
    (it reaches Prometheus' `container` label, hence playbook targets and breakers)."""
    return f"{project}_{service}_1" if version.startswith("1.") else f"{project}-{service}-1"


def outer(args: argparse.Namespace, module: str = "tests.harness.compose_stack",
          tools: tuple[str, ...] = ("compose",)) -> int:
    """Runs `python -m module --inside` in a private network and mount namespace."""
    if os.geteuid() != 0:
        print(f"{module} needs root (a private dockerd in its own namespace)", file=sys.stderr)
        return 2
    for tool in ("unshare", "ip", "dockerd", *(t for t in tools if t != "compose")):
        if shutil.which(tool) is None:
            print(f"compose-test needs {tool}: bash .ci/install-os-packages", file=sys.stderr)
            return 2
    if "compose" in tools:
        version = compose_version(compose_command())
        if version is None:
            print(f"compose-test needs `{shlex.join(compose_command())}`: bash "
                  ".ci/install-os-packages", file=sys.stderr)
            return 2
        log(f"compose: `{shlex.join(compose_command())}` {version}")
    workdir = Path(tempfile.mkdtemp(prefix="autofix-compose-", dir="/var/tmp"))
    started = time.monotonic()
    try:
        cmd = ["unshare", "--net", "--mount", "--propagation", "private", "--fork",
               "--kill-child=SIGTERM", sys.executable, "-m", module,
               "--inside", "--workdir", str(workdir), "--compose-file", str(args.compose_file)]
        if args.images is not None:
            cmd += ["--images", str(args.images.resolve())]
        proc = subprocess.Popen(cmd, cwd=REPO)
        signal.signal(signal.SIGTERM, _interrupted)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            # unshare --fork ignores SIGTERM while it waits: signal its child, which
            # tears the stack down and exits; unshare follows.
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            for pid in (children.read_text().split() if children.exists() else []):
                os.kill(int(pid), signal.SIGTERM)
            proc.wait(timeout=180)
            raise
    finally:
        if args.keep_workdir:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    log(f"{'passed' if rc == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return rc


# --- inside: dockerd, compose, checks ----------------------------------------------------

class Stack:
    def __init__(self, workdir: Path, compose_file: Path = COMPOSE,
                 images: Path | None = None) -> None:
        self.compose_file = compose_file
        self.images = images   # a `docker save` of every local image, or None: build them
        from tests.harness.dockerd import Dockerd

        class PrivateDockerd(Dockerd):
            def argv(self) -> list[str]:
                return [*super().argv(), "--ip-forward=false"]

        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "data").mkdir(exist_ok=True)
        short = Path(tempfile.mkdtemp(prefix="afc-", dir="/tmp"))
        os.chmod(short, 0o700)
        self.dockerd = PrivateDockerd(workdir=workdir, short_dir=short,
                                      binary=shutil.which("dockerd") or "dockerd")
        self.workdir = workdir
        self.project = f"afc{os.getpid()}"
        self.project_dir = workdir / "project"
        self.env: dict[str, str] = {}
        self.compose_cmd = compose_command()
        self.compose_version = ""
        self.names: dict[str, str] = {}

    # plumbing
    def docker(self, *argv: str, input_text: str | None = None, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", *argv], env=self.env, input=input_text,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(argv)}: {result.stderr.strip()}")
        return result

    def compose(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        cmd = [*self.compose_cmd, "-p", self.project, "-f", str(self.compose_file),
               "-f", str(COMPOSE_ONLY), "-f", str(LOCAL),
               "--project-directory", str(self.project_dir), *argv]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def container(self, service: str) -> str:
        """The service's container, found by the labels Compose puts on it (1.29 and v2
        alike), not by a name built here."""
        if service not in self.names:
            names = self.service_containers(service)
            if len(names) != 1:
                raise RuntimeError(f"{service}: {len(names)} containers {names}, want 1")
            self.names[service] = names[0]
        return self.names[service]

    def service_containers(self, service: str) -> list[str]:
        out = self.docker("ps", "-a", "--format", "{{.Names}}",
                          "--filter", f"label=com.docker.compose.project={self.project}",
                          "--filter", f"label=com.docker.compose.service={service}")
        return sorted(out.stdout.split())

    def probe(self, container: str, *args: str, user: str | None = None) -> Any:
        extra = ["-u", user] if user else []
        out = self.docker("exec", "-i", *extra, container, "python3", "-", *args,
                          input_text=PROBES.read_text(), timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def secret(self, name: str) -> str:
        return (self.project_dir / ".secrets" / name).read_text().strip()

    def inspect(self, container: str) -> dict[str, Any]:
        return json.loads(self.docker("inspect", container).stdout)[0]

    # lifecycle
    def start(self) -> dict[str, float]:
        timings = self.prepare()
        self.compose_version = compose_version(self.compose_cmd) or "?"
        log(f"compose: `{shlex.join(self.compose_cmd)}` {self.compose_version}")
        t = time.monotonic()
        self.up()
        timings["compose up (healthy)"] = time.monotonic() - t
        return timings

    def prepare(self) -> dict[str, float]:
        """dockerd started, every local image built, the project directory with secrets."""
        timings = {}
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        # A new network namespace inherits IPv4 forwarding from the host's; turn it off
        # here (this namespace only) so that nothing routes between the bridges: two
        # containers talk only across a network compose put both on. With iptables, a
        # production daemon gets the same from its isolation chains and `internal`.
        Path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")
        t = time.monotonic()
        self.dockerd.start()
        self.env = {**os.environ, "DOCKER_HOST": self.dockerd.url,
                    "DOCKER_SOCKET": str(self.dockerd.sock)}
        timings["dockerd"] = time.monotonic() - t

        t = time.monotonic()
        if self.images is not None:
            log(f"  loading the local images from {self.images}")
            self.docker("load", "-i", str(self.images), timeout=600)
        else:
            from tests.harness.local_images import build_all
            client = self.dockerd.client()
            client.api.timeout = 600
            build_all(client, log=lambda m: log(f"  {m}"))
        timings["images"] = time.monotonic() - t

        self.project_dir.mkdir()
        for name in PROJECT_LINKS:
            (self.project_dir / name).symlink_to(REPO / name)
        subprocess.run(["sh", str(REPO / "docs/compose-secrets.sh"), str(self.project_dir)],
                       check=True, capture_output=True)
        return timings

    def up(self) -> None:
        # Compose (1.29 and v2) gives up on `up` as soon as a dependency's check reports
        # unhealthy (a slow first start on a busy host); `up` again once it has recovered.
        for attempt in range(3):
            up = self.compose("up", "-d", "--no-build", *SERVICES)
            if up.returncode == 0:
                break
            states = self.docker("ps", "-a", "--format", "{{.Names}}: {{.Status}}").stdout
            log(f"compose up failed (attempt {attempt + 1}): "
                f"{up.stderr.strip().splitlines()[-2:]}; {states.splitlines()}")
            time.sleep(10)
        else:
            raise RuntimeError(f"compose up failed:\n{up.stdout}\n{up.stderr}")
        self.wait_healthy()

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {}
            for service in SERVICES:
                attrs = self.inspect(self.container(service))
                health = (attrs["State"].get("Health") or {}).get("Status", "none")
                states[service] = f"{attrs['State']['Status']}/{health}"
            if all(s == "running/healthy" for s in states.values()):
                log(f"all {len(states)} services healthy")
                return
            time.sleep(2)
        details = []
        for service, state in states.items():
            if state != "running/healthy":
                attrs = self.inspect(self.container(service))
                checks = (attrs["State"].get("Health") or {}).get("Log") or [{}]
                logs = self.docker("logs", "--tail", "15", self.container(service), check=False)
                details.append(f"--- {service}: {state}; last health check: "
                               f"{checks[-1].get('Output', '')!r}\n{logs.stdout}{logs.stderr}")
        raise RuntimeError(f"not healthy after {HEALTHY_TIMEOUT_S}s: {states}\n"
                           + "\n".join(details)[-8000:])

    def stop(self) -> None:
        if self.env:
            down = self.compose("down", "-v", "--remove-orphans", "-t", "5")
            log(f"compose down: rc={down.returncode}")
            self.docker("rm", "-f", PROBE_CONTAINER, VICTIM_CONTAINER, check=False)
        self.dockerd.stop()


# --- the checks ----------------------------------------------------------------------------

def compose_config(stack: Stack) -> dict[str, Any]:
    import yaml

    out = stack.compose("config")
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return yaml.safe_load(out.stdout)


def check_secret_files(stack: Stack, config: dict[str, Any]) -> tuple[bool, str]:
    problems = []
    for name, gid in SECRET_GIDS.items():
        st = (stack.project_dir / ".secrets" / name).stat()
        if stat.S_IMODE(st.st_mode) != 0o440 or st.st_uid != 0 or st.st_gid != gid:
            problems.append(f"{name}: mode {oct(stat.S_IMODE(st.st_mode))} {st.st_uid}:{st.st_gid}")
    # Every service adds exactly the groups of the secrets it mounts.
    for service, spec in config["services"].items():
        wanted = sorted(str(SECRET_GIDS[s if isinstance(s, str) else s["source"]])
                        for s in spec.get("secrets", []))
        got = sorted(str(g) for g in spec.get("group_add", []))
        if wanted != got:
            problems.append(f"{service}: group_add {got}, secrets need {wanted}")
    if set(config.get("secrets", {})) != set(SECRET_GIDS):
        problems.append(f"compose secrets {sorted(config.get('secrets', {}))}")
    return not problems, "; ".join(problems) or "0440 root:<own gid>, group_add matches"


def check_secrets_readable(stack: Stack, config: dict[str, Any]) -> tuple[bool, str]:
    problems, seen = [], []
    for service in SERVICES:
        container = stack.container(service)
        uid = stack.docker("exec", container, "sh", "-c", "id -u 2>/dev/null || "
                           "python3 -c 'import os; print(os.getuid())'").stdout.strip()
        if service in SERVICE_UIDS and uid != SERVICE_UIDS[service]:
            problems.append(f"{service} runs as uid {uid}, not {SERVICE_UIDS[service]}")
        for secret in config["services"][service].get("secrets", []):
            name = secret if isinstance(secret, str) else secret["source"]
            read = stack.docker("exec", container, "sh", "-c",
                                f"cat /run/secrets/{name} 2>&1 >/dev/null || python3 -c "
                                f"\"open('/run/secrets/{name}').read()\"", check=False)
            if read.returncode != 0:
                problems.append(f"{service} (uid {uid}) cannot read {name}: "
                                f"{read.stdout.strip()} {read.stderr.strip()}"[:200])
            else:
                seen.append(f"{service}:{name}")
    # The mechanism, both ways: without the group an unprivileged uid is refused.
    path = stack.project_dir / ".secrets" / "grafana_db_password"
    image = "autofix-local/prometheus:2.42"
    base = ["run", "--rm", "--network", "none", "--entrypoint", "cat", "-u", "472:472",
            "-v", f"{path}:/run/secrets/grafana_db_password:ro"]
    denied = stack.docker(*base, image, "/run/secrets/grafana_db_password", check=False)
    allowed = stack.docker(*base[:-2], "--group-add", "61007", *base[-2:], image,
                           "/run/secrets/grafana_db_password", check=False)
    if denied.returncode == 0:
        problems.append("uid 472 without group 61007 read grafana_db_password")
    if allowed.returncode != 0:
        problems.append(f"uid 472 with group 61007 could not read it: {allowed.stderr}")
    return not problems, "; ".join(problems) or (
        f"{len(seen)} (service, secret) pairs read by the service's own uid; "
        "uid 472 refused without group 61007, allowed with it")


def check_prometheus_url(stack: Stack, config: dict[str, Any]) -> tuple[bool, str]:
    url = config["services"]["receiver"]["environment"].get("AUTOFIX_PROMETHEUS_URL")
    if url != "http://prometheus:9090":
        return False, f"AUTOFIX_PROMETHEUS_URL={url!r}"
    status, body = stack.probe(stack.container("receiver"), "http", "GET",
                               f"{url}/api/v1/query?query=up")
    ok = status == 200 and '"status":"success"' in body
    return ok, f"receiver -> {url}/api/v1/query: {status} {body[:80]}"


# The start body that reconfigured a container through the old proxy (issue 26 finding 6).
ATTACK_START = {"Binds": ["/etc:/host-etc"], "Privileged": True}


def exec_run_body(container: str) -> dict[str, Any]:
    """The docker SDK's exec_run(["true"]) body (json.dumps keeps this order)."""
    return {"Container": container, "User": "", "Privileged": False, "Tty": False,
            "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Cmd": ["true"]}


# (method, path, body, expected): 403 means refused by the proxy; anything else must be
# the daemon's own answer.
def receiver_proxy_table(probe_id: str, victim_id: str
                         ) -> list[tuple[str, str, Any, set[int]]]:
    c, v = PROBE_CONTAINER, VICTIM_CONTAINER
    return [
        ("GET", "/_ping", None, {200}),
        ("HEAD", "/_ping", None, {200}),
        ("GET", "/version", None, {200}),
        ("GET", f"/v1.41/containers/{c}/json", None, {200}),
        ("GET", f"/v1.24/containers/{probe_id}/json", None, {200}),
        ("GET", "/v1.41/containers/no-such-container/json", None, {404}),
        # a change names the container by id (as the SDK does); it must be opted in
        ("POST", f"/v1.41/containers/{probe_id}/stop?t=1", None, {204}),
        ("POST", f"/v1.41/containers/{probe_id}/start", None, {204}),
        ("POST", f"/v1.41/containers/{probe_id}/restart?t=1", None, {204}),
        ("POST", f"/v1.41/containers/{probe_id}/kill?signal=SIGKILL", None, {204}),
        ("POST", f"/v1.41/containers/{probe_id}/start", None, {204}),
        # evidence before action: the log tail, one stats sample, lifecycle events
        ("GET", f"/v1.41/containers/{c}/logs?stdout=1&stderr=1&tail=5", None, {200}),
        ("GET", f"/v1.41/containers/{c}/stats?stream=0&one-shot=1", None, {200}),
        ("GET", "/v1.41/events?since=1&until=2", None, {200}),
        ("GET", "/v1.41/containers/json?all=1", None, {200}),  # who depends on whom
        ("POST", f"/v1.41/containers/{c}/logs", None, {403}),
        # refused: a start that carries a configuration (issue 26 finding 6), old API
        # versions, unversioned paths, an exec other than the SDK's exec_run
        ("POST", f"/v1.23/containers/{v}/start", ATTACK_START, {403}),
        ("POST", f"/v1.41/containers/{v}/start", ATTACK_START, {403}),
        ("POST", f"/v1.12/containers/{v}/start", None, {403}),
        ("GET", f"/containers/{probe_id}/json", None, {403}),
        ("POST", f"/v1.41/containers/{probe_id}/exec",
         {"Cmd": ["true"], "Privileged": True, "User": "root"}, {403}),
        # a container that is not opted in (the victim), or named where an id is needed
        ("POST", f"/v1.41/containers/{victim_id}/exec", exec_run_body(victim_id), {403}),
        ("POST", f"/v1.41/containers/{victim_id}/restart", None, {403}),
        ("POST", f"/v1.41/containers/{c}/restart", None, {403}),
        ("POST", "/v1.41/containers/create?name=afc-evil",
         {"Image": "autofix/python-base:local", "Cmd": ["true"],
          "HostConfig": {"Binds": ["/etc:/host-etc"], "Privileged": True}}, {403}),
        ("POST", "/containers/create", {"Image": "autofix/python-base:local"}, {403}),
        ("PUT", f"/v1.41/containers/{v}/archive?path=/tmp", None, {403}),
        ("GET", f"/v1.41/containers/{c}/archive?path=/etc", None, {403}),
        ("HEAD", f"/v1.41/containers/{c}/archive?path=/etc", None, {403}),
        ("POST", f"/v1.41/containers/{v}/update", {"Memory": 0}, {403}),
        ("DELETE", f"/v1.41/containers/{v}?force=1", None, {403}),
        ("DELETE", f"/containers/{v}", None, {403}),
        ("POST", f"/v1.41/containers/{v}/rename?name=afc-renamed", None, {403}),
        ("POST", f"/v1.41/containers/{v}/pause", None, {403}),
        ("POST", f"/v1.41/containers/{c}/attach?stream=1&stdout=1", None, {403}),
        ("GET", f"/v1.41/containers/{c}/export", None, {403}),
        ("GET", f"/v1.41/containers/{c}/top", None, {403}),
        ("POST", "/v1.41/containers/json", None, {403}),
        # prune only what carries a label nothing has, should the proxy let it through
        ("POST", "/v1.41/containers/prune?filters=%7B%22label%22%3A%5B%22afc-none%22%5D%7D",
         None, {403}),
        ("POST", "/v1.41/exec/" + "0" * 64 + "/resize?h=1&w=1", None, {403}),
        ("GET", "/v1.41/images/json", None, {403}),
        ("POST", "/v1.41/images/create?fromImage=alpine&tag=latest", None, {403}),
        ("DELETE", "/v1.41/images/afc-no-such-image:latest", None, {403}),
        ("GET", "/v1.41/volumes", None, {403}),
        ("POST", "/v1.41/volumes/create", {"Name": "afc-evil"}, {403}),
        ("POST", "/v1.41/build", None, {403}),
        ("GET", "/v1.41/networks", None, {403}),
        ("POST", "/v1.41/networks/create", {"Name": "afc-evil"}, {403}),
        ("GET", "/v1.41/info", None, {200}),  # the follower's daemon id; read-only
        ("GET", "/v1.41/system/df", None, {403}),
        ("POST", "/v1.41/swarm/init", {}, {403}),
        ("GET", "/v1.41/secrets", None, {403}),
        ("GET", "/v1.41/plugins", None, {403}),
        ("POST", "/v1.41/session", None, {403}),
        ("POST", "/v1.41/auth", {}, {403}),
        # path tricks
        ("GET", f"/v1.41/containers/{c}/../../images/json", None, {403}),
        ("GET", "/v1.41/containers/%2e%2e/images/json", None, {403}),
        ("POST", "/v1.41/containers/create/../create", {"Image": "x"}, {403}),
        ("POST", "//containers/create", {"Image": "x"}, {403}),
        ("POST", "/v1.41/containers/create/exec", exec_run_body("create"), {403}),
    ]


def check_receiver_proxy(stack: Stack) -> tuple[bool, str]:
    probe_id = stack.inspect(PROBE_CONTAINER)["Id"]
    table = receiver_proxy_table(probe_id, stack.inspect(VICTIM_CONTAINER)["Id"])
    got = stack.probe(stack.container("receiver"), "proxy", "http://docker-proxy:2375",
                      json.dumps([[m, p, b] for m, p, b, _ in table]))
    bad = [f"{m} {p} -> {g} (want {sorted(w)})" for (m, p, _, w), g in zip(table, got)
           if g not in w]
    # the exec action's calls: create, start (upgraded stream), inspect
    try:
        code, output = stack.probe(stack.container("receiver"), "exec",
                                   "tcp://docker-proxy:2375", PROBE_CONTAINER)
    except RuntimeError as exc:
        code, output = -1, str(exc)[-200:]
    if (code, output) != (0, "exec-ok"):
        bad.append(f"exec through the proxy: {code} {output!r}")
    # nothing refused happened anyway
    names = stack.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    vols = stack.docker("volume", "ls", "-q").stdout.split()
    if not {PROBE_CONTAINER, VICTIM_CONTAINER} <= set(names) or "afc-evil" in names \
            or "afc-renamed" in names:
        bad.append(f"containers now: {names}")
    if "afc-evil" in vols:
        bad.append("volume afc-evil exists")
    victim = stack.inspect(VICTIM_CONTAINER)["HostConfig"]
    if victim.get("Binds") or victim.get("Privileged"):
        bad.append(f"victim reconfigured: Binds {victim.get('Binds')}, "
                   f"Privileged {victim.get('Privileged')}")
    allowed = sum(1 for *_, w in table if w != {403})
    return not bad, "; ".join(bad) or (
        f"{allowed} allowed calls answered by dockerd, exec create/start/inspect ok, "
        f"{len(table) - allowed} refused with 403")


def check_readonly_proxy(stack: Stack) -> tuple[bool, str]:
    table = [
        ("GET", "/_ping", None, {200}), ("GET", "/v1.41/version", None, {200}),
        ("GET", "/v1.41/containers/json?all=1", None, {200}),
        ("GET", "/v1.41/networks", None, {200}),
        ("GET", f"/v1.41/containers/{PROBE_CONTAINER}/json", None, {403}),
        ("POST", f"/v1.41/containers/{PROBE_CONTAINER}/restart", None, {403}),
        ("POST", f"/v1.41/containers/{PROBE_CONTAINER}/exec", {"Cmd": ["true"]}, {403}),
        ("POST", "/v1.41/containers/create", {"Image": "x"}, {403}),
        ("DELETE", f"/v1.41/containers/{PROBE_CONTAINER}", None, {403}),
        ("POST", "/v1.41/networks/create", {"Name": "afc-evil"}, {403}),
        ("GET", "/v1.41/images/json", None, {403}), ("GET", "/v1.41/info", None, {403}),
        ("GET", "/v1.41/events?until=1", None, {403}), ("GET", "/v1.41/volumes", None, {403}),
        ("GET", "/containers/json", None, {403}), ("GET", "/v1.23/containers/json", None, {403}),
    ]
    # A throwaway client on the proxy's internal network, where Prometheus sits.
    out = stack.docker("run", "--rm", "-i", "--network", f"{stack.project}_docker-api-ro",
                       "autofix/python-base:local", "python3", "-", "proxy",
                       "http://docker-proxy-ro:2375",
                       json.dumps([[m, p, b] for m, p, b, _ in table]),
                       input_text=PROBES.read_text())
    got = json.loads(out.stdout.strip().splitlines()[-1])
    bad = [f"{m} {p} -> {g} (want {sorted(w)})" for (m, p, _, w), g in zip(table, got)
           if g not in w]
    return not bad, "; ".join(bad) or f"{len(table)} requests as expected"


def proxy_denials(stack: Stack, service: str) -> list[str]:
    logs = stack.docker("logs", stack.container(service)).stdout + \
        stack.docker("logs", stack.container(service)).stderr
    return [line for line in logs.splitlines() if " 403 " in line]


def check_isolation(stack: Stack) -> tuple[bool, str]:
    targets: list[tuple[str, int]] = []
    ports = {"postgres": 5432, "alertmanager": 9093, "receiver": 8080,
             "docker-proxy": 2375, "docker-proxy-ro": 2375}
    for service, port in ports.items():
        targets.append((service, port))
        nets = stack.inspect(stack.container(service))["NetworkSettings"]["Networks"]
        targets += [(n["IPAddress"], port) for n in nets.values() if n.get("IPAddress")]
    # the published ports, through the gateway of target_app's network
    app_nets = stack.inspect(stack.container("target_app"))["NetworkSettings"]["Networks"]
    gateway = next(iter(app_nets.values()))["Gateway"]
    targets += [(gateway, p) for p in (8080, 9093, 9090, 5432)]
    got = stack.probe(stack.container("target_app"), "connect", json.dumps(targets))
    reached = [f"{h}:{p}" for (h, p), g in zip(targets, got) if g == "ok"]
    # Positive control: the same probe does reach what target_app shares a network with.
    control = stack.probe(stack.container("target_app"), "connect",
                          json.dumps([["prometheus", 9090]]))
    # Prometheus is reachable (it scrapes target_app) but has no lifecycle API to abuse.
    reload_status, _ = stack.probe(stack.container("target_app"), "http", "POST",
                                   "http://prometheus:9090/-/reload")
    quit_status, _ = stack.probe(stack.container("target_app"), "http", "POST",
                                 "http://prometheus:9090/-/quit")
    bad = []
    if reached:
        bad.append(f"target_app reached {reached}")
    if control != ["ok"]:
        bad.append(f"positive control failed: {control}")
    if reload_status != 403 or quit_status != 403:
        bad.append(f"prometheus lifecycle from target_app: reload {reload_status}, "
                   f"quit {quit_status}")
    return not bad, "; ".join(bad) or (
        f"{len(targets)} name/address:port pairs unreachable from target_app; prometheus:9090 "
        "reachable (scraping) with /-/reload and /-/quit refused (403)")


def check_receiver_role(stack: Stack) -> tuple[bool, str]:
    facts = stack.probe(stack.container("receiver"), "receiver-db")
    ok = (facts["user"] == "autofix" and not facts["superuser"] and not facts["createrole"]
          and not facts["createdb"] and not facts["bypassrls"]
          and facts["database_owner"] == "autofix" and facts["incidents_owner"] == "autofix"
          and facts["alembic_version"] and facts["advisory_lock"] is True)
    return ok, json.dumps(facts)


def psql_reader(stack: Stack, *sql: str) -> subprocess.CompletedProcess[str]:
    cmd = ["exec", stack.container("postgres"), "psql", "-X", "-v", "ON_ERROR_STOP=1", "-At",
           "-U", "grafana_reader", "-d", "autofix"]
    for statement in sql:
        cmd += ["-c", statement]
    return stack.docker(*cmd, check=False)


def check_reader(stack: Stack) -> tuple[bool, str]:
    bad = []
    rw = "SET default_transaction_read_only = off"   # the reader may do this itself
    for sql, needle in [("SELECT lo_from_bytea(0, 'x')", "permission denied for function"),
                        ("SELECT lo_create(0)", "permission denied for function"),
                        ("SELECT lo_import('/etc/passwd')", "permission denied for function"),
                        ("SELECT pg_advisory_lock(1)", "permission denied for function"),
                        ("SELECT count(*) FROM runs", "permission denied for table"),
                        ("CREATE TABLE t (x int)", "permission denied for schema"),
                        ("CREATE TEMP TABLE t (x int)", "permission denied to create temporary")]:
        result = psql_reader(stack, rw, sql)
        if result.returncode == 0 or needle not in result.stderr:
            bad.append(f"{sql}: rc={result.returncode} {result.stderr.strip()[:120]}")
    allowed = psql_reader(stack, "SELECT count(*) FROM incidents",
                          "SELECT count(*) FROM actions")
    if allowed.returncode != 0:
        bad.append(f"reader cannot read its tables: {allowed.stderr.strip()}")
    return not bad, "; ".join(bad) or (
        "grafana_reader: lo_from_bytea/lo_create/lo_import/pg_advisory_lock, runs, CREATE "
        "refused; SELECT on incidents and actions works")


def api(stack: Stack, path: str) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:8080{path}", headers={
        "Authorization": f"Bearer {stack.secret('autofix_api_token')}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def check_names_and_restart_policies(stack: Stack) -> tuple[bool, str]:
    """Each service: one container (the override's `deploy.replicas: 1` wins over the
    Swarm replicas), named by the tool's scheme, with `restart: unless-stopped` as the file
    says (a `deploy.restart_policy` would replace it, under 1.29.2 and v2 alike)."""
    bad, names = [], []
    for service in SERVICES:
        found = stack.service_containers(service)
        want = container_name(stack.project, service, stack.compose_version)
        policy = stack.inspect(found[0])["HostConfig"]["RestartPolicy"]["Name"] if found else ""
        if found != [want]:
            bad.append(f"{service}: containers {found}, want [{want}]")
        if policy != "unless-stopped":
            bad.append(f"{service}: restart policy {policy!r}")
        names += found
    return not bad, "; ".join(bad) or (
        f"compose {stack.compose_version}: {len(names)} containers, one per service, named "
        f"like {container_name('P', 'S', stack.compose_version)}, all unless-stopped")


def check_loop(stack: Stack) -> tuple[bool, str]:
    """The hang is found by its compose service (the `service` label, the same under 1.29
    and v2); autofix acts on, and keys the breaker by, the container's Docker name."""
    container = stack.container("target_app")
    started_before = stack.inspect(container)["State"]["StartedAt"]
    # A slow first start on a busy host can alert before the hang (and a slow restart
    # after it): the hang's incident is the oldest one not already resolved now.
    done_before = {i["id"] for i in target_app_incidents(stack) if i.get("status") == "resolved"}
    req = urllib.request.Request("http://127.0.0.1:8000/fault/hang", method="POST", data=b"",
                                 headers={"Authorization":
                                          f"Bearer {stack.secret('target_app_fault_token')}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        if resp.status != 202:
            return False, f"fault endpoint answered {resp.status}"
    t0 = time.monotonic()
    log(f"hang injected into {container}; waiting for autofix")
    marks: dict[str, float] = {}
    deadline = t0 + LOOP_TIMEOUT_S
    incident: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            mine = [i for i in target_app_incidents(stack) if i["id"] not in done_before]
        except (urllib.error.URLError, OSError):
            time.sleep(2)
            continue
        if mine:
            incident = min(mine, key=lambda i: i["id"])
            marks.setdefault("incident", time.monotonic() - t0)
            if stack.inspect(container)["State"]["StartedAt"] != started_before:
                marks.setdefault("restarted", time.monotonic() - t0)
            if incident.get("status") == "resolved":
                marks["resolved"] = time.monotonic() - t0
                break
        time.sleep(2)
    if not incident:
        return False, f"no TargetDown incident for service target_app within {LOOP_TIMEOUT_S}s"
    detail = api(stack, f"/api/v1/incidents/{incident['id']}")
    breakers = [b["target"] for b in api(stack, "/api/v1/breakers")["items"]]
    actions = detail.get("actions", [])
    restarts = [a for a in actions if a.get("action") == "restart"]
    restarted = stack.inspect(container)["State"]["StartedAt"] != started_before
    healthy = (stack.inspect(container)["State"].get("Health") or {}).get("Status")
    ok = (incident.get("status") == "resolved" and restarted
          and any(a.get("outcome") == "succeeded" for a in restarts)
          and incident.get("target") == container and breakers == [container])
    summary = ", ".join(f"{k} at {v:.1f}s" for k, v in marks.items())
    return ok, (f"incident {incident.get('id')} (service target_app) {incident.get('status')} "
                f"on target {incident.get('target')}; breakers {breakers}; restart actions "
                f"{[a.get('outcome') for a in restarts]}; container restarted={restarted} "
                f"health={healthy}; {summary}")


def target_app_incidents(stack: Stack) -> list[dict[str, Any]]:
    """TargetDown incidents of the compose service target_app (the API lists newest first)."""
    items = api(stack, "/api/v1/incidents?alertname=TargetDown")
    items = items.get("items", items) if isinstance(items, dict) else items
    return [i for i in items if (i.get("labels") or {}).get("service") == "target_app"]


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")   # so that teardown still runs


def inside(workdir: Path, compose_file: Path = COMPOSE, images: Path | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupted)
    stack = Stack(workdir, compose_file, images)
    report = Report()
    timings: dict[str, float] = {}
    try:
        timings = stack.start()
        config = compose_config(stack)
        report.run("compose: one container per service, named by the tool's scheme, "
                   "restart unless-stopped", lambda: check_names_and_restart_policies(stack))
        report.run("secrets: files 0440 root:<own gid>, group_add = exactly what each "
                   "service mounts", lambda: check_secret_files(stack, config))
        report.run("secrets: each service reads its secrets as its own uid",
                   lambda: check_secrets_readable(stack, config))
        report.run("receiver: AUTOFIX_PROMETHEUS_URL set and Prometheus answers",
                   lambda: check_prometheus_url(stack, config))
        report.run("postgres: the receiver's role is the owner, not a superuser",
                   lambda: check_receiver_role(stack))
        report.run("postgres: the Grafana reader cannot lo_from_bytea or lock",
                   lambda: check_reader(stack))
        report.run("networks: target_app reaches nothing but Prometheus",
                   lambda: check_isolation(stack))
        t = time.monotonic()
        report.run("loop: hang -> TargetDown -> autofix restarts -> incident resolved",
                   lambda: check_loop(stack))
        timings["loop"] = time.monotonic() - t
        for service in ("docker-proxy", "docker-proxy-ro"):
            report.run(f"{service}: refused nothing the stack itself asked for",
                       lambda s=service: (not proxy_denials(stack, s),  # type: ignore[misc]
                                          "; ".join(proxy_denials(stack, s))[:300]))
        for name, label in ((PROBE_CONTAINER, ["--label", "autofix.enable=true"]),
                            (VICTIM_CONTAINER, [])):
            stack.docker("run", "-d", "--name", name, "--network", "none", *label,
                         "autofix/python-base:local", "python3", "-c",
                         "import time; time.sleep(3600)")
        report.run("docker-proxy (receiver): allow/deny table",
                   lambda: check_receiver_proxy(stack))
        report.run("docker-proxy-ro (prometheus): allow/deny table",
                   lambda: check_readonly_proxy(stack))
    except Exception as exc:
        report.check("stack setup", False, f"{type(exc).__name__}: {exc}")
    finally:
        hold_for_inspection(stack, report)
        t = time.monotonic()
        try:
            stack.stop()
        finally:
            timings["teardown"] = time.monotonic() - t
    return print_report("make compose-test", report, timings,
                        "grafana (no image can be assembled from Debian packages here)",
                        f"{shlex.join(stack.compose_cmd)} {stack.compose_version}")


def hold_for_inspection(stack: Stack, report: Report) -> None:
    hold = float(os.environ.get("AUTOFIX_COMPOSE_HOLD_S", "0"))
    if hold and not report.ok:
        log(f"holding the stack {hold:.0f}s for inspection: DOCKER_HOST={stack.dockerd.url}")
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(hold)


def print_report(title: str, report: Report, timings: dict[str, float], not_started: str,
                 tool: str = "") -> int:
    """The summary the pytest wrappers show on failure; the exit status."""
    print(f"\n== {title} ==")
    if tool:
        print(f"with: {tool}")
    for name, ok, detail in report.results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}\n      {detail}")
    print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    print(f"not started: {not_started}")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None, doc: str = __doc__ or "",
         module: str = "tests.harness.compose_stack", tools: tuple[str, ...] = ("compose",),
         run_inside: Callable[[Path, Path, Path | None], int] = inside) -> int:
    """The command line of this harness, and of others built on it (swarm_stack)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--compose-file", type=Path, default=COMPOSE)
    parser.add_argument("--images", type=Path, default=None,
                        help="a `docker save` of every local image, loaded instead of built")
    parser.add_argument("--compose", default=os.environ.get(COMPOSE_ENV) or DEFAULT_COMPOSE,
                        help="`docker compose` (v2, default) or `docker-compose` (1.29)")
    args = parser.parse_args(argv)
    os.environ[COMPOSE_ENV] = args.compose   # inherited by the process inside the namespace
    if args.inside:
        return run_inside(args.workdir, args.compose_file.resolve(), args.images)
    return outer(args, module, tools)


if __name__ == "__main__":
    sys.exit(main())
