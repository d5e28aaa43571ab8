"""A hung Docker host holds up only its own runs (#32): host `a` is the session's private
dockerd, host `b` a listener that accepts and never answers. Several alerts for `b`, then
one for `a`, executed by the real runner threads against PostgreSQL: `a`'s restart ends
while `b`'s runs are still waiting on their timeout, `b`'s runs end skipped and escalated
(`executor_unavailable`), and /readyz answers naming `b`. Order is asserted, not time."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.runtime.runner import Runner
from receiver.store.models import Action, Incident, Run
from tests.harness.busybox import FAST_STOP, ensure_busybox_image
from tests.harness.containers import started_at
from tests.harness.memory_app import fire
from tests.harness.playbook_yaml import RESTART_ONLY as PLAYBOOK
from tests.harness.silent_listener import SilentListener

B_RUNS = 4  # as many as the global cap and the runner threads (both 4 by default)


def _finished(database: Any, count: int) -> list[Run]:
    with database.session() as session:
        runs = list(session.scalars(select(Run).order_by(Run.id)))
    return runs if len(runs) == count and all(run.finished_at for run in runs) else []


@pytest.mark.timeout(600)
def test_a_hung_host_holds_up_only_its_own_runs(pg_url, private_dockerd, app_factory,
                                                tmp_path: Path) -> None:
    hung = SilentListener()
    runner: Runner | None = None
    on_a = private_dockerd.client()
    ensure_busybox_image(on_a)
    # The same name as b's first alert: a hung host must not hold a name either.
    name = f"app-{uuid.uuid4().hex[:8]}"
    app_a = on_a.containers.run("autofix/busybox:test", FAST_STOP, name=name,
                                network_mode="host", detach=True,
                                labels={"autofix.enable": "true"})
    try:
        hosts = {"a": {"url": private_dockerd.url},
                 "b": {"url": hung.url, "timeout_s": 8}}
        playbooks = tmp_path / "playbooks.yml"
        playbooks.write_text(PLAYBOOK)
        app = app_factory(pg_url, playbooks=playbooks, docker_hosts=json.dumps(hosts),
                          recovery_lookback_s=0, inventory_interval=0)
        web, services = app.test_client(), app.extensions["autofix"]
        before = started_at(app_a)
        runner = Runner(services)
        runner.start()

        starts = datetime.now(UTC)
        for index in range(B_RUNS):
            fire(web, {"alertname": "TargetDown", "host": "b",
                       "container": name if index == 0 else f"{name}-{index}"}, starts=starts)
        fire(web, {"alertname": "TargetDown", "host": "a", "container": name}, starts=starts)

        # /readyz answers while b hangs (probes run in parallel, bounded), naming b.
        services.readiness.expire()
        ready = web.get("/readyz")
        assert ready.status_code == 200, ready.json
        assert ready.json["unreachable"] == ["docker/b"]

        while not (runs := _finished(services.database, B_RUNS + 1)):
            time.sleep(0.5)  # the pytest timeout bounds this wait
        with services.database.session() as session:
            actions = list(session.scalars(select(Action).order_by(Action.id)))
            incidents = {row.id: row for row in session.scalars(select(Incident))}
        restart = [row for row in actions if row.target == f"a/{name}"]
        assert [(row.action, row.outcome) for row in restart] == [("restart", "succeeded")]
        assert started_at(app_a) != before
        b_runs = [run for run in runs if run.target.startswith("b/")]
        assert len(b_runs) == B_RUNS
        # a's restart ended while every one of b's runs was still waiting on b.
        assert all(restart[0].finished_at < run.finished_at for run in b_runs), (
            restart[0].finished_at, [run.finished_at for run in b_runs])
        for run in b_runs:
            assert run.status == "skipped", (run.status, run.error)
            assert incidents[run.incident_id].status == "escalated"
        assert {row.reason for row in actions if row.target.startswith("b/")} == {
            "executor_unavailable"}
    finally:
        if runner is not None:
            runner.stop(60)
        hung.close()
        app_a.remove(force=True)
