"""A loopback TCP proxy in front of a dockerd unix socket that holds chosen API calls.

    proxy = DockerDelayProxy(dockerd.sock, delay_s=10, slow="/logs").start()
    DockerClient(base_url=proxy.url)   # every call passes; those whose path contains
                                       # `slow` answer only after delay_s
    proxy.stop()

Responses are read whole and re-sent with a Content-Length, which is enough for the calls
an evidence capture and a restart make (no attach, no exec streams, no follow).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .procs import LOOPBACK

__all__ = ["DockerDelayProxy"]

_SKIPPED_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class DockerDelayProxy:
    def __init__(self, docker_sock: Path, delay_s: float, slow: str) -> None:
        self.docker_sock = docker_sock
        self.delay_s = delay_s
        self.slow = slow
        self.delayed: list[str] = []
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"tcp://{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> DockerDelayProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.slow in self.path.split("?")[0]:
                    proxy.delayed.append(self.path)
                    time.sleep(proxy.delay_s)
                upstream = _UnixConnection(proxy.docker_sock, timeout=120)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _SKIPPED_HEADERS}
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                except OSError:  # dockerd went away (the test ended while this was held)
                    self.send_error(502)
                    return
                finally:
                    upstream.close()
                try:
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in _SKIPPED_HEADERS:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting (the capture's budget)

            do_GET = do_POST = do_HEAD = do_DELETE = _forward

            def log_message(self, *args: object) -> None:
                pass

        return Handler
