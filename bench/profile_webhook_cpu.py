"""The one-alert webhook in-process, the WSGI app called directly: where its CPU goes.

    python -m bench.profile_webhook_cpu URL N cprofile    # cProfile on CPU time, top callers
    python -m bench.profile_webhook_cpu URL N time        # CPU ms per request
    valgrind --tool=callgrind --instr-atstart=no \\
        python -m bench.profile_webhook_cpu URL N callgrind  # instructions of N requests only

Run from the tree to measure (its `receiver` is imported, its shipped playbooks loaded), so
an older checkout (`git archive <commit> | tar -x -C DIR`) is measured the same way. The
app is built as `autofix serve` builds it (JSON logs through the one redactor, sent to
/dev/null), 50 requests warm it up, each request is a new alert in a group of its own on
URL's PostgreSQL. No gunicorn: bench/cpu_per_request.py measures the whole server.
callgrind counts instructions, which do not depend on what else the machine runs
(bench/NOTES.md section 12).
"""

from __future__ import annotations

import cProfile
import gc
import io
import logging
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WEBHOOK_TOKEN = "bench-webhook-token-7f3a"


def _environ(body: bytes) -> dict[str, Any]:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/webhook/alertmanager", "SCRIPT_NAME": "",
            "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.version": (1, 0), "wsgi.multithread": True,
            "wsgi.multiprocess": True, "wsgi.run_once": False,
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Bearer {WEBHOOK_TOKEN}",
            "HTTP_USER_AGENT": "Alertmanager/0.25.0", "HTTP_HOST": "127.0.0.1:8080"}


def main(url: str, n: int, mode: str) -> None:
    root = Path.cwd()
    sys.path.insert(0, str(root))
    from bench.loadgen import PLACEHOLDER, template
    from receiver.app import create_app
    from receiver.config.settings import Settings
    from receiver.domain.redaction import Redactor
    from receiver.notify.channels import secret_fragments
    from receiver.store.migrate import upgrade
    from receiver.telemetry.logs import configure_logging

    upgrade(url)
    playbooks = Path(tempfile.mkdtemp(prefix="autofix-cpu-")) / "playbooks.yml"
    playbooks.write_text((root / "receiver" / "playbooks.yml").read_text())
    settings = Settings(database_url=url, webhook_token=WEBHOOK_TOKEN,
                        api_token="bench-api-token-profile", playbooks=playbooks,
                        docker_host="unix:///nonexistent-bench.sock")
    redactor = Redactor(settings.redact_patterns)
    configure_logging(settings.log_level, secret_fragments(settings), redactor)
    devnull = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    for handler in logging.getLogger().handlers:
        handler.stream = devnull  # type: ignore[attr-defined]
    app = create_app(settings, redactor=redactor)
    body = template(1, "BenchLoad")
    tag = int(time.time()) & 0xFFFF
    bodies = [body.replace(PLACEHOLDER, f"{tag:04x}{i:07x}").encode() for i in range(n + 50)]

    def call(raw: bytes) -> None:
        status: list[str] = []
        b"".join(app(_environ(raw), lambda s, _h, _e=None: status.append(s)))
        assert status[0].startswith("200"), status

    for raw in bodies[:50]:
        call(raw)
    gc.collect()
    gc.freeze()  # as serve's workers do
    if mode == "cprofile":
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for raw in bodies[50:]:
            call(raw)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(60)
        stats.sort_stats("tottime").print_stats(40)
        print(out.getvalue())
    elif mode == "callgrind":
        toggle = ["callgrind_control", "-i"]
        subprocess.run([*toggle, "on", str(os.getpid())], check=True, capture_output=True)
        for raw in bodies[50:]:
            call(raw)
        subprocess.run([*toggle, "off", str(os.getpid())], check=True, capture_output=True)
        print(f"{n} requests counted")
    else:
        started = time.process_time()
        for raw in bodies[50:]:
            call(raw)
        print(f"CPU ms per request: {(time.process_time() - started) / n * 1000:.3f}")
    app.extensions["autofix"].database.dispose()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
