"""Optional TLS on the listener: a certificate made by the test (openssl), the real
`autofix serve`, the operator commands with --cacert, a renewed certificate served after
SIGHUP, and bad files refused at start with one line."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import API_TOKEN, WEBHOOK_TOKEN
from tests.harness.procs import LOOPBACK, require_binary, wait_for
from tests.harness.receiver import start_receiver

REPO = Path(__file__).resolve().parents[1]
BASE_ENV = {"AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
            "AUTOFIX_DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1, as cert.pem and key.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run([require_binary("openssl"), "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-addext", f"subjectAltName=IP:{LOOPBACK}",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    key.chmod(0o600)
    return cert, key


def autofix(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFIX_")}
    return subprocess.run([sys.executable, "-m", "receiver.ops.cli", *argv], cwd=REPO,
                          env={**clean, **(env or {})}, capture_output=True, text=True,
                          timeout=60)


def served_subject(port: int) -> str:
    pem = ssl.get_server_certificate((LOOPBACK, port), timeout=5)
    done = subprocess.run([require_binary("openssl"), "x509", "-noout", "-subject"],
                          input=pem, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip()


def test_https_listener_cli_and_reload_on_sighup(sqlite_url: str, tmp_path: Path) -> None:
    live = tmp_path / "live"
    cert, key = make_certificate(live, "autofix-first")
    receiver = start_receiver(sqlite_url, root=tmp_path / "r", env={
        **BASE_ENV, "AUTOFIX_TLS_CERT_FILE": str(cert), "AUTOFIX_TLS_KEY_FILE": str(key)})
    try:
        assert receiver.url.startswith("https://")
        with urllib.request.urlopen(f"{receiver.url}/healthz", timeout=5,
                                    context=receiver.tls) as response:
            assert response.status == 200
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            plain = receiver.url.replace("https://", "http://")
            urllib.request.urlopen(f"{plain}/healthz", timeout=5).read()

        listed = autofix("incidents", "--url", receiver.url, "--cacert", str(cert),
                         "--token", API_TOKEN)
        assert listed.returncode == 0, listed.stderr
        untrusted = autofix("incidents", "--url", receiver.url, "--token", API_TOKEN)
        assert untrusted.returncode == 1
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        assert len(untrusted.stderr.splitlines()) == 1

        assert served_subject(receiver.port).endswith("autofix-first")
        renewed_cert, renewed_key = make_certificate(tmp_path / "renewed", "autofix-renewed")
        # Renewal the usual way: new files moved over the old paths, then SIGHUP.
        os.replace(renewed_key, key)
        os.replace(renewed_cert, cert)
        assert served_subject(receiver.port).endswith("autofix-first")  # kept until SIGHUP
        assert receiver.process is not None
        os.kill(receiver.process.pid, signal.SIGHUP)
        wait_for(lambda: served_subject(receiver.port).endswith("autofix-renewed"), 60,
                 "the renewed certificate served after SIGHUP")
    finally:
        receiver.stop()


def test_bad_tls_files_stop_the_start_with_one_line(sqlite_url: str, tmp_path: Path) -> None:
    cert, _ = make_certificate(tmp_path / "a", "a")
    _, other_key = make_certificate(tmp_path / "b", "b")
    env = {**BASE_ENV, "AUTOFIX_DATABASE_URL": sqlite_url}
    mismatched = autofix("serve", "--bind", f"{LOOPBACK}:1", env={
        **env, "AUTOFIX_TLS_CERT_FILE": str(cert), "AUTOFIX_TLS_KEY_FILE": str(other_key)})
    assert mismatched.returncode == 2
    assert "AUTOFIX_TLS_CERT_FILE / AUTOFIX_TLS_KEY_FILE: cannot load" in mismatched.stderr
    alone = autofix("serve", "--bind", f"{LOOPBACK}:1",
                    env={**env, "AUTOFIX_TLS_CERT_FILE": str(cert)})
    assert alone.returncode == 2
    assert alone.stderr.splitlines() == [
        "autofix: AUTOFIX_TLS_CERT_FILE and AUTOFIX_TLS_KEY_FILE go together: set both to "
        "serve HTTPS, or neither"]
