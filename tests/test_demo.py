"""`make demo` and `make demo-down`, run as the README says: the stack `up` leaves behind
keeps answering after `make demo` returns, and `make demo-down` stops all of it."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.demo import REPO, STATE, STATE_DIR
from tests.harness.procs import require_binary

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def make(target: str, timeout: float) -> str:
    done = subprocess.run(["make", target], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"make {target}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def alive(pid: int) -> bool:
    """Running, not a zombie: `up` exits, so init reaps what `down` stops."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.timeout(1200)
def test_make_demo_leaves_a_working_stack_and_make_demo_down_stops_it() -> None:
    require_binary("dockerd")
    require_binary("initdb")
    state: dict = {}
    try:
        out = make("demo", timeout=900)
        api = re.search(r"autofix API\s+(http://127\.0\.0\.1:\d+/api/v1)", out)
        assert api, out[-2000:]
        state = json.loads(STATE.read_text())
        token = (STATE_DIR / "api_token").read_text().strip()
        request = urllib.request.Request(f"{api.group(1)}/incidents",
                                         headers={"Authorization": f"Bearer {token}"})
        # The README's query, after `make demo` has returned: its database is still there.
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert json.load(response)["items"], "the demo's story left no incidents"
        assert state["pids"] and all(map(alive, state["pids"]))
    finally:
        make("demo-down", timeout=300)
    assert not STATE_DIR.exists()
    assert not Path(state["postgres"]["root"]).exists()
    assert not any(map(alive, state["pids"]))
