"""gunicorn's gthread worker with a header deadline: slow clients never hold a thread.

The stock gthread worker hands every accepted connection to a pool thread, which then
blocks reading the request. A client that trickles its headers (one byte every 2 s) holds
that thread as long as it likes, so `threads` such clients per worker, without any token,
made `/healthz` and the webhook unreachable.

Here the worker's event loop reads the headers itself, without blocking, from every new
or kept-alive connection, and passes a connection to the pool only once its header block
is complete. A connection that has not sent its headers within AUTOFIX_HEADER_TIMEOUT_S
gets a 408, one whose headers pass 64 KiB a 431, and either is closed. Once in a thread,
reading the rest of the request (the body) must finish within AUTOFIX_BODY_TIMEOUT_S:
every recv() is bounded by what is left of that deadline. Sends are bounded by the same
timeout. A body the application does not read (a 401 answered before it) is drained by
gunicorn for at most 5 s, then the connection closes.

Why not gevent/eventlet: the receiver runs its own threads (runners, the outbox sender)
with blocking psycopg2 and Docker SDK calls; monkey-patching all of that for one worker is
a larger change, and a new dependency, than this subclass. The cost is coupling to
gunicorn's ThreadWorker internals (accept, enqueue_req, on_client_socket_readable,
murder_pending, TConn), so tests/test_slow_clients.py runs the real `autofix serve`.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

__all__ = ["HeaderDeadlineWorker"]

_END_OF_HEADERS = b"\r\n\r\n"
# Far more than any real client sends (Alertmanager: well under 1 KiB), and small enough
# that 1000 connections per worker buffer at most 64 MiB. Past it: 431, closed.
_MAX_HEADER_BYTES = 64 * 1024


def _response(status: bytes, code: str, message: str) -> bytes:
    body = f'{{"error": "{code}", "message": "{message}"}}'.encode()
    return (b"HTTP/1.1 " + status + b"\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


_TIMEOUT_RESPONSE = _response(b"408 Request Timeout", "request_timeout",
                              "request headers not received in time")
_TOO_LARGE_RESPONSE = _response(b"431 Request Header Fields Too Large",
                                "request_header_fields_too_large",
                                "request headers over 64 KiB")


class _DeadlineSocket(socket.socket):
    """A client socket whose blocking calls never wait longer than `idle_timeout_s`, and
    whose reads stop at `deadline` (monotonic) when one is set."""

    idle_timeout_s: float = 60.0
    deadline: float | None = None

    @classmethod
    def adopt(cls, sock: socket.socket, idle_timeout_s: float) -> _DeadlineSocket:
        adopted = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        adopted.idle_timeout_s = idle_timeout_s
        return adopted

    def setblocking(self, flag: bool) -> None:
        # gunicorn sets its client sockets blocking (no timeout at all) for the pool threads.
        if flag:
            self.settimeout(self.idle_timeout_s)
        else:
            super().setblocking(False)

    def _arm(self) -> None:
        if self.deadline is None or self.gettimeout() == 0.0:
            return
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request was not received in time")
        self.settimeout(min(self.idle_timeout_s, remaining))

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._arm()
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        return super().recv_into(buffer, nbytes, flags)


class HeaderDeadlineWorker(ThreadWorker):  # type: ignore[misc]
    """ThreadWorker whose event loop reads request headers, with a deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = 10.0
        self.body_timeout_s = 60.0
        self._reading: dict[TConn, float] = {}  # connection → header deadline
        self._buffers: dict[TConn, bytearray] = {}
        self._ready: set[TConn] = set()

    def run(self) -> None:
        services = getattr(self.wsgi, "extensions", {}).get("autofix")
        if services is not None:
            self.header_timeout_s = services.settings.header_timeout_s
            self.body_timeout_s = services.settings.body_timeout_s
        super().run()

    # -- every connection that is about to need a thread comes through here first --------

    def accept(self, listener: Any) -> None:
        if self.cfg.is_ssl:  # TLS bytes cannot be scanned for headers: tls.py bounds reads
            super().accept(listener)
            return
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        sock = _DeadlineSocket.adopt(client, self.body_timeout_s)
        conn = TConn(self.cfg, sock, address, listener.getsockname())
        self._read_headers(conn, b"")

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        """A kept-alive connection sent something: its next request's headers, maybe slowly."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.enqueue_req(conn)

    def enqueue_req(self, conn: TConn) -> None:
        if conn in self._ready or self.cfg.is_ssl:
            self._ready.discard(conn)
            super().enqueue_req(conn)
            return
        # Anything else (a kept-alive connection, bytes read ahead after a body) goes back
        # through the header reader with what the parser already holds.
        held = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        self._read_headers(conn, held)

    # -- the header reader -------------------------------------------------------------------

    def _read_headers(self, conn: TConn, held: bytes) -> None:
        if _END_OF_HEADERS in held:
            self._hand_over(conn, held)
            return
        conn.sock.setblocking(False)
        self._buffers[conn] = bytearray(held)
        self._reading[conn] = time.monotonic() + self.header_timeout_s
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self._on_header_bytes, conn))

    def _on_header_bytes(self, conn: TConn, _sock: Any) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._forget(conn)
            self._close(conn)
            return
        buffer = self._buffers[conn]
        buffer += data
        if _END_OF_HEADERS in buffer:
            self._forget(conn)
            self._hand_over(conn, bytes(buffer))
        elif len(buffer) > _MAX_HEADER_BYTES:
            self._forget(conn)
            self._refuse(conn, _TOO_LARGE_RESPONSE)

    def _hand_over(self, conn: TConn, held: bytes) -> None:
        conn.init()  # plain HTTP/1.1 parser (no TLS, no h2c), created on this thread
        conn.parser.unreader.unread(held)
        conn.data_ready = True
        conn.sock.deadline = time.monotonic() + self.body_timeout_s
        self._ready.add(conn)
        self.enqueue_req(conn)

    def _forget(self, conn: TConn) -> None:
        self._reading.pop(conn, None)
        self._buffers.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _close(self, conn: TConn) -> None:
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c, deadline in self._reading.items() if deadline <= now]:
            self._forget(conn)
            self._refuse(conn, _TIMEOUT_RESPONSE)

    def _refuse(self, conn: TConn, response: bytes) -> None:
        with contextlib.suppress(OSError):
            conn.sock.send(response)  # non-blocking, best effort: the client may not read
        self._close(conn)
