"""The Compose commands the tests run (v2 plugin and 1.29), and skipping (failing in CI)
when one does not run."""

from __future__ import annotations

import pytest

from tests.harness.compose_stack import compose_version
from tests.harness.procs import components_required, require_binary

V2, V1 = "docker compose", "docker-compose"


def require_compose(command: str) -> list[str]:
    """The Compose command as argv, or skip (fail in CI) when it does not run."""
    argv = command.split()
    require_binary(argv[0])
    if compose_version(argv) is None:
        message = f"`{command}` does not run: bash .ci/install-os-packages"
        if components_required():
            pytest.fail(message)
        pytest.skip(message)
    return argv
