"""Session fixtures for the monitored stack; imported by tests/conftest.py.

    dockerd            - a private dockerd (tests.harness.dockerd.Dockerd) for the session
    target_app_image   - tag of the target_app image built on it (offline)
    swarm              - a real single-node Swarm in a second private dockerd
                         (tests.harness.swarm.Swarm), services removed after each user
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.dockerd import Dockerd, start_dockerd
from tests.harness.images import ensure_target_app_image
from tests.harness.swarm import Swarm, start_swarm

__all__ = ["dockerd", "swarm", "swarm_daemon", "target_app_image"]


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    daemon = start_dockerd(tmp_path_factory.mktemp("dockerd"))
    try:
        yield daemon
    finally:
        if daemon.proc is not None:
            daemon.remove_all_containers()
        daemon.stop()


@pytest.fixture(scope="session")
def target_app_image(dockerd: Dockerd) -> str:
    return ensure_target_app_image(dockerd)


@pytest.fixture(scope="session")
def swarm_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    daemon = start_swarm(tmp_path_factory.mktemp("swarm"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def swarm(swarm_daemon: Swarm) -> Iterator[Swarm]:
    """The session's Swarm, with no services left behind by the test."""
    yield swarm_daemon
    swarm_daemon.remove_services()
