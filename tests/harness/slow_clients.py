"""Slow clients against a live receiver: sockets that trickle their headers or their body,
and a timed request helper. Used by tests/test_slow_clients.py and bench/slow_clients.py."""

from __future__ import annotations

import selectors
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TRICKLE_EVERY_S", "SlowFlood", "SlowSocket", "Trickler", "timed"]

TRICKLE_EVERY_S = 2.0


def timed(request: urllib.request.Request) -> tuple[int, float]:
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return response.status, time.monotonic() - started


class Trickler:
    """Sockets that send a request's headers one byte at a time and never finish."""

    def __init__(self, port: int, count: int) -> None:
        self.request = (b"POST /webhook/alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Type: application/json\r\nX-Padding: " + b"x" * 200)
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=5)
                      for _ in range(count)]
        self.sent = [0] * count
        self.closed_by_server: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Trickler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for index, sock in enumerate(self.socks):
                if sock.fileno() < 0:
                    continue
                try:
                    sock.send(self.request[self.sent[index]:self.sent[index] + 1])
                    self.sent[index] += 1
                except OSError:
                    self._closed(sock)
            self._stop.wait(TRICKLE_EVERY_S)

    def _closed(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(0.5)
            self.closed_by_server.append(sock.recv(4096))
        except OSError:
            self.closed_by_server.append(b"")
        sock.close()

    def reap(self) -> None:
        """Collect whatever the server sent on each still-open socket (its 408) and close."""
        for sock in self.socks:
            if sock.fileno() >= 0:
                self._closed(sock)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class SlowSocket:
    """One slow client: `head` is sent at once, then `trickle` a byte per `every_s`."""

    kind: str
    sock: socket.socket
    trickle: bytes
    every_s: float
    opened_at: float  # once `head` was sent
    sent: int = 0
    next_send: float = 0.0
    closed_at: float | None = None  # by the server
    abandoned_at: float | None = None  # still open when the flood stopped
    answer: bytes = b""

    @property
    def held_s(self) -> float:
        return (self.closed_at or self.abandoned_at or time.monotonic()) - self.opened_at


class SlowFlood:
    """Keeps `count` slow sockets of each kind open at once for as long as it runs: one the
    server closes is replaced by a new one, a trickle interval later (not at once: this is
    about slow clients, not a connection flood). Records when the server closed each socket
    (end of stream or reset, seen by one selector thread) and what it answered."""

    def __init__(self, port: int, kinds: dict[str, tuple[int, Callable[[], tuple[bytes, bytes]],
                                                          float]]) -> None:
        """kinds: name → (count, a factory of (head, trickle), seconds between bytes)."""
        self.port = port
        self.kinds = kinds
        self.closed: list[SlowSocket] = []
        self.open: dict[int, SlowSocket] = {}
        self._selector = selectors.DefaultSelector()
        self._reopen: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SlowFlood:
        for kind, (count, _, _) in self.kinds.items():
            for _ in range(count):
                self._open(kind)
        self._thread.start()
        return self

    def _open(self, kind: str) -> None:
        _, factory, every_s = self.kinds[kind]
        head, trickle = factory()
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(head)
        sock.setblocking(False)
        now = time.monotonic()
        slow = SlowSocket(kind, sock, trickle, every_s, now, next_send=now + every_s)
        self.open[sock.fileno()] = slow
        self._selector.register(sock, selectors.EVENT_READ, slow)

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                self._read(key.data)
            now = time.monotonic()
            for due, kind in [item for item in self._reopen if item[0] <= now]:
                self._reopen.remove((due, kind))
                self._open(kind)
            for slow in list(self.open.values()):
                if slow.next_send <= now and slow.sent < len(slow.trickle):
                    try:
                        slow.sock.send(slow.trickle[slow.sent:slow.sent + 1])
                        slow.sent += 1
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._read(slow)
                        continue
                    slow.next_send = now + slow.every_s

    def _read(self, slow: SlowSocket) -> None:
        try:
            data = slow.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            slow.answer += data
            return
        self._close(slow)
        self._reopen.append((time.monotonic() + slow.every_s, slow.kind))

    def _close(self, slow: SlowSocket) -> None:
        slow.closed_at = time.monotonic()
        self._selector.unregister(slow.sock)
        del self.open[slow.sock.fileno()]
        slow.sock.close()
        self.closed.append(slow)

    def stop(self) -> list[SlowSocket]:
        """Stop; the sockets still open are returned, closed here (abandoned_at)."""
        self._stop.set()
        self._thread.join(10)
        still_open = list(self.open.values())
        for slow in still_open:
            slow.abandoned_at = time.monotonic()
            self._selector.unregister(slow.sock)
            slow.sock.close()
        self.open.clear()
        return still_open
