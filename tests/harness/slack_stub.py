"""A local stand-in for Slack's Web API and for webhook URLs, recording every request.

`POST /api/chat.postMessage` answers {"ok": true, "ts": ...} with a fresh ts, and
`chat.update` with the ts it was given; any other
path answers 200 "ok" (what Slack incoming webhooks answer). `script(path, ...)` queues
replies for a path (429 with Retry-After, 500, a hang) that are used before the default.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from .procs import LOOPBACK

POST_MESSAGE = "/api/chat.postMessage"
UPDATE = "/api/chat.update"


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None  # None: the default body for the path
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # a slow or hanging server


@dataclass
class Recorded:
    at: float  # time.time() when the request arrived
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, a form as {key: value}, or text
    status: int = 0  # what the stub answered
    ts: str | None = None  # the ts it handed out, for chat.postMessage

    def json(self) -> dict[str, Any]:
        assert isinstance(self.body, dict), self.body
        return self.body


class SlackStub:
    def __init__(self, port: int = 0) -> None:
        self.requests: list[Recorded] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._rules: dict[str, Callable[[Recorded], Reply | None]] = {}
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._released = threading.Event()
        self._server = ThreadingHTTPServer((LOOPBACK, port), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.port = int(self._server.server_address[1])
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.api_url = f"{self.url}/api/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> SlackStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()  # cut hangs short
        self._server.shutdown()
        self._server.server_close()

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(replies)

    def rule(self, path: str, decide: Callable[[Recorded], Reply | None] | None) -> None:
        """A function choosing the reply per request (None: fall through to the default)."""
        with self._lock:
            if decide is None:
                self._rules.pop(path, None)
            else:
                self._rules[path] = decide

    def for_path(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def take(self) -> list[Recorded]:
        """The requests recorded so far, forgotten here (a long run's memory stays flat)."""
        with self._lock:
            taken, self.requests = self.requests, []
        return taken

    def messages(self) -> list[Recorded]:
        """chat.postMessage calls Slack accepted, in arrival order."""
        return [r for r in self.for_path(POST_MESSAGE) if r.status == 200]

    def _reply_for(self, recorded: Recorded) -> Reply:
        with self._lock:
            queue = self._scripts.get(recorded.path)
            if queue:
                return queue.popleft()
            decide = self._rules.get(recorded.path)
        if decide is not None:
            chosen = decide(recorded)
            if chosen is not None:
                return chosen
        return Reply()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8", "replace")
                content_type = self.headers.get("Content-Type", "")
                body: Any = raw
                if "json" in content_type:
                    body = json.loads(raw or "null")
                elif "x-www-form-urlencoded" in content_type:
                    body = {k: v[0] for k, v in parse_qs(raw).items()}
                recorded = Recorded(time.time(), self.path, dict(self.headers.items()), body)
                with stub._lock:
                    stub.requests.append(recorded)
                reply = stub._reply_for(recorded)
                if reply.delay_s:
                    stub._released.wait(reply.delay_s)
                payload = reply.body
                if payload is None and reply.status == 200:
                    if self.path == POST_MESSAGE:
                        recorded.ts = f"1700000000.{next(stub._ts):06d}"
                        channel = body.get("channel") if isinstance(body, dict) else None
                        payload = {"ok": True, "channel": channel, "ts": recorded.ts}
                    elif self.path == UPDATE:
                        given = body if isinstance(body, dict) else {}
                        recorded.ts = str(given.get("ts"))
                        payload = {"ok": True, "channel": given.get("channel"),
                                   "ts": recorded.ts}
                    else:
                        payload = "ok"
                elif payload is None:
                    payload = {"ok": False, "error": "stub_error"} \
                        if self.path.startswith("/api/") else "error"
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                recorded.status = reply.status
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "text/plain" if isinstance(payload, str)
                                     else "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a timeout): nothing to answer

        return Handler


def start_slack_stub() -> SlackStub:
    return SlackStub().start()


def main() -> None:
    """`python -m tests.harness.slack_stub --port N --record FILE`: the demo's Slack.

    Runs until killed; every message Slack would have received is appended to FILE as
    one JSON line, so `make demo` can show what autofix posted.
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", required=True)
    args = parser.parse_args()
    stub = SlackStub(port=args.port)

    def record(recorded: Recorded) -> Reply | None:
        with open(args.record, "a") as handle:
            handle.write(json.dumps({"at": recorded.at, "path": recorded.path,
                                     "body": recorded.body}) + "\n")
        return None

    stub.rule(POST_MESSAGE, record)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    stub.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    stub.stop()


if __name__ == "__main__":
    main()
