"""A loopback stand-in for Prometheus' instant-query API, for the ways of answering a real
Prometheus cannot be made to show on demand (an error, garbage, a chosen result). Each
query is answered as the test set it (by its raw `query=` value), else with `default`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.harness.procs import LOOPBACK

__all__ = ["PrometheusStub", "start_prometheus_stub", "vector"]


def vector(*samples: dict[str, Any]) -> tuple[int, str]:
    """A 200 answer holding an instant vector of these samples (none: empty)."""
    return 200, json.dumps({"status": "success",
                            "data": {"resultType": "vector", "result": list(samples)}})


class PrometheusStub:
    def __init__(self, record_when: str = "") -> None:
        self.answers: dict[str, tuple[int, str]] = {}
        self.default = vector()
        self.queries: list[str] = []  # the request paths holding `record_when`
        self.record_when = record_when
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if stub.record_when in self.path:
                    stub.queries.append(self.path)
                expr = self.path.split("query=", 1)[-1]
                status, body = stub.answers.get(expr, stub.default)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"

    @property
    def healthy(self) -> bool:
        return self.default != vector()

    @healthy.setter
    def healthy(self, value: bool) -> None:
        """True: every query not set otherwise returns one sample; False: an empty vector."""
        self.default = vector({"metric": {}, "value": [1, "1"]}) if value else vector()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_prometheus_stub(record_when: str = "") -> PrometheusStub:
    return PrometheusStub(record_when)
