"""A throwaway CA, a server certificate for 127.0.0.1 (IP SAN) and a client certificate,
made with the openssl CLI: what a Docker daemon with --tlsverify and its client need."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.harness.procs import require_binary

__all__ = ["DockerCerts", "make_docker_certs"]


@dataclass(frozen=True)
class DockerCerts:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([require_binary("openssl"), *args], cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def make_docker_certs(directory: Path) -> DockerCerts:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=autofix test CA", "-keyout", "ca-key.pem", "-out", "ca.pem",
             cwd=directory)
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
                 "-keyout", f"{who}-key.pem", "-out", f"{who}.csr", cwd=directory)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-days", "1", "-extfile", f"{who}.ext",
                 "-out", f"{who}.pem", cwd=directory)
    return DockerCerts(directory / "ca.pem", directory / "server.pem",
                       directory / "server-key.pem", directory / "client.pem",
                       directory / "client-key.pem")
