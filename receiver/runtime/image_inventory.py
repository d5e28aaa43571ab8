"""The image history's sources in a worker's background life: the inventory (a periodic
job: ONE container list call per backend, recording the containers not yet known) and the
events follower's `create`/`start` events (one inspect per container not yet known)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from receiver.domain.images import ContainerImage
from receiver.executor import Executor, ExecutorError, ImageSource
from receiver.store import image_history
from receiver.store.engine import Database

__all__ = ["record_container", "take_inventory"]

log = logging.getLogger("autofix.images")


def take_inventory(database: Database, executors: list[Executor], opt_in_label: str,
                   now: Callable[[], datetime]) -> int:
    """Record every opted-in container of every backend not yet in the history; how many
    were new. No per-container call: the list holds each one's image ID and creation."""
    seen: list[ContainerImage] = []
    failed: list[ExecutorError] = []
    sources = [executor for executor in executors if isinstance(executor, ImageSource)]
    for executor in sources:
        try:
            listed = executor.inventory()
        except ExecutorError as exc:  # one host down: the others' containers still count
            log.warning("image inventory failed", extra={"error": str(exc)})
            failed.append(exc)
            continue
        seen += [image for image in listed if _opted_in(image, opt_in_label)]
    if failed and len(failed) == len(sources):
        raise failed[0]  # nothing answered: the job failed
    if not seen:
        return 0
    with database.session("image_inventory") as session:
        known = image_history.known_ids(session, (image.container_id for image in seen))
        added = image_history.record(
            session, [image for image in seen if image.container_id not in known], now())
    if added:
        log.info("image history recorded", extra={"containers": added, "source": "inventory"})
    return added


def record_container(database: Database, executor: Executor, container_id: str,
                     now: datetime) -> bool:
    """A container the events follower saw created or started: one inspect, unless known."""
    if not isinstance(executor, ImageSource):
        return False
    with database.session("image_history") as session:
        if image_history.known_ids(session, [container_id]):
            return False
    image = executor.container_image(container_id)
    if image is None:
        return False
    with database.session("image_history") as session:
        return image_history.record(session, [image], now) == 1


def _opted_in(image: ContainerImage, label: str) -> bool:
    return image.labels.get(label, "").lower() == "true"
