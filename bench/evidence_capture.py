"""What evidence before action adds to the time to recover a hung container (issue #20).

In-process, on a private dockerd, a throwaway PostgreSQL and a real Prometheus (whose
`up == 0` for a dead target is the alert's expression): a busybox container that printed
some lines and then hangs (with a HEALTHCHECK) gets a TargetDown alert, and one run of
`restart` + `wait_healthy` is timed from its claim to its end. Rounds alternate a playbook
with `capture: true` (the default) and one with `capture: false` on fresh containers; the
capture's added time is the difference of the medians, and the captures' own `took_s`
is reported beside it, with the median of the paired (same-round) differences.

    .venv/bin/python -m bench.evidence_capture [ROUNDS]
    # writes bench/results/evidence_capture.json
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.common import results_dir

PLAYBOOKS = """
playbooks:
  - name: with-capture
    matchers: ['alertname="TargetDown"', 'capture="on"']
    cooldown: 0s
    actions:
      - restart: {timeout_s: 5}
      - wait_healthy: {timeout_s: 20, running_for_s: 0.5}
  - name: without-capture
    matchers: ['alertname="TargetDown"', 'capture="off"']
    cooldown: 0s
    capture: false
    actions:
      - restart: {timeout_s: 5}
      - wait_healthy: {timeout_s: 20, running_for_s: 0.5}
"""
CHATTY_THEN_HANGS = ["sh", "-c", "i=0; while [ $i -lt 150 ]; do echo line $i of startup; "
                     "i=$((i+1)); done; trap 'exit 0' TERM; while :; do sleep 0.1; done"]
EXPR = 'up{job="dead"} == 0'


def _one(app: Any, client: Any, capture: bool) -> tuple[float, float | None]:
    from sqlalchemy import select

    from receiver.runtime.runner import Runner
    from receiver.store.models import EvidenceRecord
    from tests.conftest import webhook_headers
    from tests.payloads import alert, notification

    name = f"bench-{uuid.uuid4().hex[:8]}"
    container = client.containers.run(
        "autofix/busybox:test", CHATTY_THEN_HANGS, name=name, network_mode="host",
        detach=True, labels={"autofix.enable": "true"},
        healthcheck={"test": ["CMD", "true"], "interval": 500_000_000})
    time.sleep(0.5)  # the lines are written, the target "hangs"
    body = notification([alert({"container": name, "capture": "on" if capture else "off"},
                               starts_at=datetime.now(UTC))])
    body["alerts"][0]["generatorURL"] = f"http://prometheus/graph?g0.expr={quote(EXPR)}"
    assert app.test_client().post("/webhook/alertmanager", json=body,
                                  headers=webhook_headers()).status_code == 200
    runner = Runner(app.extensions["autofix"])
    started = time.monotonic()
    assert runner.run_once() is not None
    took = time.monotonic() - started
    with app.extensions["autofix"].database.session() as session:
        capture_s = session.scalar(select(EvidenceRecord.took_s)
                                   .where(EvidenceRecord.target == name))
    container.remove(force=True)
    return took, capture_s


def run(rounds: int = 7) -> dict[str, Any]:
    from receiver.app import create_app
    from receiver.store.migrate import upgrade
    from tests.conftest import make_settings
    from tests.harness.busybox import ensure_busybox_image
    from tests.harness.dockerd import start_dockerd
    from tests.harness.postgres import start_postgres
    from tests.harness.procs import free_port, wait_for
    from tests.harness.prometheus import start_prometheus

    work = Path(tempfile.mkdtemp(prefix="autofix-bench-evidence-"))
    postgres = start_postgres()
    dockerd = start_dockerd(work / "dockerd")
    prom = start_prometheus(work / "prom", {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "dead", "static_configs": [
            {"targets": [f"127.0.0.1:{free_port()}"]}]}]}, [])
    try:
        wait_for(lambda: bool(prom.query(EXPR)), 30, "up == 0")
        client = dockerd.client()
        ensure_busybox_image(client)
        url = postgres.create_database()
        upgrade(url)
        (work / "playbooks.yml").write_text(PLAYBOOKS)
        app = create_app(make_settings(url, docker_host=dockerd.url,
                                       playbooks=work / "playbooks.yml",
                                       prometheus_url=prom.url))
        with_capture: list[float] = []
        without: list[float] = []
        captures: list[float] = []
        _one(app, client, True)  # warm-up: connections, first compile of each statement
        for index in range(rounds):
            took, capture_s = _one(app, client, True)
            with_capture.append(round(took, 3))
            captures.append(round(capture_s or 0.0, 3))
            without.append(round(_one(app, client, False)[0], 3))
            print(f"   round {index + 1}: with capture {with_capture[-1]}s "
                  f"(capture {captures[-1]}s), without {without[-1]}s", flush=True)
        app.extensions["autofix"].database.dispose()
        median_with, median_without = statistics.median(with_capture), statistics.median(without)
        return {
            "name": "evidence_capture", "rounds": rounds,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_with_capture_s": {"runs": with_capture, "median_s": median_with},
            "run_without_capture_s": {"runs": without, "median_s": median_without},
            "capture_took_s": {"runs": captures, "median_s": statistics.median(captures)},
            "added_median_s": round(median_with - median_without, 3),
            # Each round pairs two neighbouring runs: less exposed to the load drifting.
            "added_paired_median_s": round(statistics.median(
                a - b for a, b in zip(with_capture, without, strict=True)), 3),
            # The machine is shared: say how busy it was (1-minute load average, at the end).
            "load_average_1m": round(os.getloadavg()[0], 1), "nproc": os.cpu_count(),
        }
    finally:
        prom.stop()
        dockerd.remove_all_containers()
        dockerd.stop()
        postgres.discard()


if __name__ == "__main__":
    import sys

    result = run(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
    out = results_dir() / "evidence_capture.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
