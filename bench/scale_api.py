"""p50/p99 of the incident and action lists (receiver/api/queries.py), unfiltered and with
each filter the API accepts, one at a time, `limit=100`: sequential requests on one
keep-alive connection with the read-only token, the first few of each case discarded
(a worker's first request opens its database connections).

The filter values are the seeded vocabulary (bench/scale_seed.py), the same at every
size, so a case means the same thing on the empty database and on a large one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from bench.loadgen import percentile
from bench.scale_seed import ALERTS
from receiver.store.lifecycle import IncidentStatus

__all__ = ["READ_TOKEN", "cases", "time_api"]

READ_TOKEN = "bench-scale-read-token-4e1b"
LIMIT = 100
DEEP_OFFSET = 1000  # a page far down the list: OFFSET reads and drops what it skips
BUSY_TARGET = "app-000"  # the container the seeding makes flap most


def cases(incident_id: int, now: datetime) -> dict[str, dict[str, dict[str, str]]]:
    """{route: {case: query parameters}}: "none", then one case per filter."""
    since = (now - timedelta(hours=24)).isoformat()
    acting = next(alert for alert in ALERTS if alert.subject == "container")
    common = {"target": {"target": BUSY_TARGET}, "since": {"since": since},
              "offset": {"offset": str(DEEP_OFFSET)}}
    return {
        "/api/v1/incidents": {
            "none": {}, "status": {"status": IncidentStatus.ESCALATED.value},
            "alertname": {"alertname": acting.name}, **common},
        "/api/v1/actions": {
            "none": {}, "outcome": {"outcome": "failed"},
            "playbook": {"playbook": acting.playbook}, "action": {"action": "restart"},
            "incident_id": {"incident_id": str(max(incident_id, 1))}, **common},
    }


def time_api(base_url: str, incident_id: int, requests_per_case: int = 50, warmup: int = 3,
             warmup_s: float = 3.0, token: str = READ_TOKEN
             ) -> dict[str, dict[str, dict[str, Any]]]:
    """{route: {case: {p50_ms, p99_ms, max_ms, errors, total, total_exact, items}}}
    (`total` counted up to offset + 1,000 since the API bounds its count)."""
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    routes = cases(incident_id, datetime.now(UTC))
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        # A receiver just started is still busy with its own start (imports, first
        # queries, periodic jobs): the first case measured would pay for it.
        deadline = time.monotonic() + warmup_s
        while time.monotonic() < deadline:
            for route in routes:
                session.get(base_url + route, params={"limit": str(LIMIT)}, timeout=60)
        for route, by_case in routes.items():
            figures[route] = {}
            for case, params in by_case.items():
                url = base_url + route
                query = {"limit": str(LIMIT), **params}
                for _ in range(warmup):
                    session.get(url, params=query, timeout=60)
                latencies: list[float] = []
                errors = 0
                body: dict[str, Any] = {}
                for _ in range(requests_per_case):
                    started = time.perf_counter()
                    response = session.get(url, params=query, timeout=60)
                    latencies.append((time.perf_counter() - started) * 1000)
                    if response.status_code == 200:
                        body = response.json()
                    else:
                        errors += 1
                figures[route][case] = {
                    "params": query, "requests": requests_per_case, "errors": errors,
                    "p50_ms": round(percentile(latencies, 50), 3),
                    "p99_ms": round(percentile(latencies, 99), 3),
                    "max_ms": round(max(latencies), 3),
                    "total": body.get("total"), "total_exact": body.get("total_exact", True),
                    "items": len(body.get("items", []))}
    return figures
