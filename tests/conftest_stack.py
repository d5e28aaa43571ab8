"""Session fixtures for the monitored stack; imported by tests/conftest.py.

    dockerd            - a private dockerd (tests.harness.dockerd.Dockerd) for the session
    target_app_image   - tag of the target_app image built on it (offline)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.dockerd import Dockerd, start_dockerd
from tests.harness.images import ensure_target_app_image

__all__ = ["dockerd", "target_app_image"]


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
