"""gunicorn settings for target_app: ``gunicorn -c target_app/gunicorn_conf.py``.

Exactly ONE worker with threads (gthread), on purpose:
  * prometheus-client's process metrics (process_cpu_seconds_total,
    process_resident_memory_bytes) and every counter then describe the one process
    that serves traffic - no multiprocess mode, no per-worker series to sum;
  * fault state (a hang, a leak, a spike) lives in that one process's memory, so a
    fault injected by one request affects every later request and scrape;
  * a crash of that worker halts the arbiter (see CRASH_EXIT_CODE in app.py), so the
    container exits as a real single-process app would.
CPU-heavy faults still use several cores: hashlib releases the GIL.
"""

import os

wsgi_app = "target_app.app:create_app()"
bind = os.environ.get("TARGET_APP_BIND", "0.0.0.0:8000")
workers = 1
worker_class = "gthread"
# Enough threads that a few slow requests (latency spike) leave room for the probes.
threads = int(os.environ.get("TARGET_APP_THREADS", "16"))
# The gthread main loop heartbeats even while request threads are blocked, so this
# only catches a wedged main loop; 30 s is gunicorn's default.
timeout = 30
# docker stop waits 10 s before SIGKILL; in-flight requests here take milliseconds, and a
# hung worker never finishes them, so a short grace keeps a restart of a hang fast.
graceful_timeout = int(os.environ.get("TARGET_APP_GRACEFUL_TIMEOUT_S", "2"))
keepalive = 2
accesslog = None
errorlog = "-"
loglevel = os.environ.get("TARGET_APP_LOG_LEVEL", "info")
# gunicorn >= 23 opens a control socket at a fixed per-user path; two instances on one
# host (tests, host-networked containers) would fight over it, and nothing here uses it.
control_socket_disable = True
