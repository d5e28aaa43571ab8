"""`autofix serve`'s own arguments, checked before anything starts: gunicorn would accept
`--workers 0` and never answer, and retry an address it cannot resolve for ever. Each
raises ValueError with one line; the CLI prints it naming the option."""

from __future__ import annotations

import socket

__all__ = ["DEFAULT_BIND", "DEFAULT_WORKERS", "bind_address", "worker_count"]

DEFAULT_BIND = "0.0.0.0:8080"
DEFAULT_WORKERS = 2
MAX_WORKERS = 64


def worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"must be from 1 to {MAX_WORKERS}, got {value}")
    return value


def bind_address(text: str) -> str:
    """HOST:PORT ([::1]:PORT for IPv6) whose host resolves, or unix:PATH."""
    if text.startswith("unix:"):
        if len(text) == len("unix:"):
            raise ValueError("unix: needs a socket path, e.g. "
                                             "unix:/run/autofix.sock")
        return text
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT (e.g. 127.0.0.1:8080) or "
                                         f"unix:PATH, got {text!r}")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ValueError(f"cannot resolve the host {host!r} of "
                                         f"{text!r}: {reason}") from None
    return text
