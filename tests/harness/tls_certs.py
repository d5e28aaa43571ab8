"""Throwaway TLS material made with the openssl CLI.

make_docker_certs: a CA, a server certificate for 127.0.0.1 (IP SAN) and a client
certificate: what a Docker daemon with --tlsverify and its client need (server_bundle:
the server's certificate and key in one PEM, HAProxy's `crt`). make_fleet_certs: the
same by docs/examples/fleet-certs.sh, the commands the deploy guide gives a user: the
fleet's CA, a host's proxy certificate, the receiver's and Prometheus' client ones."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.harness.procs import require_binary

__all__ = ["FLEET_CERTS_SCRIPT", "DockerCerts", "FleetCerts", "make_docker_certs",
           "make_fleet_certs"]

FLEET_CERTS_SCRIPT = Path(__file__).resolve().parents[2] / "docs/examples/fleet-certs.sh"


@dataclass(frozen=True)
class DockerCerts:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @property
    def server_bundle(self) -> Path:
        return self.server_cert.with_name("server-bundle.pem")


@dataclass(frozen=True)
class FleetCerts:
    """What fleet-certs.sh leaves: ca/, clients/ and the host's folder."""

    directory: Path
    host: str

    @property
    def ca(self) -> Path:
        return self.directory / "ca" / "ca.pem"

    @property
    def proxy_pem(self) -> Path:
        return self.directory / self.host / "proxy.pem"

    @property
    def host_ca(self) -> Path:
        return self.directory / self.host / "ca.pem"

    def client(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) of autofix-receiver or autofix-prometheus."""
        return (self.directory / "clients" / f"{name}.pem",
                self.directory / "clients" / f"{name}-key.pem")

    def tls_spec(self) -> dict[str, str]:
        """The receiver's `tls` entry in AUTOFIX_DOCKER_HOSTS for this host."""
        cert, key = self.client("autofix-receiver")
        return {"ca": str(self.ca), "cert": str(cert), "key": str(key)}


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
    certs = DockerCerts(directory / "ca.pem", directory / "server.pem",
                        directory / "server-key.pem", directory / "client.pem",
                        directory / "client-key.pem")
    certs.server_bundle.write_bytes(certs.server_cert.read_bytes()
                                    + certs.server_key.read_bytes())
    return certs


def make_fleet_certs(directory: Path, host: str = "edge-2",
                     san: str = "IP:127.0.0.1") -> FleetCerts:
    """docs/examples/fleet-certs.sh, run as the guide says (in `directory`); a second host
    in the same directory reuses the CA and the clients."""
    directory.mkdir(parents=True, exist_ok=True)
    require_binary("openssl")
    done = subprocess.run(["sh", str(FLEET_CERTS_SCRIPT), host, san], cwd=directory,
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"fleet-certs.sh failed:\n{done.stdout}\n{done.stderr}")
    return FleetCerts(directory, host)
