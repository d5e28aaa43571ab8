"""A private dockerd for tests: its own data/exec roots and socket, no bridge, no iptables.

    d = start_dockerd(tmp_path)        # d.sock, d.url, d.client()
    d.stop(); d.start()                # a real outage and recovery of the same daemon
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import docker

from tests.harness.procs import ManagedProcess, require_binary, wait_for

__all__ = ["Dockerd", "start_dockerd"]

# A unix socket path must fit in sun_path (108 bytes); pytest's tmp dirs can be longer,
# so the socket and exec-root (containerd sockets live there) go under a short /tmp dir.
MAX_SOCK_PATH = 100
START_TIMEOUT_S = 60.0


@dataclass
class Dockerd:
    workdir: Path
    short_dir: Path
    binary: str
    proc: ManagedProcess | None = None
    extra_args: list[str] = field(default_factory=list)  # e.g. a TLS tcp:// listener
    _clients: list[docker.DockerClient] = field(default_factory=list)

    @property
    def sock(self) -> Path:
        return self.short_dir / "d.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def argv(self) -> list[str]:
        return [
            self.binary, "--bridge=none", "--iptables=false", "--ip6tables=false",
            "--data-root", str(self.workdir / "data"), "--exec-root", str(self.short_dir / "x"),
            "-H", self.url, "--pidfile", str(self.short_dir / "d.pid"), *self.extra_args,
        ]

    def client(self) -> docker.DockerClient:
        client = docker.DockerClient(base_url=self.url, timeout=120)
        self._clients.append(client)
        return client

    def _ping(self) -> bool:
        client = docker.DockerClient(base_url=self.url, timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def start(self) -> Dockerd:
        if self.proc is not None and self.proc.alive():
            return self
        self.short_dir.mkdir(mode=0o700, exist_ok=True)
        self.proc = ManagedProcess(self.argv(), self.workdir / "dockerd.log").start()
        try:
            wait_for(self._ping, START_TIMEOUT_S, f"dockerd on {self.sock}", interval=0.25)
        except TimeoutError as exc:
            tail = self.proc.log_tail()
            self.proc.stop()
            raise TimeoutError(f"{exc}\n--- dockerd log ---\n{tail}") from None
        return self

    def _close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    def stop(self) -> None:
        self._close_clients()
        if self.proc is not None:
            # dockerd stops its containers on SIGTERM; give it time before SIGKILL.
            self.proc.stop(timeout=30)
            self.proc = None
        # dockerd leaves its default netns (and, if killed, overlay mounts) mounted.
        _unmount_under(self.short_dir)
        _unmount_under(self.workdir / "data")
        # Sockets and containerd state only; images and volumes stay in workdir/data.
        shutil.rmtree(self.short_dir, ignore_errors=True)

    def kill(self) -> None:
        """dockerd dies at once: SIGKILL to its process group (containerd included), then to
        the shims and containers it leaves running. stop() still unmounts and cleans up."""
        self._close_clients()
        if self.proc is not None:
            self.proc.stop(timeout=10, sig=signal.SIGKILL)
            self.proc = None
        _kill_trees_naming(str(self.short_dir))

    def remove_all_containers(self) -> None:
        client = docker.DockerClient(base_url=self.url, timeout=60)
        try:
            for container in client.containers.list(all=True):
                container.remove(force=True)
        finally:
            client.close()


def _kill_trees_naming(text: str) -> None:
    """SIGKILL every process whose command line holds `text`, and all its descendants."""
    parents: dict[int, int] = {}
    roots: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        if text in cmdline:
            roots.append(int(entry.name))
    doomed = set(roots)
    while True:
        children = {pid for pid, parent in parents.items() if parent in doomed} - doomed
        if not children:
            break
        doomed |= children
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _unmount_under(directory: Path) -> None:
    prefix = str(directory.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def start_dockerd(workdir: Path, extra_args: list[str] | None = None) -> Dockerd:
    binary = require_binary("dockerd")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    short_dir = Path(tempfile.mkdtemp(prefix="afd-", dir="/tmp"))
    daemon = Dockerd(workdir=workdir, short_dir=short_dir, binary=binary,
                     extra_args=list(extra_args or []))
    if len(str(daemon.sock)) > MAX_SOCK_PATH:
        raise RuntimeError(f"docker socket path too long: {daemon.sock}")
    os.chmod(short_dir, 0o700)
    return daemon.start()
