"""The test harness cleans up after itself: benchmarks once filled the disk with clusters."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.harness.procs import require_binary

REPO = Path(__file__).resolve().parent.parent

START_AND_EXIT = """
from tests.harness.postgres import start_postgres
server = start_postgres()
print(server.root, server.port, flush=True)
"""


def test_a_postgres_cluster_is_stopped_and_deleted_when_its_process_exits() -> None:
    require_binary("initdb")  # skips here (a failure in CI), not inside the child
    done = subprocess.run([sys.executable, "-c", START_AND_EXIT], cwd=REPO, check=True,
                          capture_output=True, text=True, timeout=180)
    root, port = done.stdout.split()
    assert not Path(root).exists()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(port))) != 0  # the server is gone
