"""Session fixtures for the monitored stack; imported by tests/conftest.py.

    dockerd            - a private dockerd (tests.harness.dockerd.Dockerd) for the session
    target_app_image   - tag of the target_app image built on it (offline)
    swarm              - a real single-node Swarm in a second private dockerd
                         (tests.harness.swarm.Swarm), services removed after each user
    local_images       - a `docker save` of every image the compose and Swarm stack
                         harnesses deploy (tests.harness.local_images), built once
    stack_harnesses    - those harnesses' runs the session's tests marked `stack_harness`
                         ask for, started together (tests.harness.root_harness)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.dockerd import Dockerd, start_dockerd
from tests.harness.images import ensure_target_app_image
from tests.harness.root_harness import StackHarnesses, require_root
from tests.harness.swarm import Swarm, start_swarm

__all__ = ["dockerd", "local_images", "pytest_configure", "stack_harnesses", "swarm",
           "swarm_daemon", "target_app_image"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stack_harness(key): the test checks that root harness "
                                       "run (tests.harness.root_harness.STACK_HARNESSES)")


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
def local_images(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Assembling and importing them took about 40 s in each of the session's three harness
    runs (compose v2, compose 1.29, Swarm): build them once on the session's dockerd and
    let each run `docker load` them into its own (`--images`). `make compose-test` and
    `make stack-test` alone still build them."""
    from tests.harness.local_images import build_all, save_all

    require_root("the compose and Swarm stack harnesses")
    client = dockerd.client()
    client.api.timeout = 600
    build_all(client, log=lambda _message: None)
    path = save_all(dockerd.url, tmp_path_factory.mktemp("local-images") / "images.tar")
    yield path
    path.unlink(missing_ok=True)   # hundreds of MiB; pytest keeps the last sessions' dirs


@pytest.fixture(scope="session")
def stack_harnesses(request: pytest.FixtureRequest, local_images: Path
                    ) -> Iterator[StackHarnesses]:
    """One after the other, compose v2 and 1.29 took 220 s and 232 s, and Swarm about as
    long, nearly all of it waiting; each has its own namespace and dockerd, so the selected
    ones run at once (all three in 351 s, image build included). At most
    AUTOFIX_STACK_HARNESSES_AT_ONCE (default 3) start here; 1: each in its own test."""
    at_once = int(os.environ.get("AUTOFIX_STACK_HARNESSES_AT_ONCE", "3"))
    keys = [mark.args[0] for item in request.session.items
            for mark in item.iter_markers("stack_harness")]
    harnesses = StackHarnesses(local_images, keys[:at_once] if at_once > 1 else [])
    yield harnesses
    harnesses.stop()


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
