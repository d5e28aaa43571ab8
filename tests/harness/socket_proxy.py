"""The project's own Docker API proxies (socket-proxy/*.cfg) run by HAProxy on loopback in
front of a private dockerd, with nothing changed but the socket and the config's folder;
the listening addresses are the config's own variables (AUTOFIX_PROXY_BIND, and with
`tls`, AUTOFIX_PROXY_TLS_*): tests send real requests through the real rules without the
compose stack.

    proxy = start_socket_proxy("receiver.cfg", dockerd.sock, tmp_path)
    proxy.docker_host  # tcp://127.0.0.1:PORT, for the docker SDK
    certs = make_fleet_certs(tmp_path / "certs", "b")  # docs/examples/fleet-certs.sh
    proxy = start_socket_proxy("receiver.cfg", dockerd.sock, tmp_path,
                               tls=(certs.proxy_pem, certs.host_ca))
    proxy.tls_url  # https://127.0.0.1:PORT: TLS with a required client certificate
    proxy.stop()
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, require_binary, wait_for

__all__ = ["ProxyTls", "SocketProxy", "proxy_config", "proxy_env", "start_socket_proxy"]

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "socket-proxy"
# Where compose puts things in the proxy's container; here: the private dockerd's socket,
# the repository's files.
_BIND = 'bind "${AUTOFIX_PROXY_BIND-:2375}" proto h1'
_SOCKET = "/var/run/docker.sock"
_CONFIG_DIR = "/usr/local/etc/haproxy/"


@dataclass
class SocketProxy:
    port: int
    proc: ManagedProcess
    tls_port: int | None = None

    @property
    def docker_host(self) -> str:
        return f"tcp://{LOOPBACK}:{self.port}"

    @property
    def tls_docker_host(self) -> str:
        """tcp://127.0.0.1:TLS_PORT, for the docker SDK with a TLSConfig."""
        if self.tls_port is None:
            raise ValueError("this proxy was started without tls")
        return f"tcp://{LOOPBACK}:{self.tls_port}"

    @property
    def tls_url(self) -> str:
        """https://127.0.0.1:TLS_PORT: docker_sd applies tls_config to http(s) hosts only."""
        return self.tls_docker_host.replace("tcp://", "https://")

    def log(self) -> str:
        """One line per request: client, timings, status, then the request line."""
        return self.proc.log_path.read_text(errors="replace")

    def denials(self) -> list[str]:
        """The log lines of requests the proxy refused."""
        return [line for line in self.log().splitlines() if " 403 " in line]

    def stop(self) -> None:
        self.proc.stop()


def proxy_config(cfg_name: str, docker_sock: Path) -> str:
    """The shipped config, forwarding to docker_sock (its binds are proxy_env's)."""
    text = (CONFIG_DIR / cfg_name).read_text()
    if text.count(_BIND) != 1 or f"server dockerd {_SOCKET}" not in text:
        raise ValueError(f"{cfg_name}: expected one {_BIND!r} and the dockerd server")
    return text.replace(_SOCKET, str(docker_sock)).replace(_CONFIG_DIR, f"{CONFIG_DIR}/")


ProxyTls = tuple[Path, Path]  # the server's certificate and key in one PEM, the clients' CA


def proxy_env(port: int, tls_port: int | None = None,
              tls: ProxyTls | None = None) -> dict[str, str]:
    """The variables the configs read: plain on loopback:port; with `tls`, TLS with a
    required client certificate on loopback:tls_port too."""
    env = {**os.environ, "AUTOFIX_PROXY_BIND": f"{LOOPBACK}:{port}"}
    if tls is not None:
        crt, ca = tls
        env.update(AUTOFIX_PROXY_TLS_BIND=f"{LOOPBACK}:{tls_port}",
                   AUTOFIX_PROXY_TLS_CERT=str(crt), AUTOFIX_PROXY_TLS_CA=str(ca))
    return env


def _accepts(port: int) -> bool:
    with socket.create_connection((LOOPBACK, port), timeout=1):
        return True


def start_socket_proxy(cfg_name: str, docker_sock: Path, workdir: Path,
                       without: str | None = None,
                       tls: ProxyTls | None = None) -> SocketProxy:
    """`without`: drop the config's lines equal to it once stripped (an older proxy that
    lacks one rule); it must be there. `tls`: also listen in TLS (tls_port), the server
    certificate and the client CA from these."""
    binary = require_binary("haproxy")
    port = free_port()
    tls_port = free_port() if tls is not None else None
    cfg = workdir / cfg_name
    text = proxy_config(cfg_name, docker_sock)
    if without is not None:
        kept = [line for line in text.splitlines() if line.strip() != without]
        if len(kept) == len(text.splitlines()):
            raise ValueError(f"{cfg_name}: no line {without!r}")
        text = "\n".join(kept) + "\n"
    cfg.write_text(text)
    # -db: foreground; the config logs each request to stdout, i.e. the log file.
    proc = ManagedProcess([binary, "-db", "-f", str(cfg)], workdir / f"{cfg_name}.log",
                          env=proxy_env(port, tls_port, tls)).start()
    try:
        wait_for(lambda: _accepts(port) and (tls_port is None or _accepts(tls_port)), 10.0,
                 f"haproxy {cfg_name} on {port}")
    except TimeoutError as exc:
        tail = proc.log_tail()
        proc.stop()
        raise TimeoutError(f"{exc}\n--- haproxy log ---\n{tail}") from None
    return SocketProxy(port=port, proc=proc, tls_port=tls_port)
