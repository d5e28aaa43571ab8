"""`make stack-test`: docker-compose.yml deployed as a Swarm stack, converged, torn down.

    python -m tests.harness.swarm_stack [--keep-workdir] [--compose-file FILE]

The private network and mount namespace, private dockerd, local images and secret files of
`make compose-test` (tests/harness/compose_stack.py, imported), then the commands of
docs/deploy.md's "Docker Swarm" section, in the project directory:

1. `docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:<free port>`
2. `docker stack deploy --resolve-image never -c docker-compose.yml -c <STACK_LOCAL> autofix`:
   stack deploy creates the Swarm secrets from the compose file's `file:` entries;
   STACK_LOCAL swaps in the local images and runs no Grafana (no local image: 0 replicas).
3. Waits until every service has its replicas running and healthy (the receiver: 2, both
   migrating the one PostgreSQL database at startup), then checks (each one named).
4. `docker stack rm autofix` (its services, networks and secrets must go), `docker swarm
   leave --force`, ingress and docker_gwbridge removed, dockerd stopped, namespace gone.

No published port is used: Swarm's routing mesh (ingress) needs iptables, which the private
dockerd runs without; receivers are reached with `docker exec` on their own loopback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.harness import compose_stack as cs
from tests.harness.procs import free_port
from tests.harness.swarm import Swarm

STACK = "autofix"
STACK_LOCAL = cs.REPO / "tests/harness/docker-stack.local.yml"
# docs/deploy.md section 12, as a user types them (tests/test_swarm_stack.py compares).
SWARM_INIT = ("swarm", "init", "--advertise-addr", "127.0.0.1")
STACK_DEPLOY = ("stack", "deploy", "--resolve-image", "never", "-c", "docker-compose.yml")
STACK_RM = ("stack", "rm", STACK)
REPLICAS = {service: 1 for service in cs.SERVICES} | {"receiver": 2, "grafana": 0}
CONVERGE_TIMEOUT_S = 600   # seven services starting on 2 busy cores; the receivers retry
TEARDOWN_TIMEOUT_S = 120
# What a lost race between two migrating receivers looks like in their logs.
MIGRATION_RACE = ("cannot migrate", "already exists", "UniqueViolation", "DuplicateTable")
log = cs.log


def stack_config(cli: Any, *files: Path) -> dict[str, Any]:
    """The files merged as `docker stack deploy` loads them: `docker stack config` where the
    CLI has it (23.0 and later); Debian's docker.io (20.10) has not, so there the files are
    merged here, a later file's keys over an earlier's, as the CLI does."""
    argv = [arg for file in files for arg in ("-c", str(file))]
    out = cli("stack", "config", *argv)
    if out.returncode == 0:
        config: dict[str, Any] = yaml.safe_load(out.stdout)
        return config
    if "unknown" not in out.stderr and "Usage" not in out.stdout + out.stderr:
        raise RuntimeError(out.stderr)
    merged: dict[str, Any] = {}
    for file in files:
        _merge(merged, yaml.safe_load(file.read_text()))
    return merged


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class SwarmStack(cs.Stack):
    def __init__(self, workdir: Path, compose_file: Path = cs.COMPOSE,
                 images: Path | None = None) -> None:
        super().__init__(workdir, compose_file, images)
        self.swarm: Swarm | None = None
        self.deploy_warnings: list[str] = []

    def stack_cli(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *argv], env=self.env, cwd=self.project_dir,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def prepare(self) -> dict[str, float]:
        timings = super().prepare()
        # Relative paths (./prometheus, ./.secrets/...) resolve next to the first -c file.
        (self.project_dir / "docker-compose.yml").symlink_to(self.compose_file)
        return timings

    def up(self) -> None:
        port = free_port()
        self.docker(*SWARM_INIT, "--listen-addr", f"127.0.0.1:{port}")
        self.swarm = Swarm(dockerd=self.dockerd, client=self.dockerd.client(), listen_port=port)
        deploy = self.stack_cli(*STACK_DEPLOY, "-c", str(STACK_LOCAL), STACK)
        if deploy.returncode != 0:
            raise RuntimeError(f"docker stack deploy failed:\n{deploy.stdout}\n{deploy.stderr}")
        self.deploy_warnings = [line for line in deploy.stderr.splitlines() if line.strip()]
        self.wait_converged()

    def service_containers(self, service: str, all_states: bool = False) -> list[str]:
        out = self.docker("ps", "-q", *(["-a"] if all_states else []), "--filter",
                          f"label=com.docker.swarm.service.name={STACK}_{service}").stdout
        return out.split()

    def container(self, service: str) -> str:
        running = self.service_containers(service)
        if not running:
            raise RuntimeError(f"no running task of {STACK}_{service}")
        return running[0]

    def converged(self) -> dict[str, str]:
        """service -> 'healthy running/wanted' for every service not yet where it should be."""
        lagging = {}
        for service, wanted in REPLICAS.items():
            ids = self.service_containers(service)
            healthy = [c for c in ids
                       if (self.inspect(c)["State"].get("Health") or {}).get("Status")
                       == "healthy"]
            if len(healthy) != wanted or len(ids) != wanted:
                lagging[service] = f"{len(healthy)} healthy, {len(ids)} running/{wanted}"
        return lagging

    def wait_converged(self) -> None:
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        lagging: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                lagging = self.converged()
            except RuntimeError as exc:   # a task's container went away between ps and inspect
                lagging = {"?": str(exc)}
            if not lagging:
                log(f"converged: {REPLICAS}")
                return
            time.sleep(3)
        tasks = self.stack_cli("stack", "ps", "--no-trunc", "--format",
                               "{{.Name}} {{.DesiredState}} {{.CurrentState}} {{.Error}}", STACK)
        raise RuntimeError(f"not converged after {CONVERGE_TIMEOUT_S}s: {lagging}\n"
                           f"{tasks.stdout[-6000:]}")

    def stack_config(self) -> dict[str, Any]:
        return stack_config(self.stack_cli, self.project_dir / "docker-compose.yml",
                            STACK_LOCAL)

    def remove_stack(self) -> tuple[bool, str]:
        """`docker stack rm`; then no service, container, network or secret of the stack."""
        rm = self.stack_cli(*STACK_RM)
        label = f"label=com.docker.stack.namespace={STACK}"
        left: dict[str, list[str]] = {}
        deadline = time.monotonic() + TEARDOWN_TIMEOUT_S
        while time.monotonic() < deadline:
            left = {kind: self.docker(*cmd, "--filter", label, check=False).stdout.split()
                    for kind, cmd in (("services", ("service", "ls", "-q")),
                                      ("containers", ("ps", "-aq")),
                                      ("networks", ("network", "ls", "-q")),
                                      ("secrets", ("secret", "ls", "-q")))}
            if rm.returncode == 0 and not any(left.values()):
                return True, "services, containers, networks and secrets of the stack gone"
            time.sleep(2)
        return False, f"rc={rm.returncode} {rm.stderr.strip()[:200]}; left: {left}"

    def stop(self) -> None:
        if self.swarm is None:
            self.dockerd.stop()
            return
        # Swarm.stop: services, leave --force, ingress and docker_gwbridge, dockerd.
        self.swarm.stop()
        log("swarm left, ingress and docker_gwbridge removed, dockerd stopped")


# --- the checks ----------------------------------------------------------------------------

def check_receivers(stack: SwarmStack) -> tuple[bool, str]:
    answers = {}
    for cid in stack.service_containers("receiver"):
        status, body = stack.probe(cid, "http", "GET", "http://127.0.0.1:8080/healthz")
        answers[cid[:12]] = f"{status} {body.strip()[:60]}"
    ok = len(answers) == 2 and all(a.startswith("200 ") for a in answers.values())
    return ok, f"/healthz per replica: {answers}"


def check_one_migration(stack: SwarmStack) -> tuple[bool, str]:
    versions = stack.docker("exec", stack.container("postgres"), "psql", "-X", "-At",
                            "-U", "postgres", "-d", "autofix", "-c",
                            "SELECT version_num FROM alembic_version").stdout.split()
    raced = []
    tasks = stack.service_containers("receiver", all_states=True)
    for cid in tasks:
        out = stack.docker("logs", cid, check=False)
        hits = [line for line in (out.stdout + out.stderr).splitlines()
                if any(needle in line for needle in MIGRATION_RACE)]
        raced += [f"{cid[:12]}: {hits[0][:160]}"] if hits else []
    ok = len(versions) == 1 and not raced
    return ok, (f"alembic_version {versions}; {len(tasks)} receiver task container(s), "
                f"migration errors in their logs: {raced or 'none'}")


def check_swarm_secrets(stack: SwarmStack, config: dict[str, Any]) -> tuple[bool, str]:
    """Swarm writes each secret with the long syntax's uid, gid and mode."""
    stat = ("import os, sys; s = os.stat(sys.argv[1]); "
            "print(s.st_uid, s.st_gid, oct(s.st_mode & 0o777))")
    problems, seen = [], 0
    for service in cs.SERVICES:
        cid = stack.container(service)
        for secret in config["services"][service].get("secrets", []):
            path = f"/run/secrets/{secret['source']}"
            run = stack.docker("exec", cid, "python3", "-c", stat, path, check=False)
            got = run.stdout if run.returncode == 0 else ""
            if not got:   # no python3 in the image (PostgreSQL, HAProxy): busybox ls
                fields = stack.docker("exec", cid, "ls", "-ln", path).stdout.split()
                mode = sum(1 << (8 - i) for i, c in enumerate(fields[0][1:10]) if c != "-")
                got = f"{fields[2]} {fields[3]} {oct(mode)}"
            want = f"{secret['uid']} {secret['gid']} {oct(int(secret['mode']))}"
            seen += 1
            if got.strip() != want:
                problems.append(f"{service} {path}: {got.strip()} (want {want})")
    return not problems, "; ".join(problems) or f"{seen} mounts: owner uid:gid and mode as declared"


def inside(workdir: Path, compose_file: Path = cs.COMPOSE, images: Path | None = None) -> int:
    signal.signal(signal.SIGTERM, cs._interrupted)
    stack = SwarmStack(workdir, compose_file, images)
    report = cs.Report()
    timings: dict[str, float] = {}
    try:
        timings = stack.prepare()
        t = time.monotonic()
        stack.up()
        timings["stack deploy (converged)"] = time.monotonic() - t
        report.check("stack deploy: every service but grafana has its replicas running and "
                     "healthy", True, f"{REPLICAS}; warnings: {stack.deploy_warnings}")
        config = stack.stack_config()
        report.run("receiver: 2 replicas, each answers /healthz", lambda: check_receivers(stack))
        report.run("receiver: one schema, no replica lost a migration race",
                   lambda: check_one_migration(stack))
        report.run("secrets: Swarm mounts them with the declared uid/gid/mode",
                   lambda: check_swarm_secrets(stack, config))
        report.run("secrets: each service reads its secrets as its own uid",
                   lambda: cs.check_secrets_readable(stack, config))
        report.run("receiver: PostgreSQL role is the owner, not a superuser (overlay `db`)",
                   lambda: cs.check_receiver_role(stack))
        report.run("receiver: Prometheus answers at AUTOFIX_PROMETHEUS_URL (overlay "
                   "`monitoring`)", lambda: cs.check_prometheus_url(stack, config))
        report.run("networks: target_app reaches nothing but Prometheus",
                   lambda: cs.check_isolation(stack))
    except Exception as exc:
        report.check("stack setup", False, f"{type(exc).__name__}: {exc}")
    finally:
        cs.hold_for_inspection(stack, report)
        t = time.monotonic()
        try:
            if stack.swarm is not None:
                report.run("teardown: docker stack rm removes everything of the stack",
                           stack.remove_stack)
        finally:
            stack.stop()
            timings["teardown"] = time.monotonic() - t
    return cs.print_report("make stack-test", report, timings,
                           "grafana (0 replicas: no image can be assembled from Debian packages)")


def main(argv: list[str] | None = None) -> int:
    return cs.main(argv, __doc__ or "", "tests.harness.swarm_stack", (), inside)


if __name__ == "__main__":
    sys.exit(main())
