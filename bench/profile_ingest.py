"""In-process pyinstrument profile of POST /webhook/alertmanager (same code path as serve).

    python -m bench.profile_ingest --alerts 10000 --requests 2 [--database-url URL] [--shipped]

Writes bench/results/profile_<alerts>.txt (text tree) and .html. Without a URL it starts a
throwaway PostgreSQL and stops it afterwards.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.loadgen import PLACEHOLDER, template
from bench.servers import NO_ACTION_PLAYBOOKS, WEBHOOK_TOKEN

RESULTS = Path(__file__).resolve().parent / "results"


SHIPPED = Path(__file__).resolve().parents[1] / "receiver" / "playbooks.yml"


def profile(database_url: str, alerts: int, requests: int, workdir: Path,
            shipped: bool = False) -> Path:
    from pyinstrument import Profiler

    from receiver.app import create_app
    from receiver.config.settings import Settings
    from receiver.store.migrate import upgrade

    upgrade(database_url)
    playbooks = workdir / "playbooks.yml"
    playbooks.write_text(SHIPPED.read_text() if shipped else NO_ACTION_PLAYBOOKS)
    app = create_app(Settings(database_url=database_url, webhook_token=WEBHOOK_TOKEN,
                              api_token="bench-api-token-profile", playbooks=playbooks,
                              docker_host="unix:///nonexistent-bench.sock"))
    client = app.test_client()
    body_template = template(alerts, "BenchLoad")
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}",
               "Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0"}
    bodies = [body_template.replace(PLACEHOLDER, f"{0xfeed0000 + i:011x}")
              for i in range(requests)]
    client.post("/webhook/alertmanager", data=bodies[0].replace("feed", "beef"),
                headers=headers)  # warm-up
    profiler = Profiler(interval=0.0005)
    timings = []
    profiler.start()
    for body in bodies:
        started = time.perf_counter()
        response = client.post("/webhook/alertmanager", data=body, headers=headers)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.data[:300]
    profiler.stop()
    app.extensions["autofix"].database.dispose()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"profile_{alerts}.txt"
    text = profiler.output_text(unicode=False, color=False, show_all=True)
    out.write_text(f"# {requests} x POST of {alerts}-alert notifications, in-process, "
                   f"per request ms: {json.dumps([round(t * 1000, 1) for t in timings])}\n"
                   + text)
    (RESULTS / f"profile_{alerts}.html").write_text(profiler.output_html())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--database-url")
    parser.add_argument("--shipped", action="store_true",
                        help="the shipped playbooks (notify-unmatched matches every alert)")
    args = parser.parse_args()
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="autofix-profile-"))
    if args.database_url:
        print(profile(args.database_url, args.alerts, args.requests, workdir, args.shipped))
        return
    from tests.harness.postgres import start_postgres

    server = start_postgres(durable=True)
    try:
        print(profile(server.create_database(), args.alerts, args.requests, workdir,
                      args.shipped))
    finally:
        server.discard()


if __name__ == "__main__":
    main()
