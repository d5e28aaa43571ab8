"""The environment of a receiver process (tests/harness/receiver.py) with the tests'
tokens: kept apart from receiver.py, which bench/ imports without the test fixtures."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import API_TOKEN, WEBHOOK_TOKEN

# A docker host that never answers: for receivers whose tests do not act on containers.
NO_DOCKER = "unix:///nonexistent/docker.sock"


def receiver_env(playbooks: Path, docker_host: str = NO_DOCKER, **extra: str) -> dict[str, str]:
    """Test tokens, a docker host and the playbooks file, plus `extra` settings."""
    return {"AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_API_TOKEN": API_TOKEN,
            "AUTOFIX_DOCKER_HOST": docker_host, "AUTOFIX_PLAYBOOKS": str(playbooks), **extra}
