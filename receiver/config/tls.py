"""Optional TLS on the listener: AUTOFIX_TLS_CERT_FILE and AUTOFIX_TLS_KEY_FILE.

gunicorn would build a new SSL context, reading both files, for every connection. Here
each worker builds one on its first connection and keeps it: a renewed certificate is
picked up on SIGHUP (gunicorn starts new workers), never half-written mid-renewal. The
files are loaded once at start too, so a wrong path or a key that does not match is one
line and no start.

The header deadline of serve_worker.py cannot read TLS bytes, so with TLS every read of a
connection (the handshake included) is bounded by AUTOFIX_HEADER_TIMEOUT_S instead."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from receiver.config.settings import Settings

__all__ = ["check_tls_files", "gunicorn_tls_options", "server_context"]


def _read_bounded_socket(timeout_s: float) -> type[ssl.SSLSocket]:
    class ReadBoundedSocket(ssl.SSLSocket):
        """gunicorn makes a kept-alive connection blocking again before each request:
        blocking here means blocking for at most timeout_s per read."""

        def setblocking(self, flag: bool) -> None:
            if flag:
                self.settimeout(timeout_s)
            else:
                super().setblocking(False)

    return ReadBoundedSocket


class _ReadBoundedContext(ssl.SSLContext):
    """An SSL context whose server sockets time out each read (a stalled handshake, a
    client that stops sending) instead of holding a worker thread for ever."""

    read_timeout_s = 10.0

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock.settimeout(self.read_timeout_s)  # the handshake's reads too
        return super().wrap_socket(sock, *args, **kwargs)


def server_context(cert: Path, key: Path, read_timeout_s: float) -> ssl.SSLContext:
    context = _ReadBoundedContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    context.read_timeout_s = read_timeout_s
    context.sslsocket_class = _read_bounded_socket(read_timeout_s)
    return context


def check_tls_files(settings: Settings) -> str | None:
    """Why the certificate and key cannot serve TLS, or None (also when TLS is off)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    try:
        server_context(settings.tls_cert_file, settings.tls_key_file, 1.0)
    except OSError as exc:  # ssl.SSLError is an OSError
        detail = exc.strerror or getattr(exc, "reason", None) or str(exc)
        return (f"AUTOFIX_TLS_CERT_FILE / AUTOFIX_TLS_KEY_FILE: cannot load "
                f"{settings.tls_cert_file} with {settings.tls_key_file}: {detail}")
    return None


def gunicorn_tls_options(settings: Settings) -> dict[str, Any]:
    """gunicorn's TLS settings, or none when TLS is off."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None or key is None:
        return {}
    kept: dict[int, ssl.SSLContext] = {}  # per worker process: filled after the fork

    def context(_conf: Any, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        pid = os.getpid()
        if pid not in kept:
            kept[pid] = server_context(cert, key, settings.header_timeout_s)
        return kept[pid]

    return {"certfile": str(cert), "keyfile": str(key), "ssl_context": context}
