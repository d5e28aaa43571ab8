"""A TCP listener on 127.0.0.1 that accepts every connection and never answers: a hung
Docker daemon as its clients see it (the connection opens, every call waits out its
timeout)."""

from __future__ import annotations

import socket
import threading

from tests.harness.procs import free_port

__all__ = ["SilentListener"]


class SilentListener:
    def __init__(self) -> None:
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name="silent-listener")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(connection)  # kept open, never read nor answered

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()
        for connection in self._held:
            connection.close()
