"""The Flask app: a few real endpoints, Prometheus metrics and fault injection.

Run it under gunicorn with ``gunicorn_conf.py`` (one gthread worker; see there for why).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import threading
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from werkzeug.exceptions import HTTPException

from target_app.faults import FaultState
from target_app.selftraffic import start_self_traffic
from target_app.settings import Settings, parse_bind

__all__ = ["CRASH_EXIT_CODE", "FAULT_KINDS", "LATENCY_BUCKETS", "create_app"]

log = logging.getLogger("target_app")

# Seconds. Dense around the 0.5 s p95 alert threshold, and up to 10 s so a latency
# spike stays measurable instead of collapsing into +Inf.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)

# gunicorn's WORKER_BOOT_ERROR. A worker that exits with any other code is quietly
# respawned by the arbiter, so the "crash" would heal itself in milliseconds and never
# reach Docker. Exit code 3 makes the arbiter halt ("Worker failed to boot") and exit
# non-zero itself, so the container really dies, as a crashed single-process app would.
CRASH_EXIT_CODE = 3
# Let the 202 reach the caller before the process disappears.
CRASH_DELAY_S = 0.2

# Routes that must keep answering during error/latency spikes: the probes and the
# fault API itself. (A hang stops everything, these included.)
_EXEMPT_FROM_SPIKES = ("/healthz", "/metrics", "/fault")


class BadParams(ValueError):
    """A fault request body that cannot be used; answered with 400 and this message."""


# name -> (default, exclusive minimum, inclusive maximum). Maxima keep a typo from
# taking the host down: a 10 000-thread burn or a 1 TB leak is refused.
_CPU_DEFAULT_THREADS = float(os.cpu_count() or 2)
_PARAMS: dict[str, dict[str, tuple[float, float, float]]] = {
    "crash": {},
    "hang": {},
    "stop-all": {},
    "error-spike": {"ratio": (0.5, 0.0, 1.0), "duration_s": (60.0, 0.0, 3600.0)},
    "latency-spike": {"seconds": (2.0, 0.0, 30.0), "duration_s": (60.0, 0.0, 3600.0)},
    "cpu-spike": {"duration_s": (60.0, 0.0, 3600.0), "threads": (_CPU_DEFAULT_THREADS, 0.0, 64.0)},
    "memory-leak": {"mb_per_s": (10.0, 0.0, 512.0), "duration_s": (60.0, 0.0, 3600.0),
                    "max_mb": (256.0, 0.0, 4096.0)},
}
FAULT_KINDS = tuple(_PARAMS)


def parse_fault_params(kind: str, raw: bytes) -> dict[str, float]:
    """Validate a fault body against its spec; raise BadParams with a message for a human."""
    spec = _PARAMS[kind]
    body: Any = {}
    if raw.strip():
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadParams(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadParams(f"body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        allowed = ", ".join(sorted(spec)) or "none"
        raise BadParams(f"unknown field(s) {', '.join(unknown)} for {kind}; allowed: {allowed}")
    params: dict[str, float] = {}
    for name, (default, low, high) in spec.items():
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadParams(f"{name} must be a number, got {json.dumps(value)}")
        if not low < value <= high:
            raise BadParams(f"{name} must be > {low:g} and <= {high:g}, got {value}")
        params[name] = float(value)
    return params


def _do_work(rounds: int) -> str:
    """A little real CPU work so endpoints have non-trivial latency and CPU use."""
    digest = b"autofix"
    for _ in range(rounds):
        digest = hashlib.sha256(digest * 64).digest()
    return digest.hex()


def create_app(settings: Settings | None = None,
               registry: CollectorRegistry | None = None) -> Flask:
    settings = settings or Settings.from_env()
    if settings.startup_delay_s > 0:
        time.sleep(settings.startup_delay_s)
    registry = registry if registry is not None else CollectorRegistry()
    # One process (see gunicorn_conf.py), so the default single-process collectors are
    # exact: no multiprocess mode needed.
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)

    requests_total = Counter(
        "http_requests_total", "HTTP requests answered, by route template and status.",
        ["method", "route", "status"], registry=registry)
    duration = Histogram(
        "http_request_duration_seconds", "Time to answer an HTTP request.",
        ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
    faults_total = Counter(
        "target_app_faults_injected_total", "Faults injected through /fault/<kind>.",
        ["kind"], registry=registry)
    leaked = Gauge("target_app_leaked_bytes", "Bytes held by the memory-leak fault.",
                   registry=registry)
    state = FaultState()
    leaked.set_function(state.leaked_bytes)

    app = Flask(__name__)
    app.config["FAULTS"] = state
    app.config["REGISTRY"] = registry
    app.config["SETTINGS"] = settings

    @app.before_request
    def _before() -> Response | None:
        if state.hung.is_set():
            # Every request thread parks here forever: the process is alive, the
            # gunicorn worker still heartbeats (gthread's main loop is not blocked),
            # but nothing - /healthz and /metrics included - ever answers.
            threading.Event().wait()
        g.started = time.perf_counter()
        if request.path.startswith(_EXEMPT_FROM_SPIKES):
            return None
        delay = state.extra_latency()
        if delay:
            time.sleep(delay)
        ratio = state.error_ratio()
        if ratio and random.random() < ratio:  # noqa: S311 (not crypto)
            return _json_error(500, "injected error (error-spike fault)")
        return None

    @app.after_request
    def _after(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"  # bounded cardinality
        requests_total.labels(request.method, route, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None:
            duration.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return _json_error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return _json_error(500, "internal error")

    @app.get("/")
    def index() -> Response:
        return jsonify(service="target_app", digest=_do_work(50))

    @app.get("/api/work")
    def work() -> Response:
        rounds = request.args.get("rounds", "200")
        if not rounds.isdigit() or not 0 < int(rounds) <= 100_000:
            return _json_error(400, "rounds must be an integer in 1..100000")
        return jsonify(rounds=int(rounds), digest=_do_work(int(rounds)))

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    @app.get("/fault")
    def fault_status() -> Response:
        return jsonify(state.snapshot())

    @app.post("/fault/<kind>")
    def inject(kind: str) -> Response:
        if settings.fault_token:
            supplied = request.headers.get("Authorization", "")
            expected = f"Bearer {settings.fault_token}"
            if not hmac.compare_digest(supplied.encode(), expected.encode()):
                return _json_error(401, "fault injection needs Authorization: Bearer <token>")
        if kind not in _PARAMS:
            return _json_error(404, f"unknown fault {kind!r}; one of: {', '.join(FAULT_KINDS)}")
        try:
            params = parse_fault_params(kind, request.get_data(cache=False))
        except BadParams as exc:
            return _json_error(400, str(exc))
        faults_total.labels(kind).inc()
        log.warning("fault injected: %s %s", kind, params)
        _apply(state, kind, params)
        return _json(202, {"fault": kind, "params": params})

    if settings.self_traffic_rps > 0:
        _host, port = parse_bind(settings.bind)
        start_self_traffic(f"http://127.0.0.1:{port}", settings.self_traffic_rps)
    return app


def _apply(state: FaultState, kind: str, p: dict[str, float]) -> None:
    if kind == "crash":
        threading.Timer(CRASH_DELAY_S, os._exit, args=(CRASH_EXIT_CODE,)).start()
    elif kind == "hang":
        state.hung.set()
    elif kind == "error-spike":
        state.add_error_window(p["ratio"], p["duration_s"])
    elif kind == "latency-spike":
        state.add_latency_window(p["seconds"], p["duration_s"])
    elif kind == "cpu-spike":
        state.start_cpu_burn(p["duration_s"], int(p["threads"]))
    elif kind == "memory-leak":
        state.start_memory_leak(p["mb_per_s"], p["duration_s"], p["max_mb"])
    elif kind == "stop-all":
        state.stop_all()


def _json(status: int, payload: dict[str, Any]) -> Response:
    response = jsonify(payload)
    response.status_code = status
    return response


def _json_error(status: int, message: str) -> Response:
    return _json(status, {"error": message})
