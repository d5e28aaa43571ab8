"""Dependents in order (issue #31): from the alert to the whole chain verified.

    .venv/bin/python -m bench.dependents [--repeats 5]

A private dockerd runs `parent` (busybox, host network) and `child` (network_mode
container:<parent id>), both opted in. `autofix serve --workers 2` on PostgreSQL with test
intervals (runner poll 0.1 s) and the host storm guard off (AUTOFIX_HOST_STORM_TARGETS=0:
each repeat makes two new containers, and after five repeats (ten targets in a minute) the
guard rightly holds the rest as a storm). Each repeat posts one TargetDown for the parent and waits
for both runs to succeed: the parent's (restart, wait_healthy running 0.5 s) and the
child's dependent run (restart, wait_healthy with the parent's params). Measured from just
before the webhook POST to the child's run finishing (its `finished_at`, the receiver's
clock on this same machine), and to this process seeing both succeeded (polled every
50 ms). Writes bench/results/dependents.json; not part of `make bench`.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

from bench.common import RESULTS
from bench.servers import Stack

NAME = "dependents"
RUNNING_FOR_S = 0.5
PLAYBOOKS = f"""
playbooks:
  - name: restart-on-target-down
    matchers: ['alertname="TargetDown"']
    target: "{{{{ labels.container }}}}"
    cooldown: 0s
    circuit_breaker: {{max_actions: 100, window: 10m, open_for: 1s, open_for_max: 1s,
                      reset_after: 1m}}
    actions:
      - restart: {{timeout_s: 5}}
      - wait_healthy: {{timeout_s: 30, running_for_s: {RUNNING_FOR_S}}}
"""


def _fire(server: Any, name: str) -> None:
    from tests.payloads import alert, notification

    body = notification([alert({"container": name}, starts_at=datetime.now(UTC))])
    request = urllib.request.Request(server.url + server.webhook, data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json",
                                                             **server.headers})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def _utc(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _one(client: Any, server: Any, engine: Any) -> dict[str, Any]:
    from sqlalchemy import text

    from tests.harness.busybox import FAST_STOP
    from tests.harness.containers import run_container, started_at

    parent = run_container(client)
    child = client.containers.run("autofix/busybox:test", FAST_STOP, detach=True,
                                  name=f"{parent.name}-child", labels={"autofix.enable": "true"},
                                  network_mode=f"container:{parent.id}")
    time.sleep(0.2)  # the alert starts after both started: no "already recovered"
    try:
        sent = time.time()
        _fire(server, parent.name)
        seen_s = None
        rows: list[Any] = []
        deadline = time.monotonic() + 120
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                rows = list(conn.execute(text(
                    "select trigger, target, status, error, finished_at from runs where "
                    "incident_id ="
                    " (select id from incidents where container = :c) order by id"),
                    {"c": parent.name}))
                conn.rollback()
                if len(rows) == 2 and all(r.status == "succeeded" for r in rows):
                    seen_s = time.time() - sent
                    break
                if any(r.status in ("failed", "skipped") for r in rows):
                    break
                time.sleep(0.05)
        parent_started, child_started = started_at(parent), started_at(child)
        ok = (seen_s is not None and child_started > parent_started
              and [r.trigger for r in rows] == ["alert", "dependent"])
        return {
            "ok": ok, "seen_s": round(seen_s, 3) if seen_s is not None else None,
            "chain_s": round(_utc(rows[-1].finished_at) - sent, 3) if ok else None,
            "parent_run_s": round(_utc(rows[0].finished_at) - sent, 3) if ok else None,
            "runs": [[r.trigger, r.status, r.error] for r in rows],
            "parent_started": parent_started, "child_started": child_started,
        }
    finally:
        child.remove(force=True)
        parent.remove(force=True)


def run(repeats: int) -> dict[str, Any]:
    from sqlalchemy import create_engine

    from tests.harness.busybox import ensure_busybox_image

    stack = Stack()
    try:
        dockerd = stack.start_dockerd()
        client = dockerd.client()
        ensure_busybox_image(client)
        db_url = stack.start_postgres().create_database("autofix_dependents")
        server = stack.start_autofix("autofix-dependents", db_url, 2, playbooks=PLAYBOOKS,
                                     env={"AUTOFIX_DOCKER_HOST": dockerd.url,
                                          "AUTOFIX_RUNNER_POLL_S": "0.1",
                                          "AUTOFIX_HOST_STORM_TARGETS": "0"})
        engine = create_engine(db_url)
        try:
            results = []
            for repeat in range(repeats):
                one = _one(client, server, engine)
                results.append(one)
                print(f"  {NAME} rep {repeat}: chain {one['chain_s']} s (parent "
                      f"{one['parent_run_s']} s), seen {one['seen_s']} s, ok {one['ok']}",
                      flush=True)
        finally:
            engine.dispose()
    finally:
        stack.close()
    chains = [r["chain_s"] for r in results if r["chain_s"] is not None]
    parents = [r["parent_run_s"] for r in results if r["parent_run_s"] is not None]
    seen = [r["seen_s"] for r in results if r["seen_s"] is not None]
    return {
        "name": NAME,
        "config": {"workers": 2, "runner_poll_s": 0.1, "running_for_s": RUNNING_FOR_S,
                   "host_storm_targets": 0,
                   "repeats": repeats, "database": "postgresql"},
        "summary": {
            "chain_median_s": statistics.median(chains) if chains else None,
            "chain_max_s": max(chains) if chains else None,
            "parent_median_s": statistics.median(parents) if parents else None,
            "seen_median_s": statistics.median(seen) if seen else None,
            "all_ok": all(r["ok"] for r in results),
        },
        "runs": results,
    }


def main(argv: list[str] | None = None) -> int:
    from bench.run import run_meta

    parser = argparse.ArgumentParser(prog="python -m bench.dependents")
    parser.add_argument("--repeats", type=int, default=5, help="alerts, one after another")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    meta = run_meta("bench.dependents", argv)
    data = run(args.repeats)
    data["meta"] = meta
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{NAME}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(json.dumps(data["summary"]))
    print(f"wrote {path}")
    return 0 if data["summary"]["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
