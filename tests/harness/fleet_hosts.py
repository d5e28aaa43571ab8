"""Docker hosts of a fleet (#32) for the live loop: a host is a private dockerd reached
over its unix socket or over tcp:// with TLS client certificates (tests/harness/
tls_certs.py), with what the receiver (AUTOFIX_DOCKER_HOSTS) and Prometheus (docker_sd
over https://, docs/examples/prometheus-fleet.yml) are told about it.

    certs = make_docker_certs(tmp / "certs")
    hosts = [unix_host("a", session_dockerd, certs), start_tls_host("b", tmp / "b", certs)]
    copy_image(session_dockerd, hosts[1].dockerd, image)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dockerd import Dockerd, start_dockerd
from .procs import LOOPBACK, free_port
from .tls_certs import DockerCerts

__all__ = ["FleetHost", "copy_image", "start_tls_host", "unix_host"]


@dataclass
class FleetHost:
    name: str
    dockerd: Dockerd
    certs: DockerCerts
    tls_port: int | None = None  # None: the unix socket only

    def receiver_entry(self) -> dict[str, Any]:
        """This host in AUTOFIX_DOCKER_HOSTS."""
        if self.tls_port is None:
            return {"url": self.dockerd.url}
        return {"url": f"tcp://{LOOPBACK}:{self.tls_port}", "timeout_s": 10,
                "tls": {"ca": str(self.certs.ca), "cert": str(self.certs.client_cert),
                        "key": str(self.certs.client_key)}}

    def prometheus_entry(self) -> dict[str, Any]:
        """What overrides.fleet_prometheus_config substitutes in this host's job; https://
        is what makes docker_sd use tls_config (ignored for unix://)."""
        url = self.dockerd.url if self.tls_port is None else f"https://{LOOPBACK}:{self.tls_port}"
        return {"sd_url": url, "ca": self.certs.ca, "cert": self.certs.client_cert,
                "key": self.certs.client_key}


def unix_host(name: str, dockerd: Dockerd, certs: DockerCerts) -> FleetHost:
    return FleetHost(name, dockerd, certs)


def start_tls_host(name: str, workdir: Path, certs: DockerCerts) -> FleetHost:
    """A dockerd of its own, also listening on tcp://127.0.0.1:<free port> --tlsverify."""
    port = free_port()
    daemon = start_dockerd(workdir, [
        "--tlsverify", "--tlscacert", str(certs.ca), "--tlscert", str(certs.server_cert),
        "--tlskey", str(certs.server_key), "-H", f"tcp://{LOOPBACK}:{port}"])
    return FleetHost(name, daemon, certs, port)


def copy_image(source: Dockerd, target: Dockerd, tag: str) -> None:
    """`docker save | docker load`: no registry, and no second build."""
    src, dst = source.client(), target.client()
    if not dst.images.list(name=tag):
        dst.images.load(b"".join(src.images.get(tag).save(named=True)))
