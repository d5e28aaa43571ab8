"""`make demo`: the whole loop, live, on this machine, with a scripted story.

    python -m tests.demo up      # start everything, drive the story, leave it running
    python -m tests.demo down    # stop everything `up` started

Real components only: PostgreSQL, a private dockerd, target_app in a locally built
image, `autofix serve`, Prometheus and Alertmanager with the project's own configs
(addresses, secrets and intervals overridden as in tests/harness/overrides.py), and a
local stand-in for Slack. Every figure printed is measured, never canned.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.harness.procs import LOOPBACK, free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = REPO / ".demo"
STATE = STATE_DIR / "state.json"


def say(text: str = "") -> None:
    print(text, flush=True)


# --- up -------------------------------------------------------------------------------------
def up() -> int:
    if STATE.exists():
        say("A previous demo is still running: stopping it first (make demo is re-runnable).")
        down()
    from receiver.store.migrate import upgrade
    from tests.harness.dockerd import start_dockerd
    from tests.harness.images import ensure_target_app_image
    from tests.harness.postgres import start_postgres
    from tests.harness.stack import Stack

    STATE_DIR.mkdir(exist_ok=True)
    state: dict[str, Any] = {"pids": [], "started": time.time()}
    say("Starting PostgreSQL, a private dockerd, and building the target_app image offline…")
    postgres = start_postgres(discard_at_exit=False)  # runs until `demo down`
    state["postgres"] = {"root": str(postgres.root), "data": str(postgres.data),
                         "pg_ctl": postgres.pg_ctl, "user": postgres.run_as}
    _save(state)
    dockerd = start_dockerd(STATE_DIR / "dockerd")
    state["dockerd"] = {"pid": dockerd.proc.pid if dockerd.proc else None, "url": dockerd.url,
                        "short_dir": str(dockerd.short_dir),
                        "data": str(dockerd.workdir / "data")}
    _save(state)
    image = ensure_target_app_image(dockerd)
    url = postgres.create_database("autofix_demo")
    upgrade(url)
    slack_port = free_port()
    slack_log = STATE_DIR / "slack.jsonl"
    slack_log.write_text("")
    slack = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.slack_stub", "--port", str(slack_port),
         "--record", str(slack_log)], cwd=REPO, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state["pids"].append(slack.pid)
    _save(state)
    say("Starting Alertmanager, Prometheus and the autofix receiver…")
    stack = Stack(root=STATE_DIR / "stack", dockerd=dockerd, image=image, database_url=url)
    stack.start(slack_api_url=f"http://{LOOPBACK}:{slack_port}/api/")
    for process in (stack.receiver.process, stack.alertmanager.process, stack.prometheus.proc):
        if process is not None:
            state["pids"].append(process.pid)
    state["urls"] = {"prometheus": stack.prometheus.url, "alertmanager": stack.alertmanager.url,
                     "receiver": stack.receiver.url}
    state["api_token"] = stack.api_token
    _save(state)
    (STATE_DIR / "api_token").write_text(stack.api_token)
    story = Story(stack, slack_log)
    try:
        story.run()
    finally:
        state["containers"] = [t.name for t in stack.targets]
        _save(state)
    _print_where(state)
    return 0


class Story:
    def __init__(self, stack: Any, slack_log: Path) -> None:
        self.stack = stack
        self.slack_log = slack_log
        self.slack_seen = 0

    def run(self) -> None:
        stack = self.stack
        say("\nStarting two apps: demo-web (opted in) and demo-loop (opted in, crash-looping)")
        web = stack.run_target()
        self.chapter(1, "a crash, then a restart", web, "TargetDown", "crash")
        self.chapter(2, "a hang, then a restart", web, "TargetDown", "hang")
        self.chapter(3, "an error spike, then a restart", web, "HighErrorRate", "error-spike",
                     {"ratio": 0.9, "duration_s": 600})
        self.crash_loop(stack.run_target())
        self.manual_run(web)

    def chapter(self, number: int, title: str, target: Any, alertname: str, fault: str,
                params: dict[str, Any] | None = None,
                awaited: tuple[str, ...] = ("incident resolved", "action finished")) -> Any:
        from tests.harness.timeline import Timeline

        say(f"\n== {number}. {title} ({target.name}) ==")
        timeline = Timeline(self.stack, target, alertname).start()
        printed: set[str] = set()
        target.fault(fault, params)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            self._print_new(timeline, printed, alertname)
            if all(event in timeline.events for event in awaited):
                break
            time.sleep(0.2)
        timeline.stop()
        self._print_new(timeline, printed, alertname)
        say(f"   time to detect {timeline.time_to_detect()}s, "
            f"time to recover {timeline.time_to_recover()}s")
        return timeline

    def _print_new(self, timeline: Any, printed: set[str], alertname: str) -> None:
        for name in sorted(timeline.events, key=lambda n: timeline.events[n]):
            if name not in printed:
                printed.add(name)
                detail = f" ({alertname})" if name.startswith("alert") else ""
                say(f"   +{timeline.seconds(name):6.2f}s  {name}{detail}")
        self._print_slack()

    def _print_slack(self) -> None:
        lines = self.slack_log.read_text().splitlines()
        for line in lines[self.slack_seen:]:
            body = json.loads(line).get("body", {})
            text = body.get("text") if isinstance(body, dict) else None
            if text:
                say(f"            slack: {text[:110]}")
        self.slack_seen = len(lines)

    def crash_loop(self, target: Any) -> None:
        say(f"\n== 4. a crash loop: the circuit breaker opens ({target.name}) ==")
        for attempt in range(1, 4):
            # Up and resolved is enough to crash it again: the breaker counts restarts, and
            # waiting for every verification step would stretch the loop past its window.
            self.chapter(4, f"crash #{attempt}", target, "TargetDown", "crash",
                         awaited=("incident resolved", "target up"))
            time.sleep(7)  # past the (scaled) cooldown, so each crash is a new chance to act
        say("   crash #4: autofix has restarted it 3 times within the breaker window")
        target.fault("crash")
        wait_for(lambda: any(a.reason == "breaker_open" for a in self.stack.actions(target.name)),
                 120, "breaker open")
        incident = self.stack.incidents(target.name)[-1]
        restarts = [a for a in self.stack.actions(target.name) if a.action == "restart"]
        _status, breakers = self.stack.api("GET", "/api/v1/breakers")
        state = {b["target"]: b for b in breakers.get("items", [])}.get(target.name, {})
        say(f"   breaker {state.get('state')} until {state.get('open_until')}; "
            f"restarts so far: {len(restarts)}; incident #{incident.id} is {incident.status}: "
            f"{incident.escalation_reason}")
        self._print_slack()

    def manual_run(self, target: Any) -> None:
        say(f"\n== 5. a manual playbook run through the API ({target.name}) ==")
        body = {"labels": {"container": target.name}, "reason": "demo: restart by hand",
                "actor": "demo"}
        say("   POST /api/v1/playbooks/restart-on-target-down/run "
            f"{json.dumps(body)}")
        status, answer = self.stack.api("POST",
                                        "/api/v1/playbooks/restart-on-target-down/run", body)
        say(f"   -> {status} {json.dumps(answer)}")
        if status != 202:
            return
        run_id = answer["run_id"]
        wait_for(lambda: self.stack.sql("select status from runs where id = :i", i=run_id)[0][0]
                 not in ("queued", "running"), 120, "manual run done")
        status, incident = self.stack.api("GET", f"/api/v1/incidents/{answer['incident_id']}")
        for action in incident.get("actions", []):
            say(f"   {action['action']}: {action['outcome']} in {action['duration_s']:.2f}s")
        self._print_slack()


def _print_where(state: dict[str, Any]) -> None:
    urls = state["urls"]
    say("\nThe stack is still running (stop it with `make demo-down`):")
    say(f"  Prometheus    {urls['prometheus']}  (alerts: {urls['prometheus']}/alerts)")
    say(f"  Alertmanager  {urls['alertmanager']}")
    say(f"  autofix API   {urls['receiver']}/api/v1  (token in .demo/api_token)")
    say("\nQuery incidents:")
    say(f'  curl -s -H "Authorization: Bearer $(cat .demo/api_token)" '
        f"{urls['receiver']}/api/v1/incidents | python3 -m json.tool")
    say(f'  curl -s -H "Authorization: Bearer $(cat .demo/api_token)" '
        f"'{urls['receiver']}/api/v1/actions?outcome=skipped'")


def _save(state: dict[str, Any]) -> None:
    STATE_DIR.mkdir(exist_ok=True)
    STATE.write_text(json.dumps(state, indent=2))


# --- down -----------------------------------------------------------------------------------
def down() -> int:
    if not STATE.exists():
        say("No demo is running.")
        return 0
    state = json.loads(STATE.read_text())
    for pid in state.get("pids", []):
        _kill_group(pid)
    dockerd = state.get("dockerd")
    if dockerd:
        _stop_dockerd(dockerd)
    postgres = state.get("postgres")
    if postgres:
        argv = [postgres["pg_ctl"], "-D", postgres["data"], "-m", "fast", "-w", "stop"]
        if postgres.get("user"):
            argv = ["runuser", "-u", postgres["user"], "--", *argv]
        subprocess.run(argv, capture_output=True, check=False, timeout=60)
        subprocess.run(["rm", "-rf", postgres["root"]], check=False)
    subprocess.run(["rm", "-rf", str(STATE_DIR)], check=False)
    say("Demo stopped: receiver, Prometheus, Alertmanager, Slack stand-in, containers, dockerd "
        "and PostgreSQL.")
    return 0


def _kill_group(pid: int, grace_s: float = 15) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _stop_dockerd(info: dict[str, Any]) -> None:
    import docker

    try:
        client = docker.DockerClient(base_url=info["url"], timeout=30)
        for container in client.containers.list(all=True):
            container.remove(force=True)
        client.close()
    except docker.errors.DockerException:
        pass
    if info.get("pid"):
        _kill_group(int(info["pid"]), grace_s=30)
    for root in (info["short_dir"], info["data"]):
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(root)]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    subprocess.run(["rm", "-rf", info["short_dir"]], check=False)


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    if command == "up":
        return up()
    if command == "down":
        return down()
    say("usage: python -m tests.demo up|down")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
