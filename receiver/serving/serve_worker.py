"""gunicorn's gthread worker, but a pool thread only ever sees a whole request.

The stock gthread worker hands every accepted connection to a pool thread, which then
blocks reading the request. A client that trickles its headers (issue #14) or its body
(issue #26: headers with `Content-Length: 60000`, then a byte a second) holds that thread
as long as it likes, so `threads` such clients per worker, without any token, made
`/healthz` and the webhook unreachable.

Here the worker's event loop reads each request itself, without blocking, and passes a
connection to the pool only once the whole request is in memory:

- the header block, within AUTOFIX_HEADER_TIMEOUT_S (408) and 64 KiB (431);
- then, from the headers alone (api/gate.py), a refusal at once: 401/403 without the
  route's credentials, a stale or unsigned `/slack/interactions`, 413 for a Content-Length
  over the route's limit. The refusal says `Connection: close`; no body byte is read;
- then the body (Content-Length or chunked), within AUTOFIX_BODY_TIMEOUT_S of the headers,
  a total wall-clock deadline (408).

Every refused connection is half-closed at once (the client sees its answer and the end of
the stream) and drained for at most 2 s in the event loop before it is closed, so the answer
is not lost to a reset. gunicorn's own graceful close does that drain blocking, on the event
loop; `_Conn.close` sends it here too.

Why not gevent/eventlet: the receiver runs its own threads (runners, the outbox sender)
with blocking psycopg2 and Docker SDK calls; monkey-patching all of that for one worker is
a larger change, and a new dependency, than this subclass. The cost is coupling to
gunicorn's ThreadWorker internals (accept, enqueue_req, on_client_socket_readable,
murder_pending, TConn and its parser's unreader), so pyproject.toml pins gunicorn to the
tested minor and tests/test_slow_clients.py runs the real `autofix serve`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import re
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker
from werkzeug.datastructures import Headers

from receiver.api.gate import Scopes, body_limit
from receiver.domain.errors import AutofixError, BadRequest, PayloadTooLarge, RequestTimeout

__all__ = ["WholeRequestWorker"]

_END_OF_HEADERS = b"\r\n\r\n"
# Far more than any real client sends (Alertmanager: well under 1 KiB), and small enough
# that 1000 connections per worker buffer at most 64 MiB. Past it: 431, closed.
_MAX_HEADER_BYTES = 64 * 1024
# A refused or closing connection is drained this long at most (gunicorn's own figure).
_LINGER_S = 2.0
_LINGER_MAX_BYTES = 64 * 1024
# Sending a response is not a body read: a large page to a slow link may take longer than
# AUTOFIX_BODY_TIMEOUT_S, and only after the request passed every check.
_SEND_TIMEOUT_S = 30.0
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# gunicorn's loop tells the master it is alive and checks its parent on every wakeup, a
# system call each, once per request or more under load; the master only needs to hear
# within `timeout` (60 s), and the loop wakes at least once a second anyway.
_HEARTBEAT_S = 0.5
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


def _response(status: int, body: dict[str, object]) -> bytes:
    payload = json.dumps(body).encode()
    return (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            ).encode() + payload


_INTERNAL_ERROR = _response(500, {"error": "internal_error",
                                  "message": "unexpected error; see the receiver's log"})
_TOO_LARGE_HEADERS = _response(431, {"error": "request_header_fields_too_large",
                                     "message": "request headers over 64 KiB"})


class _DeadlineSocket(socket.socket):
    """A client socket whose blocking calls never wait longer than `idle_timeout_s`, and
    whose reads stop at `deadline` (monotonic) when one is set. Pool threads read requests
    from memory; this bounds them should gunicorn ever read the socket itself."""

    idle_timeout_s: float = _SEND_TIMEOUT_S
    deadline: float | None = None

    @classmethod
    def adopt(cls, sock: socket.socket) -> _DeadlineSocket:
        return cls(sock.family, sock.type, sock.proto, fileno=sock.detach())

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


class _Conn(TConn):  # type: ignore[misc]
    """gunicorn's connection, whose graceful close lingers in the event loop instead of
    blocking it (gunicorn's util.close_graceful waits up to 2 s on the calling thread)."""

    linger: Callable[[_Conn], None] | None = None
    keepalive_s: float | None = None  # the worker's cfg.keepalive, read once

    def set_timeout(self) -> None:
        if self.keepalive_s is None:
            super().set_timeout()
        else:  # as gunicorn's, without a cfg lookup per request
            self.timeout = time.monotonic() + self.keepalive_s

    def close(self, graceful: bool = False) -> None:
        if graceful and self.linger is not None:
            self.linger(self)
        else:
            super().close(graceful)


class _Chunked:
    """Where a chunked body ends, found incrementally in the bytes read so far."""

    def __init__(self, start: int) -> None:
        self.position = start
        self.size = 0  # decoded bytes so far
        self.done = False
        self._left: int | None = None  # of the current chunk's data and its CRLF
        self._trailers = False

    def advance(self, buffer: bytearray) -> None:
        while not self.done:
            if self._left is not None:
                taken = min(self._left, len(buffer) - self.position)
                self.position += taken
                self._left -= taken
                if self._left:
                    return
                if buffer[self.position - 2:self.position] != b"\r\n":
                    raise BadRequest("a chunk does not end with CRLF")
                self._left = None
                continue
            end = buffer.find(b"\r\n", self.position)
            if end < 0:
                if len(buffer) - self.position > 4096:
                    raise BadRequest("a chunk size or trailer line over 4 KiB")
                return
            line = bytes(buffer[self.position:end])
            self.position = end + 2
            if self._trailers:
                self.done = not line
                continue
            digits = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(digits):
                raise BadRequest("a chunk size is not hexadecimal")
            length = int(digits, 16)
            self.size += length
            if length == 0:
                self._trailers = True
            else:
                self._left = length + 2


@dataclass
class _Incoming:
    """A request being read by the event loop."""

    buffer: bytearray
    deadline: float  # the header deadline, then the body's
    head_end: int | None = None
    body_end: int | None = None  # Content-Length framing
    chunked: _Chunked | None = None
    limit: int = 0
    timeout_message: str = "request headers not received in time"
    started: float = 0.0
    # (method, path, User-Agent) once the head is parsed, for the access log
    request: tuple[str, str, str] = ("-", "-", "-")


def _parse_head(block: bytes) -> tuple[str, str, Headers]:
    """Request line and header fields; BadRequest for anything gunicorn should not see."""
    text = block.decode("latin-1")
    bare = text.replace("\r\n", "")
    if "\r" in bare or "\n" in bare or "\0" in bare:
        raise BadRequest("a bare CR, LF or NUL in the request head")
    request_line, *lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise BadRequest("malformed request line")
    headers = Headers()
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise BadRequest("malformed header field")
        headers.add(name, value.strip(" \t"))
    return parts[0], parts[1], headers


def _header(headers: Headers, name: str, default: str) -> str:
    """headers.get(name, default), without the KeyError werkzeug raises and catches inside
    it for an absent name (most requests have no Expect, many no User-Agent)."""
    values = headers.getlist(name)
    return values[0] if values else default


def _framing(headers: Headers) -> tuple[int | None, bool]:
    """(Content-Length, chunked); BadRequest for the ambiguous (RFC 9112 6.3)."""
    codings = headers.getlist("Transfer-Encoding")
    lengths = headers.getlist("Content-Length")
    if codings:
        if lengths or ",".join(codings).strip().lower() != "chunked":
            raise BadRequest("only Transfer-Encoding: chunked, without Content-Length")
        return None, True
    if not lengths:
        return None, False
    if len(lengths) > 1 or not re.fullmatch(r"[0-9]{1,18}", lengths[0]):
        raise BadRequest("Content-Length must be one decimal number")
    return int(lengths[0]), False


class WholeRequestWorker(ThreadWorker):  # type: ignore[misc]
    """ThreadWorker whose event loop reads whole requests, under deadlines."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = 10.0
        self.body_timeout_s = 5.0
        self._incoming: dict[TConn, _Incoming] = {}
        self._lingering: dict[TConn, tuple[float, int]] = {}  # → (deadline, bytes drained)
        self._ready: set[TConn] = set()
        self._scopes: Scopes = {}  # gate.body_limit's routing memo, this worker's own
        self._tls = False
        self._keepalive_s: float | None = None
        self._notified = self._parent_checked = float("-inf")

    def run(self) -> None:
        settings = self.wsgi.extensions["autofix"].settings
        self.header_timeout_s = settings.header_timeout_s
        self.body_timeout_s = settings.body_timeout_s
        self._tls = bool(self.cfg.is_ssl)  # read once: cfg attributes are looked up slowly
        self._keepalive_s = float(self.cfg.keepalive)
        super().run()

    def notify(self) -> None:
        now = time.monotonic()
        if now - self._notified >= _HEARTBEAT_S:
            self._notified = now
            super().notify()

    def is_parent_alive(self) -> bool:
        now = time.monotonic()
        if now - self._parent_checked < _HEARTBEAT_S:
            return True
        self._parent_checked = now
        return bool(super().is_parent_alive())

    # -- every connection that is about to need a thread comes through here first --------

    def accept(self, listener: Any) -> None:
        if self._tls:  # TLS bytes cannot be scanned for headers: tls.py bounds reads
            super().accept(listener)
            return
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = _Conn(self.cfg, _DeadlineSocket.adopt(client), address,
                     listener.getsockname())
        conn.linger = self._linger
        conn.keepalive_s = self._keepalive_s
        self._read_request(conn, b"")

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        """A kept-alive connection sent something: its next request, maybe slowly. It stays
        registered, now with the request reader's callback (a change of the key's data
        only, no system call), and what it sent is read at once, not after another wait."""
        self.keepalived_conns.remove(conn)
        if self._tls:
            self.poller.unregister(client)
            self.enqueue_req(conn)
            return
        held = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        self._read_request(conn, held, registered=True)
        if conn in self._incoming:
            self._on_bytes(conn, client)

    def enqueue_req(self, conn: TConn) -> None:
        if conn in self._ready or self._tls:
            self._ready.discard(conn)
            super().enqueue_req(conn)
            return
        # Anything else (a kept-alive connection, bytes read ahead after a request) goes
        # back through the request reader with what the parser already holds.
        held = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        self._read_request(conn, held)

    # -- the request reader ------------------------------------------------------------------

    def _read_request(self, conn: TConn, held: bytes, registered: bool = False) -> None:
        """`registered`: a kept-alive connection, already non-blocking and on the poller."""
        now = time.monotonic()
        self._incoming[conn] = _Incoming(bytearray(held), now + self.header_timeout_s,
                                         started=now)
        reader = partial(self._on_bytes, conn)
        if registered:
            self.poller.modify(conn.sock, selectors.EVENT_READ, reader)
        else:
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, reader)
        self._advance(conn)

    def _on_bytes(self, conn: TConn, _sock: Any) -> None:
        data = _receive(conn)
        if data is None:
            return
        if not data:  # the client went away
            self._forget(conn)
            self.nr_conns -= 1
            conn.close()
            return
        self._incoming[conn].buffer += data
        self._advance(conn)

    def _advance(self, conn: TConn) -> None:
        incoming = self._incoming[conn]
        try:
            if incoming.head_end is None:
                while incoming.buffer.startswith(b"\r\n"):  # RFC 9112 2.2: ignore these
                    del incoming.buffer[:2]
                end = incoming.buffer.find(_END_OF_HEADERS)
                if end < 0 and len(incoming.buffer) <= _MAX_HEADER_BYTES:
                    return
                if end < 0 or end > _MAX_HEADER_BYTES:
                    self._forget(conn)
                    self._refuse(conn, _TOO_LARGE_HEADERS, incoming, 431)
                    return
                self._admit(conn, incoming, end)
            if self._body_complete(incoming):
                self._forget(conn)
                self._hand_over(conn, bytes(incoming.buffer))
        except AutofixError as error:
            self._forget(conn)
            self._refuse(conn, _response(error.status, error.to_dict()), incoming,
                         error.status)
        except Exception:  # a bug here must not end the event loop, and with it the worker
            self.log.exception("error reading a request")
            self._forget(conn)
            self._refuse(conn, _INTERNAL_ERROR, incoming, 500)

    def _admit(self, conn: TConn, incoming: _Incoming, end: int) -> None:
        """Decide from the headers alone; from here the body deadline runs."""
        incoming.head_end = end + len(_END_OF_HEADERS)
        method, target, headers = _parse_head(bytes(incoming.buffer[:end]))
        incoming.request = (method, target.partition("?")[0][:1024],
                            _header(headers, "User-Agent", "-"))
        length, chunked = _framing(headers)
        incoming.limit = body_limit(self.wsgi, method, target, headers, length, self._scopes)
        incoming.deadline = time.monotonic() + self.body_timeout_s
        incoming.timeout_message = "request body not received in time"
        if chunked:
            incoming.chunked = _Chunked(incoming.head_end)
        else:
            incoming.body_end = incoming.head_end + (length or 0)
        if (_header(headers, "Expect", "").lower() == "100-continue"
                and not self._body_complete(incoming)):
            with contextlib.suppress(OSError):  # non-blocking; a full buffer only delays
                conn.sock.send(_CONTINUE)

    def _body_complete(self, incoming: _Incoming) -> bool:
        if incoming.chunked is None:
            return incoming.body_end is not None and len(incoming.buffer) >= incoming.body_end
        incoming.chunked.advance(incoming.buffer)
        framing = len(incoming.buffer) - (incoming.head_end or 0) - incoming.chunked.size
        if incoming.chunked.size > incoming.limit or framing > incoming.limit + 65536:
            raise PayloadTooLarge(f"body is over the limit of {incoming.limit} bytes")
        return incoming.chunked.done

    def _hand_over(self, conn: TConn, held: bytes) -> None:
        conn.init()  # plain HTTP/1.1 parser (no TLS, no h2c), created on this thread
        conn.parser.unreader.unread(held)
        conn.data_ready = True
        conn.sock.deadline = time.monotonic() + self.body_timeout_s
        self._ready.add(conn)
        self.enqueue_req(conn)

    def _forget(self, conn: TConn) -> None:
        self._incoming.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _refuse(self, conn: TConn, response: bytes, incoming: _Incoming, status: int) -> None:
        with contextlib.suppress(OSError):
            conn.sock.send(response)  # non-blocking, best effort: the client may not read
        self.nr_conns -= 1
        self._linger(conn)
        refused = getattr(self.log, "refused", None)  # logs.GunicornJsonLogger
        if refused is not None:
            remote = conn.client[0] if isinstance(conn.client, tuple) else str(conn.client)
            refused(remote, *incoming.request[:2], status, len(response),
                    time.monotonic() - incoming.started, incoming.request[2])

    # -- closing without losing the answer, and without blocking the loop -------------------

    def _linger(self, conn: TConn) -> None:
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self._on_linger_bytes, conn))
        except (OSError, KeyError, ValueError):
            self._end_linger(conn)
            return
        self._lingering[conn] = (time.monotonic() + _LINGER_S, 0)

    def _on_linger_bytes(self, conn: TConn, _sock: Any) -> None:
        data = _receive(conn)
        if data is None:
            return
        deadline, drained = self._lingering.get(conn, (0.0, 0))
        drained += len(data)
        if not data or drained > _LINGER_MAX_BYTES:
            self._end_linger(conn)
        else:
            self._lingering[conn] = (deadline, drained)

    def _end_linger(self, conn: TConn) -> None:
        self._lingering.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c, (deadline, _) in self._lingering.items() if deadline <= now]:
            self._end_linger(conn)
        for conn, incoming in [(c, i) for c, i in self._incoming.items() if i.deadline <= now]:
            self._forget(conn)
            self._refuse(conn, _response(408, RequestTimeout(incoming.timeout_message)
                                         .to_dict()), incoming, 408)


def _receive(conn: TConn) -> bytes | None:
    """What a readable socket holds: None when nothing after all (a spurious wakeup), b""
    when the client went away or the socket failed."""
    try:
        return bytes(conn.sock.recv(65536))
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""
