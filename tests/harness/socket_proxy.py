"""The project's own Docker API proxies (socket-proxy/*.cfg) run by HAProxy on loopback in
front of a private dockerd, with nothing changed but the listening address and the socket:
tests send real requests through the real rules without the compose stack.

    proxy = start_socket_proxy("receiver.cfg", dockerd.sock, tmp_path)
    proxy.docker_host  # tcp://127.0.0.1:PORT, for the docker SDK
    proxy.stop()
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, require_binary, wait_for

__all__ = ["SocketProxy", "proxy_config", "start_socket_proxy"]

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "socket-proxy"
# Where compose puts things in the proxy's container; here: loopback, the private
# dockerd's socket, the repository's files.
_BIND = "bind :2375"
_SOCKET = "/var/run/docker.sock"
_CONFIG_DIR = "/usr/local/etc/haproxy/"


@dataclass
class SocketProxy:
    port: int
    proc: ManagedProcess

    @property
    def docker_host(self) -> str:
        return f"tcp://{LOOPBACK}:{self.port}"

    def log(self) -> str:
        """One line per request: client, timings, status, then the request line."""
        return self.proc.log_path.read_text(errors="replace")

    def denials(self) -> list[str]:
        """The log lines of requests the proxy refused."""
        return [line for line in self.log().splitlines() if " 403 " in line]

    def stop(self) -> None:
        self.proc.stop()


def proxy_config(cfg_name: str, docker_sock: Path, port: int) -> str:
    """The shipped config, listening on loopback:port and forwarding to docker_sock."""
    text = (CONFIG_DIR / cfg_name).read_text()
    if text.count(_BIND) != 1 or f"server dockerd {_SOCKET}" not in text:
        raise ValueError(f"{cfg_name}: expected one {_BIND!r} and the dockerd server")
    return (text.replace(_BIND, f"bind {LOOPBACK}:{port}")
            .replace(_SOCKET, str(docker_sock)).replace(_CONFIG_DIR, f"{CONFIG_DIR}/"))


def _accepts(port: int) -> bool:
    with socket.create_connection((LOOPBACK, port), timeout=1):
        return True


def start_socket_proxy(cfg_name: str, docker_sock: Path, workdir: Path,
                       without: str | None = None) -> SocketProxy:
    """`without`: drop the config's lines equal to it once stripped (an older proxy that
    lacks one rule); it must be there."""
    binary = require_binary("haproxy")
    port = free_port()
    cfg = workdir / cfg_name
    text = proxy_config(cfg_name, docker_sock, port)
    if without is not None:
        kept = [line for line in text.splitlines() if line.strip() != without]
        if len(kept) == len(text.splitlines()):
            raise ValueError(f"{cfg_name}: no line {without!r}")
        text = "\n".join(kept) + "\n"
    cfg.write_text(text)
    # -db: foreground; the config logs each request to stdout, i.e. the log file.
    proc = ManagedProcess([binary, "-db", "-f", str(cfg)], workdir / f"{cfg_name}.log").start()
    try:
        wait_for(lambda: _accepts(port), 10.0, f"haproxy {cfg_name} on {port}")
    except TimeoutError as exc:
        tail = proc.log_tail()
        proc.stop()
        raise TimeoutError(f"{exc}\n--- haproxy log ---\n{tail}") from None
    return SocketProxy(port=port, proc=proc)
