"""Benchmark 3: webhook latency while 5 slow `docker restart`s run, beside an idle baseline.

A private dockerd runs 5 containers whose PID 1 ignores SIGTERM (SLOW_STOP), so each restart
with timeout_s 10 costs the full 10 s. `autofix serve --workers 4` on PostgreSQL. A paced
probe (4 senders x 25/s of single-alert notifications that match no playbook, 50% repeats)
runs for the same length twice per repeat: idle, then while 5 TargetDown alerts make the
runners restart all 5 containers at once. Latencies of probes sent while at least one
restart was in progress are reported as "during".
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

from bench.common import aggregate, strip, write_result
from bench.loadgen import LoadSpec, percentile, run_load
from bench.servers import Stack

NAME = "restart_latency"
CONTAINERS = 5
RESTART_TIMEOUT_S = 10
PLAYBOOKS = f"""
playbooks:
  - name: restart-on-target-down
    matchers: ['alertname="TargetDown"']
    target: "{{{{ labels.container }}}}"
    cooldown: 0s
    circuit_breaker: {{max_actions: 100, window: 10m, open_for: 1s, open_for_max: 1s,
                      reset_after: 1m}}
    actions:
      - restart: {{timeout_s: {RESTART_TIMEOUT_S}}}
"""
PROBE_SENDERS, PROBE_HZ = 4, 25.0


def _fire(url: str, headers: dict[str, str], names: list[str]) -> int:
    from tests.payloads import alert, notification

    now = datetime.now(UTC)
    body = notification([alert({"container": n}, starts_at=now) for n in names])
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(json.loads(response.read())["runs_queued"])


def _as_utc(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def run(stack: Stack, quick: bool = False, repeats: int = 2) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    from tests.harness.busybox import SLOW_STOP, ensure_busybox_image
    from tests.harness.containers import run_container

    dockerd = stack.start_dockerd()
    client = dockerd.client()
    ensure_busybox_image(client)
    containers = [run_container(client, command=SLOW_STOP) for _ in range(CONTAINERS)]
    names = [c.name for c in containers]
    pg = stack.start_postgres()
    db_url = pg.create_database("autofix_restarts")
    server = stack.start_autofix("autofix-restarts", db_url, 4, playbooks=PLAYBOOKS, env={
        "AUTOFIX_DOCKER_HOST": dockerd.url,
        # The default global cap is 4 runs at once; the case asks for 5 concurrent restarts.
        "AUTOFIX_MAX_CONCURRENT_RUNS": str(CONTAINERS)})
    engine = create_engine(db_url)
    window = RESTART_TIMEOUT_S + 4.0
    idle_runs, during_runs, restarts = [], [], []
    tag = 0x7000
    try:
        for repeat in range(1 if quick else repeats):
            tag += 2
            probe = dict(base_url=server.url, path=server.webhook, headers=server.headers,
                         alerts=1, concurrency=PROBE_SENDERS, max_requests=10**6,
                         max_seconds=window, pace_hz=PROBE_HZ)
            idle = run_load(LoadSpec(**probe, tag=tag))
            queued: list[int] = []
            firing = threading.Timer(1.0, lambda: queued.append(
                _fire(server.url + server.webhook, server.headers, names)))
            firing.start()
            busy = run_load(LoadSpec(**probe, tag=tag + 1))
            firing.join()
            deadline = time.time() + 30
            with engine.connect() as conn:
                while time.time() < deadline:
                    rows = list(conn.execute(text(
                        "select status, started_at, finished_at from runs "
                        "where id > :after order by id"), {"after": sum(len(r["runs"])
                                                                      for r in restarts)}))
                    if len(rows) >= CONTAINERS and all(r.finished_at for r in rows):
                        break
                    conn.rollback()
                    time.sleep(0.5)
                actions = list(conn.execute(text(
                    "select target, outcome, duration_s from actions where action='restart' "
                    "order by id")))[-CONTAINERS:]
            runs = [{"status": r.status, "started": _as_utc(r.started_at),
                     "finished": _as_utc(r.finished_at)} for r in rows if r.started_at]
            restarts.append({"queued": queued, "runs": runs,
                             "restart_actions": [dict(a._mapping) for a in actions]})
            # Probes sent while at least one restart was in progress.
            start = min(r["started"] for r in runs)
            end = max(r["finished"] for r in runs)
            during = [lat for s, lat in zip(busy["starts_s"], busy["latencies_ms"],
                                            strict=True)
                      if start <= busy["go_wall"] + s <= end]
            busy["during_latencies_ms"] = during
            busy["restart_window_s"] = round(end - start, 2)
            busy["during_p50_ms"] = percentile(during, 50)
            busy["during_p99_ms"] = percentile(during, 99)
            idle_runs.append(idle)
            during_runs.append(busy)
            print(f"  {NAME} rep {repeat}: idle p50 {idle['p50_ms']:.1f} p99 "
                  f"{idle['p99_ms']:.1f} ms | during {len(runs)} restarts "
                  f"({busy['restart_window_s']} s) p50 {busy['during_p50_ms']:.1f} p99 "
                  f"{busy['during_p99_ms']:.1f} ms", flush=True)
    finally:
        engine.dispose()
    during_only = [{**r, "latencies_ms": r["during_latencies_ms"]} for r in during_runs]
    data = {
        "name": NAME, "quick": quick,
        "config": {"containers": CONTAINERS, "restart_timeout_s": RESTART_TIMEOUT_S,
                   "workers": 4, "probe_senders": PROBE_SENDERS, "probe_hz_per_sender":
                   PROBE_HZ, "window_s": window, "max_concurrent_runs": CONTAINERS},
        "idle": {"summary": aggregate(idle_runs), "runs": [strip(r) for r in idle_runs]},
        "during": {"summary": aggregate(during_only),
                   "runs": [{k: v for k, v in strip(r).items() if k != "during_latencies_ms"}
                            for r in during_runs]},
        "restarts": restarts,
    }
    write_result(NAME, data)
    return data
