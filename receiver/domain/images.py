"""Which image each container was created from, and whether a container is a bad update's
suspect: created from another image than its predecessor under the same name, a moment ago
(pure: the executor reads the images, store/image_history.py remembers them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["ContainerImage", "NewImage", "new_image", "short_image"]


@dataclass(frozen=True)
class ContainerImage:
    """One container as autofix saw it: its name, the image ID (sha256:...) and reference
    (what it was run as, e.g. `app:v2`) it was created from, and when it was created."""

    name: str
    container_id: str
    image_id: str
    image_ref: str
    created_at: datetime
    labels: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class NewImage:
    """The container `current` was created from another image than `previous`, the newest
    earlier container autofix saw under the same name."""

    current: ContainerImage
    previous: ContainerImage

    def describe(self, now: datetime) -> str:
        ago = max(0, int((now - self.current.created_at).total_seconds()))
        return (f"{self.current.name} was created from a new image {_ago(ago)} ago "
                f"(at {self.current.created_at.isoformat()}): "
                f"{_shown(self.previous)} → {_shown(self.current)}")

    def as_evidence(self, now: datetime) -> dict[str, Any]:
        return {
            "summary": self.describe(now), "name": self.current.name,
            "old_image_id": self.previous.image_id, "old_image_ref": self.previous.image_ref,
            "old_container_id": self.previous.container_id,
            "old_created_at": self.previous.created_at.isoformat(),
            "new_image_id": self.current.image_id, "new_image_ref": self.current.image_ref,
            "container_id": self.current.container_id,
            "created_at": self.current.created_at.isoformat(),
        }


def new_image(current: ContainerImage, previous: ContainerImage | None, now: datetime,
              window_s: float, ran_before: bool = False) -> NewImage | None:
    """A new image: a predecessor is known, its image differs, and `current` was created
    less than `window_s` ago. No predecessor is not a new image (history starts when
    autofix first sees a container); a window of 0 turns the check off. `ran_before`: an
    earlier container of the name ran this image (a rollback returned to it), not new."""
    if (previous is None or window_s <= 0 or ran_before
            or previous.image_id == current.image_id):
        return None
    if (now - current.created_at).total_seconds() >= window_s:  # skew ahead still counts
        return None
    return NewImage(current, previous)


def short_image(image_id: str) -> str:
    """`sha256:0123456789ab`, as `docker images` shows an ID."""
    algorithm, _, digest = image_id.partition(":")
    return f"{algorithm}:{digest[:12]}" if digest else image_id[:19]


def _shown(image: ContainerImage) -> str:
    ref = f" ({image.image_ref})" if image.image_ref and image.image_ref != image.image_id else ""
    return f"{short_image(image.image_id)}{ref}"


def _ago(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
