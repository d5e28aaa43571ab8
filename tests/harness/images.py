"""Build the target_app image on a test dockerd (once per daemon per session)."""

from __future__ import annotations

from target_app.build_image import DEFAULT_TAG, build
from tests.harness.dockerd import Dockerd

__all__ = ["ensure_target_app_image"]

_built: dict[str, str] = {}


def ensure_target_app_image(dockerd: Dockerd, tag: str = DEFAULT_TAG) -> str:
    """Tag of a target_app image on this daemon, building it (offline) if needed."""
    key = f"{dockerd.url}|{tag}"
    if key not in _built:
        # build() itself reuses a base image with the same content hash, and the
        # Docker build cache makes a rebuild of an unchanged app near-instant.
        _built[key] = build(dockerd.url, tag, log=lambda _msg: None)
    return _built[key]
